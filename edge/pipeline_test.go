package edge_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/edge/edgetest"
	"github.com/tideline/tideline/internal/poll"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// maxAlarmLatency bounds an alarm's latency: 50 ms, five times that under
// the race detector, which slows the detector and the agent about as much.
func maxAlarmLatency() time.Duration {
	if raceEnabled {
		return 250 * time.Millisecond
	}
	return 50 * time.Millisecond
}

// A replayed trace with crashes raises local alarms within 50 ms of the
// deciding sample, runs the alarm command, and the danger events and the
// telemetry reach the hub with the device's rider.
func TestReplayAlarmsAndSyncs(t *testing.T) {
	for _, format := range []string{"csv", "jsonl"} {
		t.Run(format, func(t *testing.T) {
			h := startHub(t, "", 0)
			creds := h.addDevice(t, "bike-1")
			trace, samples := crashTrace(t, format, 3)
			out := filepath.Join(t.TempDir(), "alarms")
			var mu sync.Mutex
			var alarms []edge.Alarm
			a, err := edge.Open(context.Background(), edge.Config{
				Creds: creds, Hub: h.leafURL, DataDir: t.TempDir(), Logger: testLogger(t),
				Source: &edge.Replay{Path: trace}, Profile: safety.ProfileBike,
				AlarmCmd: `echo "$TIDELINE_KIND $TIDELINE_SEVERITY $TIDELINE_RIDER" >> ` + out,
				OnAlarm: func(al edge.Alarm) {
					mu.Lock()
					alarms = append(alarms, al)
					mu.Unlock()
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			a.Run(context.Background()) // replays as fast as possible (Speed 0), then returns
			mu.Lock()
			if len(alarms) != 6 {
				t.Fatalf("%d alarms, want 6 (HIGH then CRITICAL for each of 3 crashes): %v", len(alarms), alarms)
			}
			for _, al := range alarms {
				if al.Latency() > maxAlarmLatency() {
					t.Errorf("alarm %v: latency over %v", al, maxAlarmLatency())
				}
			}
			mu.Unlock()
			st := a.Status()
			waitSynced(t, h, eventsDanger("bike-1"), st[0].Stored, 10*time.Second)
			waitSynced(t, h, eventsTelemetry("bike-1"), st[1].Stored, 10*time.Second)
			evs := h.hubEvents(t, eventsDanger("bike-1"))
			if len(evs) != 6 {
				t.Fatalf("hub has %d danger events, want 6", len(evs))
			}
			for _, e := range evs {
				d := e.Data.(*safetyv1.DangerDetected)
				if d.RiderId != "rider-bike-1" || d.DeviceId != "bike-1" || d.Kind != safetyv1.DangerKind_DANGER_KIND_CRASH {
					t.Errorf("hub event %+v", d)
				}
				if e.Meta.Source != "edge:bike-1" {
					t.Errorf("source %q", e.Meta.Source)
				}
			}
			if n, want := len(h.hubEvents(t, eventsTelemetry("bike-1"))), (samples+99)/100; n != want {
				t.Errorf("hub has %d telemetry windows, want %d", n, want)
			}
			poll.Until(t, 5*time.Second, "alarm command output", func() bool {
				b, _ := os.ReadFile(out)
				return strings.Count(string(b), "\n") == 6
			})
			b, _ := os.ReadFile(out)
			if !strings.Contains(string(b), "DANGER_KIND_CRASH SEVERITY_HIGH rider-bike-1") || !strings.Contains(string(b), "SEVERITY_CRITICAL") {
				t.Errorf("alarm command saw:\n%s", b)
			}
		})
	}
}

// The simulator's scenarios raise the alarms their ground truth says.
func TestSimSourceAlarms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scenario string
		want     safetyv1.DangerKind
	}{
		{"crash", safetyv1.DangerKind_DANGER_KIND_CRASH},
		{"fall", safetyv1.DangerKind_DANGER_KIND_FALL},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			h := startHub(t, "", 0)
			creds := h.addDevice(t, "bike-2")
			var mu sync.Mutex
			var alarms []edge.Alarm
			a, err := edge.Open(context.Background(), edge.Config{
				Creds: creds, Hub: h.leafURL, DataDir: t.TempDir(), Logger: testLogger(t),
				Source: &edge.Sim{Scenario: tc.scenario, Seed: 1}, Profile: safety.ProfileBike,
				OnAlarm: func(al edge.Alarm) {
					mu.Lock()
					alarms = append(alarms, al)
					mu.Unlock()
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if err := a.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(alarms) == 0 || alarms[0].Event.Kind != tc.want {
				t.Fatalf("alarms %v, want first %v", alarms, tc.want)
			}
			waitSynced(t, h, eventsDanger("bike-2"), a.Status()[0].Stored, 10*time.Second)
			if n := len(h.hubEvents(t, eventsDanger("bike-2"))); n != len(alarms) {
				t.Fatalf("hub has %d danger events for %d alarms", n, len(alarms))
			}
		})
	}
}

// With no hub at all, the alarm still fires at once and the events are
// kept locally.
func TestAlarmWithoutHub(t *testing.T) {
	h := startHub(t, "", 0) // only to mint credentials
	creds := h.addDevice(t, "bike-3")
	p := edgetest.NewProxy(t, "127.0.0.1:1")
	p.Cut()
	var mu sync.Mutex
	var alarms []edge.Alarm
	a, err := edge.Open(context.Background(), edge.Config{
		Creds: creds, Hub: "nats-leaf://" + p.Addr(), DataDir: t.TempDir(), Logger: testLogger(t),
		Source: &edge.Sim{Scenario: "crash", Seed: 2}, Profile: safety.ProfileBike,
		OnAlarm: func(al edge.Alarm) {
			mu.Lock()
			alarms = append(alarms, al)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(alarms) == 0 {
		t.Fatal("no alarm")
	}
	for _, al := range alarms {
		if al.Latency() > maxAlarmLatency() {
			t.Errorf("alarm %v over %v", al, maxAlarmLatency())
		}
	}
	if st := a.Status()[0]; st.Stored != uint64(len(alarms)) || st.Forwarded != 0 {
		t.Fatalf("danger lane %+v for %d alarms", st, len(alarms))
	}
}
