package edge

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
)

// Alarm is one local alarm: a detection and when it fired.
type Alarm struct {
	Event *safetyv1.DangerDetected
	// Arrived is when the deciding sample reached the agent.
	Arrived time.Time
	// Fired is when the alarm's log line was written and its command (if
	// any) was handed to a goroutine to start.
	Fired time.Time
}

// Latency is the time from the deciding sample's arrival to the alarm.
func (a Alarm) Latency() time.Duration { return a.Fired.Sub(a.Arrived) }

// Run feeds the configured source through the detector until the source
// ends or ctx ends, then waits until everything it produced is stored
// locally. Per sample: detect; on a detection, fire the alarm at once
// (log line, --alarm-cmd started on its own goroutine), then queue the
// DangerDetected for the danger lane; batch samples into telemetry
// windows for the telemetry lane. Storage runs on writer goroutines, so
// neither the disk nor the network ever delays detection; danger events
// are never dropped, telemetry windows are dropped if their queue is full.
// With no source, Run waits for ctx.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Source == nil {
		<-ctx.Done()
		return nil
	}
	det := safety.NewDetector(a.cfg.Profile.Config())
	dangerQ := make(chan *safetyv1.DangerDetected, 1024)
	telQ := make(chan *telemetryv1.SamplesRecorded, 256)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.writeDanger(dangerQ) }()
	go func() { defer wg.Done(); a.writeTelemetry(telQ) }()

	var telDropped atomic.Uint64
	win := newWindow(a.cfg.Creds, a.cfg.TelemetryWindow)
	flush := func() {
		if w := win.take(); w != nil {
			select {
			case telQ <- w:
			default:
				if telDropped.Add(1)%100 == 1 {
					a.log.Warn("telemetry queue full: window dropped", "dropped", telDropped.Load())
				}
			}
		}
	}
	var samples uint64
	err := a.cfg.Source.Run(ctx, func(s safety.Sample) error {
		arrived := time.Now()
		samples++
		if d, ok := det.Push(s); ok {
			ev := d.Event(a.cfg.Creds.DeviceID, a.cfg.Creds.RiderID)
			a.fire(ev, arrived)
			dangerQ <- ev
		}
		if win.add(s) {
			flush()
		}
		return nil
	})
	flush()
	close(dangerQ)
	close(telQ)
	wg.Wait()
	st := a.Status()
	a.log.Info("source ended", "samples", samples, "danger_stored", st[0].Stored, "telemetry_stored", st[1].Stored,
		"telemetry_queue_dropped", telDropped.Load(), "err", err)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// fire raises the local alarm: a log line always, the alarm command if
// configured. It never waits on the command.
func (a *Agent) fire(ev *safetyv1.DangerDetected, arrived time.Time) {
	a.log.Warn("DANGER", "kind", ev.Kind.String(), "severity", ev.Severity.String(), "event_id", ev.EventId,
		"rider", ev.RiderId, "peak_g", round2(ev.PeakAccelG), "peak_dps", round2(ev.PeakGyroDps), "tilt_deg", round2(ev.TiltDeg),
		"detected_at", ev.DetectedAt.AsTime().Format(time.RFC3339Nano))
	if cmd := a.cfg.AlarmCmd; cmd != "" {
		env := append(os.Environ(),
			"TIDELINE_KIND="+ev.Kind.String(),
			"TIDELINE_SEVERITY="+ev.Severity.String(),
			"TIDELINE_EVENT_ID="+ev.EventId,
			"TIDELINE_DEVICE="+ev.DeviceId,
			"TIDELINE_RIDER="+ev.RiderId,
			"TIDELINE_DETECTED_AT="+ev.DetectedAt.AsTime().Format(time.RFC3339Nano),
			"TIDELINE_PEAK_G="+strconv.FormatFloat(ev.PeakAccelG, 'f', 2, 64),
			"TIDELINE_PEAK_DPS="+strconv.FormatFloat(ev.PeakGyroDps, 'f', 1, 64),
			"TIDELINE_TILT_DEG="+strconv.FormatFloat(ev.TiltDeg, 'f', 1, 64),
		)
		if l := ev.Location; l != nil {
			env = append(env, "TIDELINE_LAT="+strconv.FormatFloat(l.Lat, 'f', 6, 64), "TIDELINE_LNG="+strconv.FormatFloat(l.Lng, 'f', 6, 64))
		}
		go func() {
			c := exec.Command("/bin/sh", "-c", cmd)
			c.Env = env
			c.Stdout, c.Stderr = os.Stderr, os.Stderr
			if err := c.Run(); err != nil {
				a.log.Error("alarm command failed", "cmd", cmd, "err", err)
			}
		}()
	}
	al := Alarm{Event: ev, Arrived: arrived, Fired: time.Now()}
	if a.cfg.OnAlarm != nil {
		a.cfg.OnAlarm(al)
	}
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// writeDanger stores danger events; a failure to store locally is retried
// (with the same message id, so an attempt that did land is not stored
// twice) until it succeeds: a danger event is never dropped.
func (a *Agent) writeDanger(q <-chan *safetyv1.DangerDetected) {
	for ev := range q {
		msg, err := localMsg(a.danger.lane.local, ev)
		if err != nil {
			a.log.Error("encode danger event", "event_id", ev.EventId, "err", err)
			continue
		}
		for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := a.store(ctx, a.danger, []*nats.Msg{msg})
			cancel()
			if err == nil {
				break
			}
			a.log.Error("store danger event: retrying", "event_id", ev.EventId, "err", err)
			time.Sleep(backoff)
		}
	}
}

func (a *Agent) writeTelemetry(q <-chan *telemetryv1.SamplesRecorded) {
	for w := range q {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := a.RecordTelemetry(ctx, w); err != nil {
			a.log.Error("store telemetry window: dropped", "err", err)
		}
		cancel()
	}
}

// window accumulates samples into one SamplesRecorded.
type window struct {
	creds Creds
	size  int
	cur   *telemetryv1.SamplesRecorded
	first time.Time
}

func newWindow(c Creds, size int) *window { return &window{creds: c, size: size} }

// add appends s and reports whether the window is full.
func (w *window) add(s safety.Sample) bool {
	if w.cur == nil {
		w.first = s.T
		w.cur = &telemetryv1.SamplesRecorded{DeviceId: w.creds.DeviceID, RiderId: w.creds.RiderID, FirstAt: timestamppb.New(s.T)}
	}
	c := w.cur
	c.OffsetMs = append(c.OffsetMs, uint32(max(0, s.T.Sub(w.first).Milliseconds())))
	c.AccelXMg = append(c.AccelXMg, fixed(s.Accel[0], 1000))
	c.AccelYMg = append(c.AccelYMg, fixed(s.Accel[1], 1000))
	c.AccelZMg = append(c.AccelZMg, fixed(s.Accel[2], 1000))
	c.GyroXDdps = append(c.GyroXDdps, fixed(s.Gyro[0], 10))
	c.GyroYDdps = append(c.GyroYDdps, fixed(s.Gyro[1], 10))
	c.GyroZDdps = append(c.GyroZDdps, fixed(s.Gyro[2], 10))
	return len(c.OffsetMs) >= w.size
}

func (w *window) take() *telemetryv1.SamplesRecorded {
	c := w.cur
	w.cur = nil
	return c
}

func fixed(v, scale float64) int32 {
	return int32(max(math.MinInt32, min(math.MaxInt32, math.Round(v*scale))))
}

// String describes an alarm for logs and tests.
func (a Alarm) String() string {
	return fmt.Sprintf("%s %s in %v", a.Event.Kind, a.Event.Severity, a.Latency())
}
