package city_test

import (
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/steps"
	"github.com/tideline/tideline/projections/nearby"
	"github.com/tideline/tideline/projections/projtest/city"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// Mixed yields exactly n commits, half of them step counts spread over
// Days dates ending today, each walker once per date when they divide.
func TestMixed(t *testing.T) {
	now := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	const n, walkers, days = 6001, 100, 30 // 3,001 counts: one walker twice
	total, stepCount := 0, 0
	dates := map[string]int{}
	seen := map[string]int{}
	for c := range city.Mixed(n, city.Mix{Walkers: walkers, Days: days, DeliveryStart: now.AddDate(0, 0, -5)}, now) {
		total++
		if c.Stream.ID == "" || c.Event == nil {
			t.Fatalf("commit %d: %+v, want a stream and an event", total, c)
		}
		if s, ok := c.Event.(*stepsv1.StepsRecorded); ok {
			stepCount++
			dates[s.Date]++
			seen[s.UserId+"/"+s.Date]++
			if s.Steps < 0 || s.Steps > steps.MaxSteps {
				t.Fatalf("count %d, want 0 to %d (the API's bound)", s.Steps, steps.MaxSteps)
			}
		}
	}
	if total != n || stepCount != n-n/2 {
		t.Fatalf("%d commits, %d step counts; want %d and %d", total, stepCount, n, n-n/2)
	}
	if twice := stepCount - len(seen); twice != 1 {
		t.Errorf("%d walker-dates counted twice, want 1 (3,001 counts for 3,000 walker-dates)", twice)
	}
	if len(dates) != days || dates["2026-12-02"] == 0 || dates["2026-11-03"] == 0 {
		t.Errorf("dates %v, want %d ending 2026-12-02", dates, days)
	}
}

// Append stores each aggregate's events in the order given, however many
// writers take them: no order is accepted before it was placed.
func TestAppendKeepsEachStreamInOrder(t *testing.T) {
	_, nc := natstest.Start(t)
	store, err := jetstream.Open(t.Context(), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var orders []es.StreamID
	seen := map[es.StreamID]bool{}
	for c := range city.Mixed(4000, city.Mix{Walkers: 50, Days: 3, DeliveryStart: now.Add(-72 * time.Hour)}, now) {
		if c.Stream.Context == "delivery" && !seen[c.Stream] {
			seen[c.Stream] = true
			orders = append(orders, c.Stream)
		}
	}
	if err := city.Append(t.Context(), store, city.Mixed(4000, city.Mix{Walkers: 50, Days: 3, DeliveryStart: now.Add(-72 * time.Hour)}, now), 64, nil); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, o := range orders {
		commits, _, err := store.Load(t.Context(), o, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(commits) == 0 {
			t.Fatalf("%s: no commits stored", o)
		}
		if _, ok := commits[0].Events[0].Data.(*deliveryv1.OrderPlaced); !ok {
			t.Fatalf("%s: first event %T, want OrderPlaced", o, commits[0].Events[0].Data)
		}
		checked++
	}
	if checked < 300 {
		t.Fatalf("%d orders checked, want hundreds", checked)
	}
}

// Waiting's orders are each placed once, inside the city's area, and
// spread so that a search of 3 km around a point near its middle finds
// more than the 20 an answer holds by default, wherever it asks.
func TestWaiting(t *testing.T) {
	at := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	idx := nearby.New()
	ids := map[string]bool{}
	seq := uint64(0)
	for c := range city.Waiting(1000, at) {
		e, ok := c.Event.(*deliveryv1.OrderPlaced)
		if !ok {
			t.Fatalf("event %T, want OrderPlaced", c.Event)
		}
		if c.Stream != delivery.Stream(e.OrderId) || ids[e.OrderId] {
			t.Fatalf("order %s on %v: want its own stream, once", e.OrderId, c.Stream)
		}
		ids[e.OrderId] = true
		p := e.Pickup
		if p.Lat < 37.48 || p.Lat > 37.66 || p.Lng < 126.9 || p.Lng > 127.1 || !e.PlacedAt.AsTime().Equal(at) {
			t.Fatalf("order %s: pickup %v at %v, want within the city at %v", e.OrderId, p, e.PlacedAt.AsTime(), at)
		}
		if err := delivery.ValidateLatLng("pickup", delivery.LatLng{Lat: p.Lat, Lng: p.Lng}); err != nil {
			t.Fatal(err)
		}
		seq++
		idx.Apply(es.Event{Data: e, Position: es.Position{Seq: seq}})
	}
	if len(ids) != 1000 {
		t.Fatalf("%d orders, want 1000", len(ids))
	}
	// Around the scale bench's point (37.55, 126.99) and at the corners
	// of a square of about 9 km about the middle.
	for _, q := range [][2]float64{{37.55, 126.99}, {37.53, 126.95}, {37.61, 127.05}, {37.53, 127.05}, {37.61, 126.95}} {
		within := len(idx.Nearby(q[0], q[1], 3000, 1000))
		if within < 50 || within > 130 {
			t.Errorf("%v: %d orders within 3 km, want about 80 (8 %% of 1,000)", q, within)
		}
	}
}
