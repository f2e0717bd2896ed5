package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/dashboard"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// asOfNow is the dashboard queries' "now": the phases' events fall on its day.
var asOfNow = time.Date(2026, 3, 10, 23, 0, 0, 0, dashboard.Zone)

// appendPhase appends phase k of a small world: steps of a few walkers for
// a date of their own and again for the day before, orders through their
// lifecycle, danger events, and commits neither model reads. It returns
// the last position.
func appendPhase(tb testing.TB, s *tljs.Store, k int) uint64 {
	tb.Helper()
	at := time.Date(2026, 3, 10, 8+k, 0, 0, 0, dashboard.Zone)
	var last uint64
	for i := range 6 {
		u := fmt.Sprintf("walker-%d", i)
		last = appendEvents(tb, s, es.StreamID{Context: "steps", Type: "user", ID: u},
			&stepsv1.StepsRecorded{UserId: u, Date: fmt.Sprintf("2026-03-%02d", k+1), Steps: int32(1000*k + 37*i)},
			&stepsv1.StepsRecorded{UserId: u, Date: fmt.Sprintf("2026-03-%02d", max(k, 1)), Steps: int32(500*k + 91*i)})
		o := fmt.Sprintf("o-%d-%d", k, i)
		rider := fmt.Sprintf("rider-%d", i%3)
		last = appendEvents(tb, s, es.StreamID{Context: "delivery", Type: "order", ID: o},
			&deliveryv1.OrderPlaced{OrderId: o, Zone: fmt.Sprintf("z%d", i%2), Amount: int64(9000 + 500*i), PlacedAt: timestamppb.New(at)},
			&deliveryv1.OrderAccepted{OrderId: o, RiderId: rider, AcceptedAt: timestamppb.New(at.Add(time.Minute))})
		if i%2 == 0 {
			last = appendEvents(tb, s, es.StreamID{Context: "delivery", Type: "order", ID: o},
				&deliveryv1.OrderDelivered{OrderId: o, RiderId: rider, DeliveredAt: timestamppb.New(at.Add(20 * time.Minute))})
		}
		last = appendEvents(tb, s, es.StreamID{Context: "safety", Type: "rider", ID: rider},
			&safetyv1.DangerDetected{EventId: fmt.Sprintf("d-%d-%d", k, i), RiderId: rider, Kind: safetyv1.DangerKind_DANGER_KIND_CRASH,
				Severity: safetyv1.Severity_SEVERITY_HIGH, DetectedAt: timestamppb.New(at), Location: &safetyv1.Location{Lat: 37.5, Lng: 127}})
		last = appendEvents(tb, s, es.StreamID{Context: "other", Type: "thing", ID: o}, &stepsv1.StepsRecorded{UserId: u})
	}
	return last
}

// asOfModels are the two read models the as-of API serves, each with a
// query that shows its whole content.
var asOfModels = []struct {
	name  string
	fresh func() projections.Projection
	view  func(p projections.Projection) proto.Message
}{
	{"dashboard", func() projections.Projection { return dashboard.New() }, func(p projections.Projection) proto.Message {
		d := p.(*dashboard.Model).Dashboard(dashboard.Query{Now: asOfNow, RankingLimit: 100, ActiveLimit: 100, TrendLimit: 100})
		d.GeneratedAt = nil
		return d
	}},
	{"steps", func() projections.Projection { return stepsmodel.New() }, func(p projections.Projection) proto.Message {
		m := p.(*stepsmodel.Model)
		out := &stepsv1.GetStepsResponse{}
		for d := 1; d <= 8; d++ {
			date := fmt.Sprintf("2026-03-%02d", d)
			for _, e := range m.Top(date, 100) {
				out.Steps = append(out.Steps, &stepsv1.DailySteps{UserId: e.UserID, Date: date, Steps: e.Steps})
			}
			out.Position += uint64(m.Total(date)) // a checksum of the totals
		}
		return out
	}},
}

// TestAsOfEqualsModelBuiltFromScratch appends phases while a reference
// runner (no history) builds each model from position 1, recording its
// view at each phase's end; then AsOf of the server's runner, which keeps
// a history, must show the same view at each of those positions, and
// replay only the tail after its starting snapshot.
func TestAsOfEqualsModelBuiltFromScratch(t *testing.T) {
	for _, m := range asOfModels {
		t.Run(m.name, func(t *testing.T) {
			s := runnerStore(t)
			live := tljs.NewRunner(s, m.fresh(), tljs.RunnerOptions{Logger: quietLogger,
				SnapshotEvery: 10 * time.Millisecond, HistoryEvery: 30, HistoryKeep: 3})
			ref := m.fresh()
			refRunner := tljs.NewRunner(s, ref, tljs.RunnerOptions{Bucket: "ref", HistoryEvery: -1, Logger: quietLogger})
			stopLive := startRunner(t, live)
			startRunner(t, refRunner)
			var positions []uint64
			views := map[uint64]proto.Message{}
			for k := range 6 {
				pos := appendPhase(t, s, k)
				waitFor(t, refRunner, pos)
				waitFor(t, live, pos)
				positions = append(positions, pos)
				views[pos] = m.view(ref)
				// Let a snapshot (and perhaps a kept one) land before the next phase.
				poll.Until(t, 10*time.Second, "a snapshot", func() bool { return len(live.History()) > 0 })
			}
			if err := stopLive(); err != nil { // its final snapshot may be kept: let it land
				t.Fatal(err)
			}
			kept := live.History()
			if len(kept) == 0 || len(kept) > 3 {
				t.Fatalf("history keeps %v, want 1 to 3 snapshots", kept)
			}
			positions = append(positions, 0, 1, positions[len(positions)-1]-3)
			for _, pos := range positions {
				got, err := live.AsOf(context.Background(), m.fresh, pos)
				if err != nil {
					t.Fatalf("AsOf(%d): %v", pos, err)
				}
				want, ok := views[pos]
				if !ok { // a position between phases: build it from scratch with no history
					scratch := tljs.NewRunner(s, m.fresh(), tljs.RunnerOptions{Bucket: "none", HistoryEvery: -1, Logger: quietLogger})
					sm, err := scratch.AsOf(context.Background(), m.fresh, pos)
					if err != nil {
						t.Fatal(err)
					}
					if sm.Snapshot != 0 || sm.Replayed != int(pos) {
						t.Errorf("from scratch to %d: snapshot %d, replayed %d", pos, sm.Snapshot, sm.Replayed)
					}
					want = m.view(sm.Model)
				}
				if !proto.Equal(m.view(got.Model), want) {
					t.Errorf("as of %d:\n got %v\nwant %v", pos, m.view(got.Model), want)
				}
				var from uint64
				for _, k := range kept {
					if k <= pos {
						from = k
					}
				}
				if got.Snapshot != from || got.Replayed != int(pos-from) {
					t.Errorf("as of %d: started at %d and replayed %d messages, want %d and %d (kept %v)", pos, got.Snapshot, got.Replayed, from, pos-from, kept)
				}
			}
			last := positions[len(positions)-1]
			if again, err := live.AsOf(context.Background(), m.fresh, last); err != nil || !again.Cached {
				t.Errorf("AsOf(%d) again: cached %v, %v", last, again.Cached, err)
			}
		})
	}
}

func TestAsOfRefusals(t *testing.T) {
	s := runnerStore(t)
	last := appendPhase(t, s, 0)
	r := tljs.NewRunner(s, stepsmodel.New(), tljs.RunnerOptions{Logger: quietLogger, AsOf: tljs.NewAsOfLimits(1, 10, 0)})
	fresh := func() projections.Projection { return stepsmodel.New() }
	ctx := context.Background()
	if _, err := r.AsOf(ctx, fresh, last+1); es.KindOf(err) != es.OutOfRange {
		t.Errorf("past the end: %v, want OutOfRange", err)
	}
	if _, err := r.AsOf(ctx, fresh, 11); es.KindOf(err) != es.ResourceExhausted {
		t.Errorf("11 positions with a budget of 10: %v, want ResourceExhausted", err)
	}
	if m, err := r.AsOf(ctx, fresh, 10); err != nil || m.Replayed != 10 {
		t.Errorf("10 positions with a budget of 10: replayed %d, %v", m.Replayed, err)
	}
	if _, err := r.AsOf(ctx, func() projections.Projection { return dashboard.New() }, 5); err == nil {
		t.Error("another model: no error")
	}
}

// TestPositionAt appends commits a few milliseconds apart and asks for
// the times of each, just before and just after.
func TestPositionAt(t *testing.T) {
	s := runnerStore(t)
	ctx := context.Background()
	if pos, err := s.PositionAt(ctx, time.Now()); err != nil || pos != 0 {
		t.Fatalf("empty stream: %d, %v", pos, err)
	}
	stream := es.StreamID{Context: "steps", Type: "user", ID: "u"}
	for i := range 5 {
		appendEvents(t, s, stream, &stepsv1.StepsRecorded{UserId: "u", Date: "2026-03-01", Steps: int32(i)})
		time.Sleep(3 * time.Millisecond) // a gap between stored times, not a wait for consistency
	}
	commits, _, err := s.Load(ctx, stream, 0)
	if err != nil || len(commits) != 5 {
		t.Fatalf("load: %d commits, %v", len(commits), err)
	}
	check := func(name string, at time.Time, want uint64) {
		t.Helper()
		if got, err := s.PositionAt(ctx, at); err != nil || got != want {
			t.Errorf("%s (%s): position %d, %v; want %d", name, at.Format(time.RFC3339Nano), got, err, want)
		}
	}
	check("long before", commits[0].Events[0].RecordedAt.Add(-time.Hour), 0)
	check("after all", commits[4].Events[0].RecordedAt.Add(time.Hour), 5)
	for _, c := range commits {
		at, seq := c.Events[0].RecordedAt, c.Events[0].Position.Seq
		check(fmt.Sprintf("at %d", seq), at, seq)
		check(fmt.Sprintf("just before %d", seq), at.Add(-time.Nanosecond), seq-1)
		check(fmt.Sprintf("just after %d", seq), at.Add(time.Millisecond), seq)
	}
}
