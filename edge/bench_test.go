package edge_test

// Scenario benchmarks for the closing figures. Each iteration runs the
// whole scenario; run them once:
//
//	go test ./edge -run '^$' -bench . -benchtime 1x
import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/edge/edgetest"
	"github.com/tideline/tideline/internal/poll"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
	"github.com/tideline/tideline/wire"
)

// BenchmarkBacklogSync: 100k events stored during an outage; the link
// returns; how long until the first and the last reach the hub, and the
// sync throughput. Events are telemetry windows of 10 samples (~130 B) or
// 100 (~1 kB); the agent has its default timings (leaf reconnect 1 s).
func BenchmarkBacklogSync(b *testing.B) {
	for _, samples := range []int{10, 100} {
		b.Run(fmt.Sprintf("window_%d_samples", samples), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchBacklog(b, 100_000, samples)
			}
		})
	}
}

func benchBacklog(b *testing.B, n, samples int) {
	h := startHub(b, "", 0)
	creds := h.addDevice(b, "bench")
	p := edgetest.NewProxy(b, h.leafURL[len("nats-leaf://"):])
	a := openAgent(b, creds, "nats-leaf://"+p.Addr(), b.TempDir(), agentOpts{maxDisk: 4 << 30, production: true})
	p.Cut()
	poll.Until(b, 5*time.Second, "link down", func() bool { return !a.LinkUp() })
	ctx := context.Background()
	batch := make([]*telemetryv1.SamplesRecorded, 0, 1000)
	var last uint64
	var bytes int
	t0 := time.Now()
	for i := 0; i < n; i++ {
		w := telemetry("bench", i, samples)
		bytes += protoSizeOf(w)
		batch = append(batch, w)
		if len(batch) == cap(batch) || i == n-1 {
			var err error
			if last, err = a.RecordTelemetry(ctx, batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	stored := time.Since(t0)
	sub := eventsTelemetry("bench")
	b.ResetTimer()
	back := time.Now()
	p.Restore()
	var first time.Duration
	poll.Until(b, 5*time.Minute, "first event", func() bool {
		if h.hubEdgeSeq(b, sub) > 0 {
			first = time.Since(back)
			return true
		}
		return false
	})
	poll.Until(b, 5*time.Minute, "last event", func() bool { return h.hubEdgeSeq(b, sub) >= last })
	all := time.Since(back)
	b.StopTimer()
	syncDur := all - first
	b.ReportMetric(float64(n)/stored.Seconds(), "stored-events/s")
	b.ReportMetric(first.Seconds()*1000, "ms-to-first")
	b.ReportMetric(all.Seconds()*1000, "ms-to-last")
	b.ReportMetric(float64(n)/syncDur.Seconds(), "sync-events/s")
	b.ReportMetric(float64(bytes)/syncDur.Seconds()/1e6, "sync-MB/s")
	b.Logf("%d events (%d B each) stored in %v; link back → first at hub %v, → last %v; sync %.0f events/s, %.1f MB/s",
		n, bytes/n, stored.Round(time.Millisecond), first.Round(time.Millisecond), all.Round(time.Millisecond),
		float64(n)/syncDur.Seconds(), float64(bytes)/syncDur.Seconds()/1e6)
}

// BenchmarkAlarmLatency: the sim's mixed scenario (crashes, falls,
// tipovers, hard brakes) replayed in real time with the link down; per
// alarm, the time from the deciding sample's arrival to the log line, and
// to the --alarm-cmd process running (it records its own clock).
func BenchmarkAlarmLatency(b *testing.B) {
	for i := 0; i < b.N; i++ {
		h := startHub(b, "", 0)
		creds := h.addDevice(b, "bench")
		p := edgetest.NewProxy(b, h.leafURL[len("nats-leaf://"):])
		p.Cut()
		out := filepath.Join(b.TempDir(), "alarms")
		var mu sync.Mutex
		arrived := map[string]time.Time{}
		var logLat []time.Duration
		a, err := edge.Open(context.Background(), edge.Config{
			Creds: creds, Hub: "nats-leaf://" + p.Addr(), DataDir: b.TempDir(), Logger: testLogger(b),
			Source:   &edge.Sim{Scenario: "mixed", Seed: 1, Speed: 20},
			Profile:  safety.ProfileBike,
			AlarmCmd: `echo "$TIDELINE_EVENT_ID $(date +%s%N)" >> ` + out,
			OnAlarm: func(al edge.Alarm) {
				mu.Lock()
				arrived[al.Event.EventId] = al.Arrived
				logLat = append(logLat, al.Latency())
				mu.Unlock()
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := a.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		var cmdLat []time.Duration
		poll.Until(b, 10*time.Second, "alarm commands", func() bool {
			f, err := os.Open(out)
			if err != nil {
				return false
			}
			defer f.Close()
			cmdLat = cmdLat[:0]
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				id, ns, _ := strings.Cut(sc.Text(), " ")
				n, _ := strconv.ParseInt(ns, 10, 64)
				mu.Lock()
				cmdLat = append(cmdLat, time.Unix(0, n).Sub(arrived[id]))
				mu.Unlock()
			}
			return len(cmdLat) == len(logLat)
		})
		a.Close()
		b.ReportMetric(float64(len(logLat)), "alarms")
		b.ReportMetric(float64(pct(logLat, 50).Microseconds()), "µs-log-p50")
		b.ReportMetric(float64(pct(logLat, 100).Microseconds()), "µs-log-max")
		b.ReportMetric(float64(pct(cmdLat, 50).Microseconds()), "µs-cmd-p50")
		b.ReportMetric(float64(pct(cmdLat, 100).Microseconds()), "µs-cmd-max")
		b.Logf("%d alarms, link down: sample → log line p50 %v max %v; sample → alarm command running p50 %v max %v",
			len(logLat), pct(logLat, 50), pct(logLat, 100), pct(cmdLat, 50), pct(cmdLat, 100))
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

// BenchmarkTwentyDevices: 20 agents on one hub, each storing 5000
// telemetry windows of 100 samples (~870 B) as fast as it can with the
// link up, plus the sim's crash scenario in real time; events/s arriving
// at the hub, and the danger lane's event → hub latency meanwhile.
func BenchmarkTwentyDevices(b *testing.B) {
	const devices, per = 20, 5000
	for i := 0; i < b.N; i++ {
		h := startHub(b, "", 0)
		agents := make([]*edge.Agent, devices)
		for d := range agents {
			agents[d] = openAgent(b, h.addDevice(b, fmt.Sprintf("dev%02d", d)), h.leafURL, b.TempDir(), agentOpts{})
		}
		for _, a := range agents {
			poll.Until(b, 10*time.Second, "links up", a.LinkUp)
		}
		watch := watchDanger(b, h)
		b.ResetTimer()
		t0 := time.Now()
		var wg sync.WaitGroup
		lasts := make([]uint64, devices)
		var mu sync.Mutex
		var dangerLat []time.Duration
		for d, a := range agents {
			wg.Add(2)
			go func() {
				defer wg.Done()
				dev := fmt.Sprintf("dev%02d", d)
				batch := make([]*telemetryv1.SamplesRecorded, 0, 100)
				for k := 0; k < per; k++ {
					batch = append(batch, telemetry(dev, k, 100))
					if len(batch) == cap(batch) {
						last, err := a.RecordTelemetry(context.Background(), batch...)
						if err != nil {
							b.Error(err)
							return
						}
						lasts[d] = last
						batch = batch[:0]
					}
				}
			}()
			go func() { // danger events meanwhile: event stored → at the hub
				defer wg.Done()
				dev := fmt.Sprintf("dev%02d", d)
				for k := 0; k < 10; k++ {
					at := time.Now()
					seq, err := a.RecordDanger(context.Background(), danger(dev, k))
					if err != nil {
						b.Error(err)
						return
					}
					watch.wait(dev, seq)
					mu.Lock()
					dangerLat = append(dangerLat, time.Since(at))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for d := range agents {
			waitSynced(b, h, eventsTelemetry(fmt.Sprintf("dev%02d", d)), lasts[d], 5*time.Minute)
		}
		el := time.Since(t0)
		b.StopTimer()
		total := devices * per
		bytes := total * protoSizeOf(telemetry("dev00", 0, 100))
		b.ReportMetric(float64(total)/el.Seconds(), "hub-events/s")
		b.ReportMetric(float64(bytes)/el.Seconds()/1e6, "hub-MB/s")
		b.ReportMetric(float64(pct(dangerLat, 50).Microseconds())/1000, "ms-danger-p50")
		b.ReportMetric(float64(pct(dangerLat, 99).Microseconds())/1000, "ms-danger-p99")
		b.Logf("%d devices × %d windows: all at the hub in %v: %.0f events/s, %.1f MB/s; danger event → hub under that load p50 %v p99 %v",
			devices, per, el.Round(time.Millisecond), float64(total)/el.Seconds(), float64(bytes)/el.Seconds()/1e6,
			pct(dangerLat, 50), pct(dangerLat, 99))
		for _, a := range agents {
			a.Close()
		}
	}
}

// BenchmarkDangerFastPath: one danger event at a time with the link up and
// idle: stored locally → at the hub.
func BenchmarkDangerFastPath(b *testing.B) {
	h := startHub(b, "", 0)
	a := openAgent(b, h.addDevice(b, "bench"), h.leafURL, b.TempDir(), agentOpts{})
	poll.Until(b, 10*time.Second, "link up", a.LinkUp)
	watch := watchDanger(b, h)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at := time.Now()
		seq, err := a.RecordDanger(context.Background(), danger("bench", i))
		if err != nil {
			b.Fatal(err)
		}
		watch.wait("bench", seq)
		lat = append(lat, time.Since(at))
	}
	b.StopTimer()
	b.ReportMetric(float64(pct(lat, 50).Microseconds()), "µs-p50")
	b.ReportMetric(float64(pct(lat, 99).Microseconds()), "µs-p99")
}

func protoSizeOf(m *telemetryv1.SamplesRecorded) int { n, _ := protoSize(m); return n }

// BenchmarkTwentyDevicesRealtime: 20 agents on one hub at a riding
// device's real rate (one 100-sample telemetry window per second each),
// each also raising a danger event every 500 ms for 10 s: danger event
// stored on the device → at the hub.
func BenchmarkTwentyDevicesRealtime(b *testing.B) {
	const devices, dur = 20, 10 * time.Second
	for i := 0; i < b.N; i++ {
		h := startHub(b, "", 0)
		agents := make([]*edge.Agent, devices)
		for d := range agents {
			agents[d] = openAgent(b, h.addDevice(b, fmt.Sprintf("dev%02d", d)), h.leafURL, b.TempDir(), agentOpts{production: true})
		}
		for _, a := range agents {
			poll.Until(b, 10*time.Second, "links up", a.LinkUp)
		}
		watch := watchDanger(b, h)
		b.ResetTimer()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var lat []time.Duration
		stop := time.Now().Add(dur)
		for d, a := range agents {
			dev := fmt.Sprintf("dev%02d", d)
			wg.Add(2)
			go func() {
				defer wg.Done()
				for k := 0; time.Now().Before(stop); k++ {
					if _, err := a.RecordTelemetry(context.Background(), telemetry(dev, k, 100)); err != nil {
						b.Error(err)
						return
					}
					time.Sleep(time.Second) // the device's rate
				}
			}()
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(d) * 25 * time.Millisecond) // spread the devices
				for k := 0; time.Now().Before(stop); k++ {
					at := time.Now()
					seq, err := a.RecordDanger(context.Background(), danger(dev, k))
					if err != nil {
						b.Error(err)
						return
					}
					watch.wait(dev, seq)
					mu.Lock()
					lat = append(lat, time.Since(at))
					mu.Unlock()
					time.Sleep(500 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		b.StopTimer()
		b.ReportMetric(float64(pct(lat, 50).Microseconds())/1000, "ms-danger-p50")
		b.ReportMetric(float64(pct(lat, 99).Microseconds())/1000, "ms-danger-p99")
		b.Logf("%d devices at riding rate, %d danger events: stored → at the hub p50 %v p99 %v max %v",
			devices, len(lat), pct(lat, 50), pct(lat, 99), pct(lat, 100))
		for _, a := range agents {
			a.Close()
		}
	}
}

// dangerWatch follows the danger commits arriving at the hub with a core
// subscription (no polling load on the hub) and lets callers wait for a
// device's local sequence to arrive.
type dangerWatch struct {
	mu   sync.Mutex
	cond *sync.Cond
	seen map[string]uint64
}

func watchDanger(b *testing.B, h *hub) *dangerWatch {
	w := &dangerWatch{seen: map[string]uint64{}}
	w.cond = sync.NewCond(&w.mu)
	sub, err := h.nc.Subscribe("ev.safety.device.*", func(m *nats.Msg) {
		seq, _ := strconv.ParseUint(m.Header.Get(wire.HeaderEdgeSeq), 10, 64)
		dev := m.Subject[len("ev.safety.device."):]
		w.mu.Lock()
		w.seen[dev] = max(w.seen[dev], seq)
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	h.nc.Flush()
	b.Cleanup(func() { sub.Unsubscribe() })
	return w
}

func (w *dangerWatch) wait(dev string, seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.seen[dev] < seq {
		w.cond.Wait()
	}
}
