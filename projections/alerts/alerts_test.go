package alerts_test

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/projections/alerts"
	"github.com/tideline/tideline/projections/projtest"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	low  = safetyv1.Severity_SEVERITY_LOW
	med  = safetyv1.Severity_SEVERITY_MEDIUM
	high = safetyv1.Severity_SEVERITY_HIGH
	crit = safetyv1.Severity_SEVERITY_CRITICAL
)

// danger is rider r's event id at t0+min minutes.
type danger struct {
	rider, id string
	min       float64
	sev       safetyv1.Severity
}

func (d danger) event() *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: d.id, RiderId: d.rider, Kind: safetyv1.DangerKind_DANGER_KIND_HARD_BRAKE,
		Severity: d.sev, DetectedAt: timestamppb.New(t0.Add(time.Duration(d.min * float64(time.Minute))))}
}

type feeder struct {
	m   *alerts.Model
	seq uint64
}

func (f *feeder) apply(p proto.Message) {
	f.seq++
	f.m.Apply(es.Event{Data: p, Position: es.Position{Seq: f.seq}})
}

// raiseDue plays the reaction: every alert an event triggers is raised.
func (f *feeder) danger(d danger) []*safetyv1.AlertRaisedV2 {
	f.apply(d.event())
	got := f.m.Triggered(d.id)
	for _, a := range got {
		f.apply(a)
	}
	return got
}

func TestRules(t *testing.T) {
	cases := []struct {
		name   string
		events []danger
		// want maps the event that must trigger to the incident's first
		// event id; no other event may trigger.
		want map[string]string
	}{
		{"one_high_raises_at_once", []danger{{"r1", "a", 0, high}}, map[string]string{"a": "a"}},
		{"one_critical_raises_at_once", []danger{{"r1", "a", 0, crit}}, map[string]string{"a": "a"}},
		{"two_lows_within_window_do_not_raise", []danger{{"r1", "a", 0, low}, {"r1", "b", 5, med}}, nil},
		{"three_lows_within_window_raise", []danger{{"r1", "a", 0, low}, {"r1", "b", 4, low}, {"r1", "c", 9, med}}, map[string]string{"c": "a"}},
		{"one_incident_raises_once", []danger{{"r1", "a", 0, high}, {"r1", "b", 1, low}, {"r1", "c", 2, low}, {"r1", "d", 3, crit}}, map[string]string{"a": "a"}},
		{"critical_upgrade_of_a_raised_incident_raises_nothing", []danger{{"r1", "dev:crash-1:high", 0, high}, {"r1", "dev:crash-1:critical", 0.5, crit}}, map[string]string{"dev:crash-1:high": "dev:crash-1:high"}},
		{"sparse_events_never_raise", []danger{{"r1", "a", 0, low}, {"r1", "b", 11, low}, {"r1", "c", 22, low}, {"r1", "d", 33, low}}, nil},
		{"sliding_window_inside_one_incident", []danger{{"r1", "a", 0, low}, {"r1", "b", 9, low}, {"r1", "c", 11, low}, {"r1", "d", 12, low}}, map[string]string{"d": "a"}},
		{"a_new_incident_raises_again", []danger{{"r1", "a", 0, high}, {"r1", "b", 30, high}}, map[string]string{"a": "a", "b": "b"}},
		{"riders_are_independent", []danger{{"r1", "a", 0, low}, {"r2", "b", 1, low}, {"r1", "c", 2, low}, {"r2", "d", 3, low}}, nil},
		{"duplicates_do_not_count", []danger{{"r1", "a", 0, low}, {"r1", "a", 0, low}, {"r1", "a", 0, low}}, nil},
		{"late_old_event_is_judged_alone", []danger{{"r1", "a", 60, low}, {"r1", "b", 61, low}, {"r1", "old", 0, high}, {"r1", "c", 62, low}}, map[string]string{"old": "old", "c": "a"}},
		{"out_of_order_arrival_within_incident", []danger{{"r1", "b", 5, low}, {"r1", "a", 1, low}, {"r1", "c", 3, low}}, map[string]string{"c": "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &feeder{m: alerts.New(alerts.Rules{})}
			for _, d := range tc.events {
				got := f.danger(d)
				first, want := tc.want[d.id]
				if !want {
					if len(got) != 0 {
						t.Fatalf("event %s raised %v", d.id, got)
					}
					continue
				}
				if len(got) != 1 || got[0].AlertId != safety.AlertID(d.rider, first) || got[0].RiderId != d.rider || len(got[0].EventIds) == 0 {
					t.Fatalf("event %s raised %v, want one alert of incident %s", d.id, got, first)
				}
				delete(tc.want, d.id) // a duplicate of the trigger must not raise again
			}
			all, total := f.m.List("", false, 100)
			if total != len(all) {
				t.Fatalf("total %d, listed %d", total, len(all))
			}
		})
	}
}

func TestReadModel(t *testing.T) {
	f := &feeder{m: alerts.New(alerts.Rules{Count: 2, Window: time.Minute})}
	a1 := f.danger(danger{"r1", "a", 0, low})
	a2 := f.danger(danger{"r1", "b", 0.5, low})
	b := f.danger(danger{"r2", "x", 10, high})
	if len(a1) != 0 || len(a2) != 1 || len(b) != 1 {
		t.Fatalf("triggered %v %v %v", a1, a2, b)
	}
	if a2[0].Reason != "2 danger events within 1m0s" || a2[0].Rule != safetyv1.AlertRule_ALERT_RULE_REPEATED_EVENTS ||
		a2[0].Severity != low || len(a2[0].EventIds) != 2 {
		t.Fatalf("count alert = %v", a2[0])
	}
	if b[0].Reason != "severity HIGH hard brake" || b[0].Rule != safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT {
		t.Fatalf("severe alert = %v", b[0])
	}
	if got := f.m.Triggered("b"); len(got) != 0 {
		t.Fatalf("raised alert still due: %v", got)
	}
	f.apply(&safetyv1.AlertAcknowledged{AlertId: b[0].AlertId, By: "admin:ops"})
	cases := []struct {
		name     string
		rider    string
		openOnly bool
		want     []string
	}{
		{"all_newest_first", "", false, []string{b[0].AlertId, a2[0].AlertId}},
		{"open_only", "", true, []string{a2[0].AlertId}},
		{"one_rider", "r2", false, []string{b[0].AlertId}},
		{"one_rider_open", "r2", true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, total := f.m.List(tc.rider, tc.openOnly, 10)
			if total != len(tc.want) || len(got) != len(tc.want) {
				t.Fatalf("got %d (total %d), want %v", len(got), total, tc.want)
			}
			for i, a := range got {
				if a.RaisedV2.AlertId != tc.want[i] || a.Raised.AlertId != tc.want[i] || a.Raised.Reason != a.RaisedV2.Reason {
					t.Fatalf("alert %d = %v, want %s", i, a, tc.want[i])
				}
			}
		})
	}
	if a := f.m.Get(b[0].AlertId); a == nil || a.Acknowledged.GetBy() != "admin:ops" {
		t.Fatalf("get = %v", a)
	}
}

func TestSnapshotAndRebuildAreDeterministic(t *testing.T) {
	var history []proto.Message
	live := &feeder{m: alerts.New(alerts.Rules{})}
	for i := range 40 {
		d := danger{fmt.Sprintf("r%d", i%3), fmt.Sprintf("e%d", i), float64(i) * 2, safetyv1.Severity(1 + i%3)}
		history = append(history, d.event())
		for _, a := range live.danger(d) {
			history = append(history, a)
		}
	}
	live.apply(&safetyv1.DangerDetected{EventId: "pending", RiderId: "r9", Severity: high, DetectedAt: timestamppb.New(t0)})
	history = append(history, &safetyv1.DangerDetected{EventId: "pending", RiderId: "r9", Severity: high, DetectedAt: timestamppb.New(t0)})
	rebuilt := &feeder{m: alerts.New(alerts.Rules{})}
	for _, p := range history {
		rebuilt.apply(p)
	}
	s1, err := live.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := rebuilt.m.Snapshot()
	if !bytes.Equal(s1, s2) {
		t.Fatal("live and rebuilt models differ")
	}
	restored := alerts.New(alerts.Rules{})
	if err := restored.Restore(s1); err != nil {
		t.Fatal(err)
	}
	s3, _ := restored.Snapshot()
	if !bytes.Equal(s1, s3) || restored.Position() != live.m.Position() {
		t.Fatal("restored model differs")
	}
	if len(restored.Pending()) != 1 || len(restored.Triggered("pending")) != 1 {
		t.Fatalf("pending = %v", restored.Pending())
	}
	if err := restored.Restore([]byte("junk")); err == nil {
		t.Fatal("restored junk")
	}
}

// The segmented snapshot restores the model, an Apply during an Encode
// changes nothing it reads (incidents grown in the middle, alerts
// acknowledged), and a few riders' events re-encode only their
// partitions.
func TestSegments(t *testing.T) {
	live := &feeder{m: alerts.New(alerts.Rules{})}
	var evs []es.Event
	add := func(p proto.Message) {
		live.apply(p)
		evs = append(evs, es.Event{Data: p, Position: es.Position{Seq: live.seq}})
	}
	// first: 100 riders' dangers, a minute apart, raising what is due as
	// the reaction would.
	var raised []string
	for i := range 1200 {
		d := danger{fmt.Sprintf("r%03d", i%100), fmt.Sprintf("e%04d", i), float64(i / 100), safetyv1.Severity(1 + i%3)}
		add(d.event())
		for _, a := range live.m.Triggered(d.id) {
			add(a)
			raised = append(raised, a.AlertId)
		}
	}
	first := len(evs)
	// next: every other alert acknowledged, and dangers detected between
	// the incidents' events.
	for i, id := range raised {
		if i%2 == 0 {
			add(&safetyv1.AlertAcknowledged{AlertId: id, By: "admin:ops"})
		}
	}
	for i := range 100 {
		add(danger{fmt.Sprintf("r%03d", i), fmt.Sprintf("mid%03d", i), 5.5, low}.event())
	}
	later := []es.Event{
		{Data: danger{"r001", "late-1", 11.2, low}.event(), Position: es.Position{Seq: live.seq + 1}},
		{Data: danger{"r001", "late-2", 11.5, high}.event(), Position: es.Position{Seq: live.seq + 2}},
	}
	projtest.Segments(t, func() projtest.SegmentedModel { return alerts.New(alerts.Rules{}) }, evs[:first], evs[first:], later)
}

// List answers from lists Apply keeps: the same as sorting every alert,
// for all riders or one, open only or not, after raises out of order,
// acknowledgements (repeated, and of unknown alerts) and a restore.
func TestListMatchesEveryAlert(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	f := &feeder{m: alerts.New(alerts.Rules{})}
	raised := map[string]*safetyv1.AlertRaisedV2{}
	acked := map[string]bool{}
	for i := range 600 {
		switch rng.IntN(4) {
		case 0, 1, 2:
			a := &safetyv1.AlertRaisedV2{AlertId: fmt.Sprintf("al%04d", i), RiderId: fmt.Sprintf("r%d", rng.IntN(5)),
				RaisedAt: timestamppb.New(t0.Add(time.Duration(rng.IntN(300)) * time.Second))} // equal times too
			f.apply(a)
			raised[a.AlertId] = a
		default:
			id := fmt.Sprintf("al%04d", rng.IntN(i+1))
			f.apply(&safetyv1.AlertAcknowledged{AlertId: id, By: "admin:ops"})
			if raised[id] != nil {
				acked[id] = true
			}
		}
	}
	want := func(rider string, openOnly bool) []string {
		var out []*safetyv1.AlertRaisedV2
		for id, a := range raised {
			if (rider == "" || a.RiderId == rider) && (!openOnly || !acked[id]) {
				out = append(out, a)
			}
		}
		slices.SortFunc(out, func(a, b *safetyv1.AlertRaisedV2) int {
			return cmp.Or(b.RaisedAt.AsTime().Compare(a.RaisedAt.AsTime()), cmp.Compare(b.AlertId, a.AlertId))
		})
		ids := make([]string, len(out))
		for i, a := range out {
			ids[i] = a.AlertId
		}
		return ids
	}
	snap, err := f.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := alerts.New(alerts.Rules{})
	if err := restored.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*alerts.Model{f.m, restored} {
		for _, rider := range []string{"", "r0", "r3", "nobody"} {
			for _, openOnly := range []bool{false, true} {
				all := want(rider, openOnly)
				for _, limit := range []int{0, 1, 7, 1000} {
					got, total := m.List(rider, openOnly, limit)
					ids := make([]string, len(got))
					for i, a := range got {
						ids[i] = a.RaisedV2.AlertId
						if a.Acknowledged != nil == !acked[ids[i]] {
							t.Fatalf("alert %s acknowledged: %v", ids[i], a.Acknowledged)
						}
					}
					if total != len(all) || !slices.Equal(ids, all[:min(limit, len(all))]) {
						t.Fatalf("List(%q, %v, %d) = %v (total %d), want %v (total %d)", rider, openOnly, limit, ids, total, all[:min(limit, len(all))], len(all))
					}
				}
			}
		}
	}
}
