package edge

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
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
// ends, ctx ends or the agent closes, then waits until everything it
// produced is stored locally. Per sample: detect; on a detection, fire
// the alarm at once (log line, --alarm-cmd started on its own goroutine),
// then queue the DangerDetected for the danger lane; batch samples into
// telemetry windows for the telemetry lane. Storage runs on writer
// goroutines, so neither the disk nor the network ever delays detection;
// telemetry windows are dropped if their queue is full, and a danger
// event that fails to store is retried until it is stored or the run
// ends (then logged as lost). With no source, Run waits for ctx. It
// returns ErrClosed once Close has begun.
func (a *Agent) Run(ctx context.Context) error {
	if !a.enter() {
		return ErrClosed
	}
	defer a.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(a.life, cancel)()
	if a.cfg.Source == nil {
		<-ctx.Done()
		return nil
	}
	det := safety.NewDetector(a.cfg.Profile.Config())
	dangerQ := make(chan proto.Message, 1024)
	telQ := make(chan proto.Message, 256)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.write(ctx, a.danger, dangerQ, true) }()
	go func() { defer wg.Done(); a.write(ctx, a.telemetry, telQ, false) }()

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
			select {
			case dangerQ <- ev:
			default: // the local store is behind: wait for it, but not past the run
				select {
				case dangerQ <- ev:
				case <-ctx.Done():
					a.log.Error("danger event lost: the run ended with the local store behind", "event_id", ev.EventId)
					return ctx.Err()
				}
			}
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
	if a.cfg.AlarmCmd != "" {
		a.alarmCommand(ev)
	}
	al := Alarm{Event: ev, Arrived: arrived, Fired: time.Now()}
	if a.cfg.OnAlarm != nil {
		a.cfg.OnAlarm(al)
	}
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// storeTimeout bounds one attempt to store an event locally.
const storeTimeout = 5 * time.Second

// write stores the queued events in f's lane, in order. With retry (the
// danger lane) an event that fails to store is tried again with backoff
// (with the same message id, so an attempt that did land is not stored
// twice) until it is stored or ctx ends; without, it is dropped. Once ctx
// has ended the queue is still drained, one attempt per event, until the
// first failure: the rest are then counted as lost, so that Run returns.
func (a *Agent) write(ctx context.Context, f *forwarder, q <-chan proto.Message, retry bool) {
	lost := 0
	for ev := range q {
		if lost > 0 {
			lost++
			continue
		}
		msg, err := localMsg(f.lane.local, ev)
		if err != nil {
			a.log.Error("encode event: dropped", "lane", f.lane.name, "err", err)
			continue
		}
		for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
			_, err = a.store(actx, f, []*nats.Msg{msg})
			cancel()
			if err == nil || !retry || ctx.Err() != nil {
				break
			}
			a.log.Error("store event: retrying", "lane", f.lane.name, "err", err, "in", backoff)
			if !wait(ctx, backoff) {
				break
			}
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			lost = 1
			a.log.Error("store event: failed as the run ended", "lane", f.lane.name, "err", err)
		default:
			a.log.Error("store event: dropped", "lane", f.lane.name, "err", err)
		}
	}
	if lost > 0 {
		a.log.Error("events lost: not stored when the run ended", "lane", f.lane.name, "lost", lost)
	}
}

// wait waits d or until ctx ends, and reports whether d passed.
func wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
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
