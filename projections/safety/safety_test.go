package safety_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/projtest"
	"github.com/tideline/tideline/projections/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

var t0 = time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)

func danger(id, rider string, at time.Duration, sev safetyv1.Severity) *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{
		EventId: id, DeviceId: "dev1", RiderId: rider, Kind: safetyv1.DangerKind_DANGER_KIND_CRASH,
		Severity: sev, PeakAccelG: 4.2, DetectedAt: timestamppb.New(t0.Add(at)),
	}
}

func ev(seq uint64, d proto.Message) es.Event {
	return es.Event{Data: d, Position: es.Position{Seq: seq}, RecordedAt: t0.Add(time.Hour), OccurredAt: t0}
}

func ids(list []*safetyv1.DangerDetected) []string {
	out := make([]string, len(list))
	for i, d := range list {
		out[i] = d.EventId
	}
	return out
}

func TestModel(t *testing.T) {
	cases := []struct {
		name   string
		events []*safetyv1.DangerDetected
		rider  string
		since  time.Duration
		limit  int
		want   []string
		total  int
	}{
		{"newest_first", []*safetyv1.DangerDetected{danger("a", "r1", 1, 2), danger("c", "r1", 3, 2), danger("b", "r1", 2, 2)}, "r1", 0, 10, []string{"c", "b", "a"}, 3},
		{"same_event_twice_is_one", []*safetyv1.DangerDetected{danger("a", "r1", 1, 2), danger("a", "r1", 1, 2)}, "r1", 0, 10, []string{"a"}, 1},
		{"same_id_for_another_rider_hides_nothing", []*safetyv1.DangerDetected{danger("a", "r1", 1, 2), danger("a", "r2", 2, 2)}, "r1", 0, 10, []string{"a"}, 1},
		{"other_riders_are_separate", []*safetyv1.DangerDetected{danger("a", "r1", 1, 2), danger("b", "r2", 2, 2)}, "r2", 0, 10, []string{"b"}, 1},
		{"limit_keeps_newest", []*safetyv1.DangerDetected{danger("a", "r1", 1, 2), danger("b", "r1", 2, 2), danger("c", "r1", 3, 2)}, "r1", 0, 2, []string{"c", "b"}, 3},
		{"since_excludes_older", []*safetyv1.DangerDetected{danger("a", "r1", time.Minute, 2), danger("b", "r1", 3*time.Minute, 2)}, "r1", 2 * time.Minute, 10, []string{"b"}, 2},
		{"unknown_rider_is_empty", []*safetyv1.DangerDetected{danger("a", "r1", 1, 2)}, "nobody", 0, 10, nil, 0},
		{"event_without_id_is_ignored", []*safetyv1.DangerDetected{danger("", "r1", 1, 2)}, "r1", 0, 10, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := safety.New()
			for i, d := range tc.events {
				m.Apply(ev(uint64(i+1), d))
			}
			var since time.Time
			if tc.since > 0 {
				since = t0.Add(tc.since)
			}
			got, total := m.List(tc.rider, since, tc.limit)
			if fmt.Sprint(ids(got)) != fmt.Sprint(tc.want) || total != tc.total {
				t.Fatalf("List = %v (total %d), want %v (total %d)", ids(got), total, tc.want, tc.total)
			}
			if m.Position() != uint64(len(tc.events)) {
				t.Fatalf("position = %d", m.Position())
			}
		})
	}
}

func TestUpdateRaisesSeverityInAnyOrder(t *testing.T) {
	first := danger("a", "r1", 1, safetyv1.Severity_SEVERITY_HIGH)
	update := danger("a", "r1", 1, safetyv1.Severity_SEVERITY_CRITICAL)
	update.PeakAccelG = 6
	for _, order := range [][]*safetyv1.DangerDetected{{first, update}, {update, first}} {
		m := safety.New()
		for i, d := range order {
			m.Apply(ev(uint64(i+1), d))
		}
		got, _ := m.List("r1", time.Time{}, 10)
		if len(got) != 1 || got[0].Severity != safetyv1.Severity_SEVERITY_CRITICAL || got[0].PeakAccelG != 6 {
			t.Fatalf("merged = %v", got)
		}
	}
}

func TestReceivedAtIsStoreTime(t *testing.T) {
	m := safety.New()
	m.Apply(ev(1, danger("a", "r1", 1, 2)))
	got, _ := m.List("r1", time.Time{}, 1)
	if !got[0].ReceivedAt.AsTime().Equal(t0.Add(time.Hour)) {
		t.Fatalf("received_at = %v, want the store's time", got[0].ReceivedAt.AsTime())
	}
	got[0].RiderId = "mutated"
	again, _ := m.List("r1", time.Time{}, 1)
	if again[0].RiderId != "r1" {
		t.Fatal("List returned the model's own message")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := safety.New()
	for i := range 500 {
		d := danger(fmt.Sprintf("e%d", r.IntN(400)), fmt.Sprintf("r%d", r.IntN(20)), time.Duration(r.IntN(10000))*time.Second, safetyv1.Severity(1+r.IntN(4)))
		m.Apply(ev(uint64(i+1), d))
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	n := safety.New()
	if err := n.Restore(snap); err != nil {
		t.Fatal(err)
	}
	again, _ := n.Snapshot()
	if string(again) != string(snap) || n.Position() != m.Position() {
		t.Fatal("restored model differs")
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), snap[:len(snap)-3]} {
		if err := n.Restore(bad); err == nil {
			t.Fatalf("Restore(%d bytes) accepted garbage", len(bad))
		}
	}
	if after, _ := n.Snapshot(); string(after) != string(snap) {
		t.Fatal("failed Restore changed the model")
	}
}

func TestKeepsAtMostMaxPerRider(t *testing.T) {
	m := safety.New()
	for i := range safety.MaxPerRider + 5 {
		m.Apply(ev(uint64(i+1), danger(fmt.Sprintf("e%06d", i), "r1", time.Duration(i)*time.Second, 2)))
	}
	got, total := m.List("r1", time.Time{}, 1<<30)
	if total != safety.MaxPerRider || len(got) != safety.MaxPerRider || got[len(got)-1].EventId != "e000005" {
		t.Fatalf("kept %d (total %d), oldest %s", len(got), total, got[len(got)-1].EventId)
	}
}

// The segmented snapshot restores the model, an Apply during an Encode
// changes nothing it reads, and events of a few riders re-encode only
// their partitions.
func TestSegments(t *testing.T) {
	var evs []es.Event
	seq := uint64(0)
	for d := range projtest.DangerEvents(200, 5, t0) {
		seq++
		evs = append(evs, ev(seq, d))
	}
	// next: the first events again (merged: severity rises) and new ones
	// of the same riders, some detected before their kept ones.
	var next []es.Event
	for i, e := range evs[:400] {
		d := proto.CloneOf(e.Data.(*safetyv1.DangerDetected))
		if i%2 == 0 {
			d.Severity = safetyv1.Severity_SEVERITY_CRITICAL
		} else {
			d.EventId += "-early"
			d.DetectedAt = timestamppb.New(d.DetectedAt.AsTime().Add(-time.Hour))
		}
		seq++
		next = append(next, ev(seq, d))
	}
	later := []es.Event{ev(seq+1, danger("late-1", "rider-0001", 5, 2)), ev(seq+2, danger("late-2", "rider-0002", 6, 2))}
	projtest.Segments(t, func() projtest.SegmentedModel { return safety.New() }, evs, next, later)
}
