//go:build linux

package ble_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge/ble"
	"github.com/tideline/tideline/edge/frame"
	"github.com/tideline/tideline/internal/poll"
)

const (
	devAddr        = "C0:FF:EE:00:00:01"
	batteryService = "0000180f-0000-1000-8000-00805f9b34fb"
	batteryLevel   = "00002a19-0000-1000-8000-00805f9b34fb"
)

func tidelineDevice(f *fakeBlueZ) *fakeDevice {
	return f.addDevice(devAddr,
		fakeService{batteryService, []fakeChar{{uuid: batteryLevel, value: []byte{90}}}},
		fakeService{ble.TidelineService, []fakeChar{{uuid: ble.TidelineFrameChar}}},
	)
}

func thingyDevice(f *fakeBlueZ, config []byte) *fakeDevice {
	return f.addDevice(devAddr, fakeService{ble.ThingyMotionService, []fakeChar{
		{uuid: ble.ThingyConfigChar, value: config},
		{uuid: ble.ThingyRawChar},
	}})
}

// running is a Source under test: its samples, and Run's end.
type running struct {
	src     *ble.Source
	samples chan safety.Sample
	done    chan struct{}
	err     error // Run's result, once done is closed
}

// run starts a Source on devAddr; the test's end stops it and checks that
// Run returned.
func run(tb testing.TB, opts ble.Options, emit func(safety.Sample) error) *running {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.RetryMin = max(opts.RetryMin, 10*time.Millisecond)
	src, err := ble.New(devAddr, opts)
	if err != nil {
		tb.Fatal(err)
	}
	r := &running{src: src, samples: make(chan safety.Sample, 1000), done: make(chan struct{})}
	if emit == nil {
		emit = func(s safety.Sample) error { r.samples <- s; return nil }
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(r.done)
		r.err = src.Run(ctx, emit)
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
			if r.err != nil && !errors.Is(r.err, errStop) {
				tb.Errorf("Run: %v", r.err)
			}
		case <-time.After(10 * time.Second):
			tb.Error("Run did not return after its context ended")
		}
	})
	return r
}

func (r *running) next(tb testing.TB, n int) []safety.Sample {
	tb.Helper()
	var got []safety.Sample
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case s := <-r.samples:
			got = append(got, s)
		case <-timeout:
			tb.Fatalf("got %d samples, want %d: %v", len(got), n, seqs(got))
		}
	}
	return got
}

func seqs(samples []safety.Sample) []uint32 {
	var out []uint32
	for _, s := range samples {
		out = append(out, s.Seq)
	}
	return out
}

var errStop = errors.New("stop")

const t0Micros = 1_767_225_600_000_000 // 2026-01-01 in Unix µs

func tidelineFrame(seq uint32) []byte {
	r := frame.Reading{
		Seq: seq, Clock: frame.ClockUnix, Micros: t0Micros + uint64(seq)*10_000,
		Accel: [3]float64{0, 0, 1}, Gyro: [3]float64{float64(seq), 0, 0},
	}
	if seq == 5 {
		r.HasLocation, r.Lat, r.Lng = true, 52.52, 13.405
	}
	return frame.AppendTideline(nil, r)
}

// bootFrame is a frame from a device without a wall clock: µs since boot.
func bootFrame(seq uint32) []byte {
	return frame.AppendTideline(nil, frame.Reading{Seq: seq, Clock: frame.ClockBoot, Micros: uint64(seq) * 10_000})
}

// The bus delivers frames swapped, duplicated and with one missing; emit
// sees them in sequence order, the duplicate dropped and the gap counted.
func TestSourceReleasesTidelineFramesInSequenceOrder(t *testing.T) {
	f := newFakeBlueZ(t)
	dev := tidelineDevice(f)
	r := run(t, ble.Options{MaxDelay: 300 * time.Millisecond, Silence: 10 * time.Second}, nil)
	dev.waitNotifying(ble.TidelineFrameChar, 1)

	var order, want []uint32
	for i := uint32(0); i < 40; i += 2 {
		order = append(order, i+1, i)
	}
	order = slices.DeleteFunc(order, func(s uint32) bool { return s == 20 })
	order = slices.Insert(order, 6, 2) // a duplicate of 2, after 2
	for i := range uint32(40) {
		if i != 20 {
			want = append(want, i)
		}
	}
	dev.notify(ble.TidelineFrameChar, make([]byte, frame.ThingyRawLen)) // not ours: counted, skipped
	for _, seq := range order {
		dev.notify(ble.TidelineFrameChar, tidelineFrame(seq))
	}

	got := r.next(t, len(want))
	if !slices.Equal(seqs(got), want) {
		t.Fatalf("emitted %v\nwant    %v", seqs(got), want)
	}
	for _, s := range got {
		if wantT := time.UnixMicro(t0Micros + int64(s.Seq)*10_000); !s.T.Equal(wantT) {
			t.Errorf("seq %d: T %v, want the device's %v", s.Seq, s.T, wantT)
		}
		if s.Gyro[0] != float64(s.Seq) || s.Accel != [3]float64{0, 0, 1} {
			t.Errorf("seq %d: accel %v gyro %v", s.Seq, s.Accel, s.Gyro)
		}
		if (s.Seq == 5) != (s.Loc != nil) || s.Loc != nil && *s.Loc != (safety.Location{Lat: 52.52, Lng: 13.405}) {
			t.Errorf("seq %d: location %v", s.Seq, s.Loc)
		}
	}
	poll.Until(t, 5*time.Second, "stats", func() bool { return r.src.Stats().Emitted == uint64(len(want)) })
	st := r.src.Stats()
	if st.Frames != uint64(len(order)) || st.BadFrames != 1 || st.Reorder.Duplicates != 1 ||
		st.Reorder.Gaps != 1 || st.Reorder.Missing != 1 || st.Connects != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A central is not told of a disconnect: silence is the only sign. The
// Source gives the link up, disconnects, connects again and carries on.
func TestSourceReconnectsWhenTheLinkFallsSilent(t *testing.T) {
	f := newFakeBlueZ(t)
	dev := tidelineDevice(f)
	r := run(t, ble.Options{Silence: 300 * time.Millisecond, MaxDelay: 20 * time.Millisecond}, nil)

	dev.waitNotifying(ble.TidelineFrameChar, 1)
	for seq := range uint32(5) {
		dev.notify(ble.TidelineFrameChar, bootFrame(seq))
	}
	before := r.next(t, 5)

	// The device goes quiet while BlueZ still calls it connected.
	dev.waitNotifying(ble.TidelineFrameChar, 2)
	if connects, disconnects := dev.counts(); connects != 2 || disconnects != 1 {
		t.Fatalf("connects %d, disconnects %d; want a reconnect", connects, disconnects)
	}
	for seq := uint32(100); seq < 105; seq++ { // rebooted meanwhile, or not: either way
		dev.notify(ble.TidelineFrameChar, bootFrame(seq))
	}
	after := r.next(t, 5)

	all := append(before, after...)
	if got := seqs(all); !slices.Equal(got, []uint32{0, 1, 2, 3, 4, 100, 101, 102, 103, 104}) {
		t.Fatalf("emitted %v", got)
	}
	for i := 1; i < len(all); i++ {
		dt := all[i].T.Sub(all[i-1].T)
		if i != 5 && dt != 10*time.Millisecond {
			t.Errorf("seq %d came %v after seq %d; the device's clock says 10ms", all[i].Seq, dt, all[i-1].Seq)
		}
		if dt <= 0 {
			t.Errorf("time goes back from seq %d to %d", all[i-1].Seq, all[i].Seq)
		}
	}
	st := r.src.Stats()
	if st.LinkLost < 1 || st.Connects < 2 {
		t.Errorf("stats %+v, want a lost link and a second connection", st)
	}
}

func thingyRaw(v [9]int16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, uint16(x))
	}
	return b
}

// A Thingy:52's raw motion frames decode to physical units, numbered and
// stamped on arrival; its motion rate is set through its config.
func TestSourceReadsThingyRawMotion(t *testing.T) {
	f := newFakeBlueZ(t)
	//                       pedo ms   temp ms   compass ms  10 Hz     wake on motion
	config := []byte{0xE8, 0x03, 0xE8, 0x03, 0xF4, 0x01, 0x0A, 0x00, 0x01}
	dev := thingyDevice(f, config)
	r := run(t, ble.Options{ThingyHz: 100}, nil)

	dev.waitNotifying(ble.ThingyRawChar, 1)
	writes := dev.writes(ble.ThingyConfigChar)
	want := []byte{0xE8, 0x03, 0xE8, 0x03, 0xF4, 0x01, 100, 0x00, 0x01}
	if len(writes) != 1 || string(writes[0]) != string(want) {
		t.Fatalf("config writes % X, want one: % X", writes, want)
	}

	// Raw motion frames carry no sequence number, and godbus may hand two
	// back-to-back signals over in either order (it defers a delivery the
	// reader is not ready for to a goroutine of its own): so one at a time,
	// as a Thingy sends them every 10 ms.
	start := time.Now()
	dev.notify(ble.ThingyRawChar, thingyRaw([9]int16{0, 0, 1024, 0, 0, 0, 320, 0, -640}))
	got := r.next(t, 1)
	dev.notify(ble.ThingyRawChar, thingyRaw([9]int16{-512, 2048, 1024, 0, -16, 3200, 0, 0, 0}))
	got = append(got, r.next(t, 1)...)
	end := time.Now()

	wantAccel := [][3]float64{{0, 0, 1}, {-0.5, 2, 1}}
	wantGyro := [][3]float64{{0, 0, 0}, {0, -0.5, 100}}
	for i, s := range got {
		if s.Seq != uint32(i) || s.Accel != wantAccel[i] || s.Gyro != wantGyro[i] {
			t.Errorf("sample %d: seq %d accel %v gyro %v, want %d %v %v", i, s.Seq, s.Accel, s.Gyro, i, wantAccel[i], wantGyro[i])
		}
		if s.T.Before(start) || s.T.After(end) {
			t.Errorf("sample %d: T %v not stamped on arrival (%v to %v)", i, s.T, start, end)
		}
	}
	if !got[1].T.After(got[0].T) {
		t.Errorf("times %v, %v do not increase", got[0].T, got[1].T)
	}
}

func TestSourceLeavesAThingyRateThatIsAlreadySet(t *testing.T) {
	f := newFakeBlueZ(t)
	dev := thingyDevice(f, []byte{0xE8, 0x03, 0xE8, 0x03, 0xF4, 0x01, 100, 0x00, 0x01})
	run(t, ble.Options{ThingyHz: 100}, nil)
	dev.waitNotifying(ble.ThingyRawChar, 1)
	if w := dev.writes(ble.ThingyConfigChar); len(w) != 0 {
		t.Fatalf("wrote the Thingy's flash needlessly: % X", w)
	}
}

func TestSourceRetriesAFailingConnect(t *testing.T) {
	f := newFakeBlueZ(t)
	dev := tidelineDevice(f)
	dev.failConnects = 2
	r := run(t, ble.Options{}, nil)
	dev.waitNotifying(ble.TidelineFrameChar, 1)
	if connects, _ := dev.counts(); connects != 3 {
		t.Fatalf("%d connects, want 2 failed and 1 good", connects)
	}
	dev.notify(ble.TidelineFrameChar, tidelineFrame(9))
	if got := r.next(t, 1); got[0].Seq != 9 {
		t.Fatalf("emitted %v", seqs(got))
	}
}

// BlueZ has no object for a device it has not seen lately, and tinygo
// cannot connect without one: the Source scans until the device shows up.
func TestSourceScansForADeviceBlueZHasNotSeen(t *testing.T) {
	f := newFakeBlueZ(t)
	dev := f.addUnseenDevice(devAddr, fakeService{ble.TidelineService, []fakeChar{{uuid: ble.TidelineFrameChar}}})
	r := run(t, ble.Options{}, nil)
	dev.waitNotifying(ble.TidelineFrameChar, 1)
	if discovering, n := f.discovery(); discovering || n != 1 {
		t.Fatalf("discovering %v after %d scans; want one scan, stopped", discovering, n)
	}
	dev.notify(ble.TidelineFrameChar, tidelineFrame(3))
	if got := r.next(t, 1); got[0].Seq != 3 {
		t.Fatalf("emitted %v", seqs(got))
	}
}

func TestSourceKeepsTryingADeviceWithoutAKnownService(t *testing.T) {
	f := newFakeBlueZ(t)
	dev := f.addDevice(devAddr, fakeService{batteryService, []fakeChar{{uuid: batteryLevel}}})
	run(t, ble.Options{}, nil)
	poll.Until(t, 5*time.Second, "a second attempt", func() bool {
		connects, disconnects := dev.counts()
		return connects >= 2 && disconnects >= 1
	})
}

func TestRunReturnsTheErrorOfEmit(t *testing.T) {
	f := newFakeBlueZ(t)
	dev := thingyDevice(f, nil)
	r := run(t, ble.Options{}, func(safety.Sample) error { return errStop })
	dev.waitNotifying(ble.ThingyRawChar, 1)
	dev.notify(ble.ThingyRawChar, thingyRaw([9]int16{}))
	select {
	case <-r.done:
		if !errors.Is(r.err, errStop) {
			t.Fatalf("Run returned %v, want emit's error", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return emit's error")
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		addr string
		opts ble.Options
	}{
		{"malformed_address", "C0:FF:EE", ble.Options{}},
		{"thingy_rate_above_200_hz", devAddr, ble.Options{ThingyHz: 201}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ble.New(tt.addr, tt.opts); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// When the connection to the system bus drops, godbus closes every signal
// channel, and tinygo's turning off of notifications closes its channel a
// second time: the Source must survive that, and connect again.
func TestSourceSurvivesLosingTheSystemBus(t *testing.T) {
	f := newFakeBlueZ(t)
	dev := tidelineDevice(f)
	r := run(t, ble.Options{Silence: 300 * time.Millisecond, MaxDelay: 20 * time.Millisecond}, nil)
	dev.waitNotifying(ble.TidelineFrameChar, 1)
	dev.notify(ble.TidelineFrameChar, tidelineFrame(0))
	r.next(t, 1)

	bus, err := dbus.SystemBus() // the connection tinygo shares
	if err != nil {
		t.Fatal(err)
	}
	bus.Close()

	dev.waitNotifying(ble.TidelineFrameChar, 2)
	dev.notify(ble.TidelineFrameChar, tidelineFrame(1))
	if got := r.next(t, 1); got[0].Seq != 1 {
		t.Fatalf("emitted %v", seqs(got))
	}
}
