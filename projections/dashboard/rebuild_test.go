package dashboard_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/dashboard"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// genOrder is one generated order's lifecycle; zero times did not happen
// (before the stream's end).
type genOrder struct {
	id, zone, rider                             string
	amount                                      int64
	placed, accepted, pickedUp, delivered, canc time.Time
	stars                                       int32
}

type timed struct {
	at  time.Time
	msg proto.Message
}

// stream generates n orders' lifecycles and dangers danger events (some
// delivered twice) between start and end, in timestamp order.
func stream(seed uint64, n, dangers int, start, end time.Time) ([]proto.Message, []genOrder) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	span := end.Sub(start)
	minutes := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Minute }
	var evs []timed
	emit := func(at time.Time, msg proto.Message) bool {
		if at.After(end) {
			return false
		}
		evs = append(evs, timed{at, msg})
		return true
	}
	orders := make([]genOrder, n)
	for i := range orders {
		o := &orders[i]
		o.id = fmt.Sprintf("o%04d", i)
		o.zone = fmt.Sprintf("z%d", rng.IntN(8))
		o.amount = int64(8000 + rng.IntN(60)*500)
		o.placed = start.Add(time.Duration(rng.Int64N(int64(span))))
		emit(o.placed, placed(o.id, o.zone, o.amount, o.placed))
		if rng.Float64() < 0.1 {
			if t := o.placed.Add(minutes(1, 20)); emit(t, cancelled(o.id, t)) {
				o.canc = t
			}
			continue
		}
		o.rider = fmt.Sprintf("r%02d", rng.IntN(50))
		t := o.placed.Add(minutes(1, 10))
		if !emit(t, accepted(o.id, o.rider, t)) {
			continue
		}
		o.accepted = t
		if rng.Float64() < 0.05 {
			if t := t.Add(minutes(1, 10)); emit(t, cancelled(o.id, t)) {
				o.canc = t
			}
			continue
		}
		if t = t.Add(minutes(3, 20)); !emit(t, pickedUp(o.id, o.rider, t)) {
			continue
		}
		o.pickedUp = t
		if t = t.Add(minutes(5, 40)); !emit(t, delivered(o.id, o.rider, t)) {
			continue
		}
		o.delivered = t
		if rng.Float64() < 0.6 {
			stars := int32(1 + rng.IntN(5))
			if emit(t.Add(minutes(1, 60)), rated(o.id, o.rider, stars)) {
				o.stars = stars
			}
		}
	}
	for i := range dangers {
		at := start.Add(time.Duration(rng.Int64N(int64(span))))
		var loc *safetyv1.Location
		if rng.Float64() < 0.9 {
			loc = &safetyv1.Location{Lat: 37.45 + rng.Float64()*0.2, Lng: 126.9 + rng.Float64()*0.2}
		}
		d := dangerAt(fmt.Sprintf("d%04d", i), fmt.Sprintf("r%02d", rng.IntN(50)), at, loc)
		evs = append(evs, timed{at, d})
		if rng.Float64() < 0.1 { // the synced copy after the fast path
			evs = append(evs, timed{at.Add(minutes(1, 120)), d})
		}
	}
	slices.SortStableFunc(evs, func(a, b timed) int { return a.at.Compare(b.at) })
	msgs := make([]proto.Message, len(evs))
	for i, e := range evs {
		msgs[i] = e.msg
	}
	return msgs, orders
}

func apply(m *dashboard.Model, msgs []proto.Message, from int) {
	for i, msg := range msgs {
		m.Apply(es.Event{Type: string(msg.ProtoReflect().Descriptor().FullName()), Data: msg, Position: es.Position{Seq: uint64(from + i + 1)}})
	}
}

// TestRebuildGivesTheSameFigures builds the model live (with a snapshot
// and restore half-way), from a snapshot, and afresh from the same
// events, and compares every figure of several dashboards, the snapshots'
// bytes, and the figures against a count straight from the generator.
func TestRebuildGivesTheSameFigures(t *testing.T) {
	start, end := kst(2026, 10, 20, 0, 0), kst(2026, 11, 22, 18, 0)
	msgs, orders := stream(7, 2000, 600, start, end)

	live := dashboard.New()
	half := len(msgs) / 2
	apply(live, msgs[:half], 0)
	snap, err := live.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	resumed := dashboard.New()
	if err := resumed.Restore(snap); err != nil {
		t.Fatal(err)
	}
	apply(live, msgs[half:], half)
	apply(resumed, msgs[half:], half)

	fresh := dashboard.New()
	apply(fresh, msgs, 0)
	snap, err = live.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := dashboard.New()
	if err := restored.Restore(snap); err != nil {
		t.Fatal(err)
	}
	// A model reset and rebuilt, as the runner does on a version change.
	rebuilt := dashboard.New()
	apply(rebuilt, msgs[:100], 0)
	rebuilt.Reset()
	apply(rebuilt, msgs, 0)

	models := map[string]*dashboard.Model{"resumed": resumed, "fresh": fresh, "restored": restored, "rebuilt": rebuilt}
	for name, m := range models {
		b, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, snap) {
			t.Errorf("%s snapshot differs from live (%d vs %d bytes)", name, len(b), len(snap))
		}
	}
	queries := []dashboard.Query{
		{Now: end},
		{Now: kst(2026, 11, 1, 0, 30), RankingLimit: 1000, ActiveLimit: 1000, TrendLimit: 1000},
		{Now: kst(2026, 10, 31, 23, 59), RiderID: "r07"},
		{Now: end, HeatFrom: start, HeatTo: end, CellDeg: 0.005},
		{Now: end, HeatFrom: kst(2026, 11, 10, 6, 0), HeatTo: kst(2026, 11, 12, 6, 0), CellDeg: 0.0001},
	}
	for i, q := range queries {
		want := live.Dashboard(q)
		for name, m := range models {
			if got := m.Dashboard(q); !proto.Equal(got, want) {
				t.Errorf("query %d: %s dashboard differs from live:\n%s\nlive:\n%s", i, name, prototext.Format(got), prototext.Format(want))
			}
		}
	}
	checkAgainstGenerator(t, live.Dashboard(dashboard.Query{Now: end, ActiveLimit: 1000, RankingLimit: 1000}), orders, end)
}

// checkAgainstGenerator recounts this month's figures, the board and the
// ratings straight from the generated lifecycles.
func checkAgainstGenerator(t *testing.T, d *dashboardv1.Dashboard, orders []genOrder, now time.Time) {
	t.Helper()
	month := func(at time.Time) bool {
		return !at.IsZero() && at.In(dashboard.Zone).Format("2006-01") == now.In(dashboard.Zone).Format("2006-01")
	}
	var want dashboardv1.PeriodStats
	var deliveryMs int64
	var board dashboardv1.Board
	type sum struct{ stars, n int }
	ratings := map[string]*sum{}
	for _, o := range orders {
		if month(o.placed) {
			want.Orders++
			want.AmountTotal += o.amount
		}
		if month(o.delivered) {
			want.Delivered++
			deliveryMs += o.delivered.Sub(o.accepted).Milliseconds()
		}
		if month(o.canc) {
			want.Cancelled++
		}
		switch {
		case !o.delivered.IsZero() || !o.canc.IsZero():
		case !o.pickedUp.IsZero():
			board.PickedUp++
		case !o.accepted.IsZero():
			board.Accepted++
		default:
			board.Placed++
		}
		if o.stars > 0 {
			s := ratings[o.rider]
			if s == nil {
				s = &sum{}
				ratings[o.rider] = s
			}
			s.stars += int(o.stars)
			s.n++
		}
	}
	want.AvgOrderAmount = float64(want.AmountTotal) / float64(want.Orders)
	want.AvgDeliverySeconds = float64(deliveryMs) / 1000 / float64(want.Delivered)
	if !proto.Equal(d.ThisMonth, &want) {
		t.Errorf("this month = %v, generator says %v", d.ThisMonth, &want)
	}
	b := d.Board
	if b.Placed != board.Placed || b.Accepted != board.Accepted || b.PickedUp != board.PickedUp || int(b.Accepted+b.PickedUp) != len(b.Active) {
		t.Errorf("board placed %d accepted %d picked up %d (%d listed), generator says %d %d %d", b.Placed, b.Accepted, b.PickedUp, len(b.Active), board.Placed, board.Accepted, board.PickedUp)
	}
	if int(d.RatedRiders) != len(ratings) {
		t.Errorf("rated riders = %d, generator says %d", d.RatedRiders, len(ratings))
	}
	for _, r := range d.RiderRanking {
		s := ratings[r.RiderId]
		if s == nil || int(r.Ratings) != s.n || r.AverageStars != float64(s.stars)/float64(s.n) {
			t.Errorf("rider %s: %v, generator says %+v", r.RiderId, r, s)
		}
	}
	t.Logf("this month: %d orders, avg %.0f KRW, %d delivered in %.0f s on average, %d cancelled; board %d placed, %d accepted, %d picked up",
		want.Orders, want.AvgOrderAmount, want.Delivered, want.AvgDeliverySeconds, want.Cancelled, board.Placed, board.Accepted, board.PickedUp)
}

// BenchmarkDashboard is the cost of one dashboard query (what each
// watcher pays per update) and of applying one event, over 20000 orders'
// lifecycles and 5000 danger events.
func BenchmarkDashboard(b *testing.B) {
	start, end := kst(2026, 10, 20, 0, 0), kst(2026, 11, 22, 18, 0)
	msgs, _ := stream(7, 20000, 5000, start, end)
	b.Run("query", func(b *testing.B) {
		m := dashboard.New()
		apply(m, msgs, 0)
		for b.Loop() {
			m.Dashboard(dashboard.Query{Now: end})
		}
	})
	b.Run("apply", func(b *testing.B) {
		m := dashboard.New()
		for b.Loop() {
			m.Reset()
			apply(m, msgs, 0)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(msgs)), "ns/event")
	})
}

// TestIndexFollowsEveryEvent queries a model as events arrive, some out
// of order, and compares each dashboard with that of a model restored
// from its snapshot, whose index and forecasts are computed afresh: what
// Apply keeps up to date (the board, rankings, this month's danger
// ranking, memoised forecasts, the zones' rows) must never drift from
// the state.
func TestIndexFollowsEveryEvent(t *testing.T) {
	start, end := kst(2026, 9, 20, 0, 0), kst(2026, 11, 3, 18, 0)
	msgs, _ := stream(11, 1500, 400, start, end)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range len(msgs) - 40 { // late arrivals, up to 40 events behind
		if rng.IntN(10) == 0 {
			j := i + 1 + rng.IntN(40)
			msgs[i], msgs[j] = msgs[j], msgs[i]
		}
	}
	live := dashboard.New()
	for i := range msgs {
		apply(live, msgs[i:i+1], i)
		if i%37 != 0 && i != len(msgs)-1 {
			continue
		}
		snap, err := live.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		fresh := dashboard.New()
		if err := fresh.Restore(snap); err != nil {
			t.Fatal(err)
		}
		for _, now := range []time.Time{end, kst(2026, 10, 1, 0, 30), kst(2026, 10, 19, 12, 0), kst(2026, 11, 1, 9, 0), end} { // end last and first: its memoised forecast must follow the events between
			q := dashboard.Query{Now: now, RankingLimit: 7, ActiveLimit: 9, TrendLimit: 5}
			if got, want := live.Dashboard(q), fresh.Dashboard(q); !proto.Equal(got, want) {
				t.Fatalf("after event %d, at %v: live dashboard differs from a restored one:\n%s\nrestored:\n%s", i+1, now, prototext.Format(got), prototext.Format(want))
			}
		}
	}
}

// TestQuietZonesShareRows: a zone's row of a dashboard is made once and
// shared by later answers of the same day and next hour until an event
// changes the zone; the answers stay those of a model that never made
// one before (TestIndexFollowsEveryEvent checks the figures through
// every event).
func TestQuietZonesShareRows(t *testing.T) {
	start, end := kst(2026, 11, 1, 0, 0), kst(2026, 11, 3, 18, 0)
	msgs, _ := stream(5, 400, 0, start, end)
	m := dashboard.New()
	apply(m, msgs, 0)
	q := dashboard.Query{Now: end.Add(10 * time.Minute)}
	first, again := m.Dashboard(q), m.Dashboard(q)
	if len(first.Zones) != 8 {
		t.Fatalf("%d zones, want 8", len(first.Zones))
	}
	for i, z := range again.Zones {
		if z != first.Zones[i] {
			t.Errorf("zone %s: a second answer at the same time made its row again", z.Zone)
		}
	}
	// An order in z3: its row is made again, with it; the others' are not.
	apply(m, []proto.Message{placed("late", "z3", 12000, end.Add(5*time.Minute))}, len(msgs))
	after := m.Dashboard(q)
	for i, z := range after.Zones {
		if shared := z == first.Zones[i]; shared != (z.Zone != "z3") {
			t.Errorf("zone %s: row shared with the answer before the order: %v", z.Zone, shared)
		}
	}
	if got, want := zone(after, "z3").Today.Orders, zone(first, "z3").Today.Orders+1; got != want {
		t.Errorf("z3 today: %d orders, want %d", got, want)
	}
	fresh := dashboard.New()
	apply(fresh, append(slices.Clone(msgs), placed("late", "z3", 12000, end.Add(5*time.Minute))), 0)
	if want := fresh.Dashboard(q); !proto.Equal(after, want) {
		t.Fatalf("after the order: differs from a model that never answered before:\n%s\nfresh:\n%s", prototext.Format(after), prototext.Format(want))
	}
	// The next hour: every row is made again.
	q.Now = q.Now.Add(time.Hour)
	later := m.Dashboard(q)
	for i, z := range later.Zones {
		if z == after.Zones[i] {
			t.Errorf("zone %s: row of the hour before reused", z.Zone)
		}
	}
	if want := fresh.Dashboard(q); !proto.Equal(later, want) {
		t.Fatalf("an hour later: differs from a model that never answered before:\n%s\nfresh:\n%s", prototext.Format(later), prototext.Format(want))
	}
}

// TestSharedRowsUnderConcurrentQueries: queries that share rows, encode
// them and run beside Apply (go test -race finds what they race on).
func TestSharedRowsUnderConcurrentQueries(t *testing.T) {
	start, end := kst(2026, 11, 1, 0, 0), kst(2026, 11, 3, 18, 0)
	msgs, _ := stream(9, 600, 50, start, end)
	m := dashboard.New()
	half := len(msgs) / 2
	apply(m, msgs[:half], 0)
	q := dashboard.Query{Now: end}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 30 {
				if _, err := proto.Marshal(m.Dashboard(q)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := half; i < len(msgs); i++ {
		apply(m, msgs[i:i+1], i)
	}
	wg.Wait()
	fresh := dashboard.New()
	apply(fresh, msgs, 0)
	if got, want := m.Dashboard(q), fresh.Dashboard(q); !proto.Equal(got, want) {
		t.Fatalf("differs from a model that never answered:\n%s\nfresh:\n%s", prototext.Format(got), prototext.Format(want))
	}
}
