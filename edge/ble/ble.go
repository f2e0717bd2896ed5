// Package ble reads an IMU over Bluetooth Low Energy, as a central, through
// BlueZ with tinygo.org/x/bluetooth (D-Bus; no cgo). It serves
// `tideline-edge --source ble:ADDR`.
//
// The device is recognised by its GATT services, and the characteristic
// chooses the frame decoder (package frame):
//
//	| device       | service                              | notifying characteristic             | frame                          |
//	|--------------|--------------------------------------|--------------------------------------|--------------------------------|
//	| Tideline IMU | a1570001-983f-4ddf-bf94-64076fddd3e8 | a1570002-983f-4ddf-bf94-64076fddd3e8 | Tideline frame v1 (seq, time)  |
//	| Thingy:52    | ef680400-9b35-4933-9b10-52ffa9740042 | ef680406-9b35-4933-9b10-52ffa9740042 | raw motion (no seq, no time)   |
//
// The Tideline service is preferred when a device has both.
//
// Two traps of BlueZ through tinygo shape the code. Notifications can arrive
// out of order: godbus hands a signal to a channel that is not ready on a
// goroutine of its own, so bursts overtake each other. Tideline frames carry
// a sequence number and go through a frame.Reorderer; Thingy frames have
// none and are numbered and stamped as they arrive. And a central is not told
// of a disconnect: if no notification comes for Options.Silence, the link is
// taken as lost, and Source disconnects and connects again, with backoff,
// until its context ends.
package ble

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"tinygo.org/x/bluetooth"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge/frame"
)

// GATT UUIDs of the devices Source reads. The Tideline ones share the base
// a157xxxx-983f-4ddf-bf94-64076fddd3e8 (random, ours); the Thingy ones are
// Nordic's (base ef68xxxx-9b35-4933-9b10-52ffa9740042).
const (
	TidelineService     = "a1570001-983f-4ddf-bf94-64076fddd3e8"
	TidelineFrameChar   = "a1570002-983f-4ddf-bf94-64076fddd3e8"
	ThingyMotionService = "ef680400-9b35-4933-9b10-52ffa9740042"
	ThingyConfigChar    = "ef680401-9b35-4933-9b10-52ffa9740042"
	ThingyRawChar       = "ef680406-9b35-4933-9b10-52ffa9740042"
)

type profile struct {
	name          string
	service, char bluetooth.UUID
	decode        func([]byte) (frame.Reading, error)
}

// profiles in order of preference.
var profiles = []profile{
	{"tideline", mustUUID(TidelineService), mustUUID(TidelineFrameChar), frame.DecodeTideline},
	{"thingy", mustUUID(ThingyMotionService), mustUUID(ThingyRawChar), frame.DecodeThingyRaw},
}

var thingyConfig = mustUUID(ThingyConfigChar)

func mustUUID(s string) bluetooth.UUID {
	u, err := bluetooth.ParseUUID(s)
	if err != nil {
		panic(err)
	}
	return u
}

// Options tune a Source. The zero value is usable.
type Options struct {
	// Adapter is the BlueZ adapter; default "hci0".
	Adapter string
	// Silence without a notification after which the link is taken as lost
	// and reconnected; default 1s.
	Silence time.Duration
	// ConnectTimeout bounds connecting and service discovery; default 20s.
	ConnectTimeout time.Duration
	// Window and MaxDelay bound reordering of Tideline frames: at most Window
	// frames (default 32) wait, none longer than MaxDelay (default 50ms).
	Window   int
	MaxDelay time.Duration
	// RetryMin and RetryMax bound the backoff between failed connection
	// attempts; defaults 250ms and 15s. A connection that delivered frames
	// resets it.
	RetryMin, RetryMax time.Duration
	// ThingyHz, if not 0, sets a Thingy:52's motion rate (1-200 Hz; the
	// firmware's default is 10). It is written only when it differs, since
	// the Thingy stores it in flash.
	ThingyHz int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Stats counts what a Source did since New.
type Stats struct {
	Connects  uint64 // connections made
	LinkLost  uint64 // connections given up after Silence without a notification
	Frames    uint64 // notifications decoded
	BadFrames uint64 // notifications that did not decode
	Overflow  uint64 // notifications dropped because Run fell behind the radio
	Emitted   uint64 // samples passed to emit
	Reorder   frame.ReorderStats
}

// Source reads one BLE IMU. Run it once; Stats is safe for concurrent use.
type Source struct {
	addr bluetooth.Address
	opts Options
	log  *slog.Logger

	reorder  *frame.Reorderer[arrival]
	nextSeq  uint32 // numbers frames that carry none
	overflow atomic.Uint64

	mu    sync.Mutex
	stats Stats
}

type arrival struct {
	r  frame.Reading
	at time.Time
}

// New returns a Source for the device with MAC address addr
// (AA:BB:CC:DD:EE:FF). It fails only on a malformed address or option;
// nothing is contacted before Run.
func New(addr string, opts Options) (*Source, error) {
	mac, err := bluetooth.ParseMAC(addr)
	if err != nil {
		return nil, fmt.Errorf("ble: address %q: %w", addr, err)
	}
	if opts.ThingyHz < 0 || opts.ThingyHz > 200 {
		return nil, fmt.Errorf("ble: ThingyHz %d outside 1-200", opts.ThingyHz)
	}
	if opts.Adapter == "" {
		opts.Adapter = "hci0"
	}
	opts.Silence = cmp(opts.Silence, time.Second)
	opts.ConnectTimeout = cmp(opts.ConnectTimeout, 20*time.Second)
	opts.Window = cmp(opts.Window, 32)
	opts.MaxDelay = cmp(opts.MaxDelay, 50*time.Millisecond)
	opts.RetryMin = cmp(opts.RetryMin, 250*time.Millisecond)
	opts.RetryMax = max(cmp(opts.RetryMax, 15*time.Second), opts.RetryMin)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Source{
		addr:    bluetooth.Address{MACAddress: bluetooth.MACAddress{MAC: mac}},
		opts:    opts,
		log:     opts.Logger.With("ble", mac.String()),
		reorder: frame.NewReorderer[arrival](opts.Window, opts.MaxDelay),
	}, nil
}

// cmp returns v, or def if v is not positive.
func cmp[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Stats returns the counts so far.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Overflow = s.overflow.Load()
	return st
}

type emitError struct{ err error }

func (e emitError) Error() string { return e.err.Error() }

// Run connects to the device and passes its samples to emit, in order, until
// ctx ends; it reconnects, with backoff, whenever the link fails or falls
// silent. emit is called from Run's goroutine only. Run returns nil when ctx
// ends, or the first error emit returns. It must not be called twice.
func (s *Source) Run(ctx context.Context, emit func(safety.Sample) error) error {
	wait := s.opts.RetryMin
	for {
		delivered, err := s.session(ctx, emit)
		if ee, ok := errors.AsType[emitError](err); ok {
			return ee.err
		}
		if ctx.Err() != nil {
			return nil
		}
		if delivered {
			wait = s.opts.RetryMin
		}
		s.log.Warn("ble: link down, reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if !delivered {
			wait = min(2*wait, s.opts.RetryMax)
		}
	}
}

// session is one connection: it returns why it ended, and whether any frame
// came through. Each has its own Adapter, so a call abandoned on timeout by
// an earlier session cannot touch this one's state.
func (s *Source) session(ctx context.Context, emit func(safety.Sample) error) (delivered bool, err error) {
	adapter := bluetooth.NewAdapter(s.opts.Adapter)
	if err := adapter.Enable(); err != nil {
		return false, fmt.Errorf("enable adapter %s: %w", s.opts.Adapter, err)
	}
	if err := s.findDevice(ctx); err != nil {
		return false, fmt.Errorf("find device: %w", err)
	}
	// tinygo's Connect waits for BlueZ's Connected signal with no deadline.
	dev, err := within(ctx, s.opts.ConnectTimeout, func() (bluetooth.Device, error) {
		return adapter.Connect(s.addr, bluetooth.ConnectionParams{})
	})
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		if err := dev.Disconnect(); err != nil {
			s.log.Debug("ble: disconnect", "err", err)
		}
	}()
	s.update(func(st *Stats) { st.Connects++ })

	p, char, err := s.discover(ctx, dev)
	if err != nil {
		return false, err
	}
	notes := make(chan note, 256)
	err = char.EnableNotifications(func(b []byte) {
		select { // never block tinygo's signal goroutine: that is what reorders
		case notes <- note{b, time.Now()}:
		default:
			s.overflow.Add(1)
		}
	})
	// Turn off through a copy: tinygo's goroutine reads char.property when it
	// gets round to it, and turning off through char would race with that
	// (setting it to nil, which could leave the goroutine blocked forever).
	// The copy shares the channel, which is all turning off needs. It also
	// undoes a failed enable.
	stop := *char
	defer func() {
		defer func() {
			// If the bus connection dropped, godbus has closed the channel
			// already and tinygo closes it again.
			if p := recover(); p != nil {
				s.log.Debug("ble: turning notifications off", "panic", p)
			}
		}()
		_ = stop.EnableNotifications(nil)
	}()
	if err != nil {
		return false, fmt.Errorf("enable %s notifications: %w", p.name, err)
	}
	s.log.Info("ble: connected", "device", p.name)
	return s.stream(ctx, p, notes, emit)
}

// findDevice makes sure BlueZ has an object for the device, scanning until
// it shows up. BlueZ has one only for devices paired, trusted or seen in a
// recent scan, and tinygo's Connect fails without one
// (tinygo-org/bluetooth#118); tinygo's own Scan can panic on devices that
// advertise no service UUID (it asserts their UUIDs property, which BlueZ
// then omits), so this talks to BlueZ directly.
func (s *Source) findDevice(ctx context.Context) error {
	bus, err := dbus.SystemBus()
	if err != nil {
		return err
	}
	adapterPath := dbus.ObjectPath("/org/bluez/" + s.opts.Adapter)
	devicePath := adapterPath + dbus.ObjectPath("/dev_"+strings.ReplaceAll(s.addr.MAC.String(), ":", "_"))
	known := func() bool {
		_, err := bus.Object("org.bluez", devicePath).GetProperty("org.bluez.Device1.Address")
		return err == nil
	}
	if known() {
		return nil
	}
	adapter := bus.Object("org.bluez", adapterPath)
	if err := adapter.Call("org.bluez.Adapter1.SetDiscoveryFilter", 0, map[string]any{"Transport": "le"}).Err; err != nil {
		return fmt.Errorf("set discovery filter: %w", err)
	}
	if err := adapter.Call("org.bluez.Adapter1.StartDiscovery", 0).Err; err != nil {
		return fmt.Errorf("start discovery: %w", err)
	}
	defer adapter.Call("org.bluez.Adapter1.StopDiscovery", 0)
	s.log.Info("ble: scanning for the device")
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(s.opts.ConnectTimeout)
	for !known() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return fmt.Errorf("not seen in %v of scanning", s.opts.ConnectTimeout)
		case <-tick.C:
		}
	}
	return nil
}

type note struct {
	b  []byte
	at time.Time
}

// discover finds the preferred profile's characteristic and, for a Thingy,
// sets its rate.
func (s *Source) discover(ctx context.Context, dev bluetooth.Device) (profile, *bluetooth.DeviceCharacteristic, error) {
	services, err := within(ctx, s.opts.ConnectTimeout, func() ([]bluetooth.DeviceService, error) {
		return dev.DiscoverServices(nil)
	})
	if err != nil {
		return profile{}, nil, fmt.Errorf("discover services: %w", err)
	}
	for _, p := range profiles {
		for _, svc := range services {
			if svc.UUID() != p.service {
				continue
			}
			chars, err := svc.DiscoverCharacteristics([]bluetooth.UUID{p.char})
			if err != nil {
				return p, nil, fmt.Errorf("%s service: characteristic %s: %w", p.name, p.char, err)
			}
			if p.name == "thingy" && s.opts.ThingyHz != 0 {
				if err := setThingyHz(svc, s.opts.ThingyHz); err != nil {
					return p, nil, fmt.Errorf("thingy rate: %w", err)
				}
			}
			return p, &chars[0], nil
		}
	}
	return profile{}, nil, fmt.Errorf("no Tideline (%s) or Thingy motion (%s) service among %d", TidelineService, ThingyMotionService, len(services))
}

// setThingyHz sets motion_freq_hz, bytes 6-7 of the 9-byte motion config
// (Nordic-Thingy52-FW include/ble_services/ble_tms.h, ble_tms_config_t).
func setThingyHz(svc bluetooth.DeviceService, hz int) error {
	chars, err := svc.DiscoverCharacteristics([]bluetooth.UUID{thingyConfig})
	if err != nil {
		return err
	}
	buf := make([]byte, 20)
	n, err := chars[0].Read(buf)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if n < 9 {
		return fmt.Errorf("config is %d bytes, want 9", n)
	}
	if int(binary.LittleEndian.Uint16(buf[6:])) == hz {
		return nil
	}
	binary.LittleEndian.PutUint16(buf[6:], uint16(hz))
	if _, err := chars[0].Write(buf[:n]); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

var errSilence = errors.New("link silent")

// stream decodes, orders and emits notifications until the link falls
// silent, ctx ends or emit fails.
func (s *Source) stream(ctx context.Context, p profile, notes <-chan note, emit func(safety.Sample) error) (delivered bool, err error) {
	silence := time.NewTimer(s.opts.Silence)
	defer silence.Stop()
	expire := time.NewTimer(0)
	expire.Stop()
	defer expire.Stop()

	var (
		clock    deviceClock
		released []arrival
		reported = s.reorder.Stats()
		logged   time.Time // at most one anomaly report per 10s
		bad      uint64
	)
	for {
		released = released[:0]
		select {
		case <-ctx.Done():
			return delivered, ctx.Err()
		case <-silence.C:
			s.update(func(st *Stats) { st.LinkLost++ })
			err = fmt.Errorf("%w for %v", errSilence, s.opts.Silence)
			released = s.reorder.Drain(released)
		case now := <-expire.C:
			released = s.reorder.Expire(now, released)
		case n := <-notes:
			silence.Reset(s.opts.Silence)
			r, derr := p.decode(n.b)
			if derr != nil {
				bad++
				s.update(func(st *Stats) { st.BadFrames++ })
				if bad == 1 || bad%1000 == 0 { // a wrong firmware would flood the log
					s.log.Warn("ble: bad frame", "device", p.name, "err", derr, "bad_frames", bad)
				}
				break
			}
			delivered = true
			s.update(func(st *Stats) { st.Frames++ })
			a := arrival{r, n.at}
			if !r.HasSeq {
				a.r.Seq = s.nextSeq
				s.nextSeq++
				released = append(released, a)
				break
			}
			released = s.reorder.Push(r.Seq, a, n.at, released)
		}

		for _, a := range released {
			if eerr := emit(sample(a.r, clock.wall(a.r, a.at))); eerr != nil {
				return delivered, emitError{eerr}
			}
		}
		st := s.reorder.Stats()
		s.update(func(t *Stats) { t.Emitted += uint64(len(released)); t.Reorder = st })
		if anomalies(st) != anomalies(reported) && (err != nil || time.Since(logged) >= 10*time.Second) {
			s.log.Warn("ble: frames lost or out of place", "missing", st.Missing-reported.Missing,
				"gaps", st.Gaps-reported.Gaps, "late", st.Late-reported.Late,
				"duplicates", st.Duplicates-reported.Duplicates, "restarts", st.Restarts-reported.Restarts)
			reported, logged = st, time.Now()
		}
		if err != nil {
			return delivered, err
		}
		if d, ok := s.reorder.Deadline(); ok {
			expire.Reset(time.Until(d))
		} else {
			expire.Stop()
		}
	}
}

func anomalies(st frame.ReorderStats) frame.ReorderStats {
	st.Released = 0
	return st
}

func (s *Source) update(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

func sample(r frame.Reading, t time.Time) safety.Sample {
	smp := safety.Sample{T: t, Accel: r.Accel, Gyro: r.Gyro, Seq: r.Seq}
	if r.HasLocation {
		smp.Loc = &safety.Location{Lat: r.Lat, Lng: r.Lng}
	}
	return smp
}

// deviceClock turns device time into wall time for one connection. Time
// since boot is anchored on the first frame's arrival (and again if it goes
// back: the device restarted), so spacing between samples is the device's,
// to the microsecond; the anchor includes that frame's transit delay, and
// crystal drift (tens of ppm) is not corrected within a connection. Frames
// without time get their arrival time. Times strictly increase, as the
// detector requires: a time not after the last becomes the last plus 1µs.
type deviceClock struct {
	boot      time.Time // wall time of the device's boot; zero until the first frame
	bootSince uint64    // device time of the last frame, µs
	last      time.Time
}

func (c *deviceClock) wall(r frame.Reading, arrived time.Time) time.Time {
	t := arrived
	switch r.Clock {
	case frame.ClockUnix:
		t = time.UnixMicro(int64(min(r.Micros, math.MaxInt64)))
	case frame.ClockBoot:
		since := time.Duration(min(r.Micros, math.MaxInt64/1000)) * time.Microsecond
		if c.boot.IsZero() || r.Micros < c.bootSince {
			c.boot = arrived.Add(-since)
		}
		c.bootSince = r.Micros
		t = c.boot.Add(since)
	}
	if !t.After(c.last) {
		t = c.last.Add(time.Microsecond)
	}
	c.last = t
	return t
}

// within runs f, but returns when ctx ends or d passes; f then finishes on
// its own. A panic in f is returned as an error: tinygo's D-Bus code panics
// on some bus failures (a channel closed twice, a reply of the wrong type),
// and a lost sensor must not bring the agent down.
func within[T any](ctx context.Context, d time.Duration, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r.err = fmt.Errorf("bluetooth panicked: %v", p)
			}
			done <- r
		}()
		r.v, r.err = f()
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var zero T
	select {
	case r := <-done:
		return r.v, r.err
	case <-timer.C:
		return zero, fmt.Errorf("timed out after %v", d)
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
