package nearby_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/nearby"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
)

type point struct{ lat, lng float64 }

func placed(id string, p point) *deliveryv1.OrderPlaced {
	return &deliveryv1.OrderPlaced{OrderId: id, StoreId: "s", Pickup: &deliveryv1.LatLng{Lat: p.lat, Lng: p.lng},
		Dropoff: &deliveryv1.LatLng{Lat: p.lat, Lng: p.lng}, Amount: 1000, Zone: delivery.Zone(p.lat, p.lng)}
}

type feeder struct {
	m   *nearby.Model
	seq uint64
}

func (f *feeder) apply(msg proto.Message) {
	f.seq++
	f.m.Apply(es.Event{Data: msg, Position: es.Position{Seq: f.seq}})
}

// bruteForce is the specification: every open order within radius by
// haversine, nearest first, ties by id.
func bruteForce(open map[string]point, q point, radius float64, limit int) []string {
	type hit struct {
		id string
		d  float64
	}
	var hits []hit
	for id, p := range open {
		if d := delivery.DistanceM(q.lat, q.lng, p.lat, p.lng); d <= radius {
			hits = append(hits, hit{id, d})
		}
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if a.d != b.d {
			if a.d < b.d {
				return -1
			}
			return 1
		}
		if a.id < b.id {
			return -1
		}
		return 1
	})
	var ids []string
	for _, h := range hits[:min(len(hits), limit)] {
		ids = append(ids, h.id)
	}
	return ids
}

func ids(hits []nearby.Hit) []string {
	var out []string
	for _, h := range hits {
		out = append(out, h.Order.OrderId)
	}
	return out
}

// TestNearbyMatchesBruteForce is a property test: over random orders
// (clustered in Seoul, and scattered at the antimeridian and near the
// poles), with some accepted or cancelled, every random query returns
// exactly what a brute-force haversine scan returns.
func TestNearbyMatchesBruteForce(t *testing.T) {
	regions := []struct {
		name                       string
		latLo, latHi, lngLo, lngHi float64
		radiusMax                  float64
	}{
		{"seoul", 37.45, 37.70, 126.80, 127.15, 5000},
		{"antimeridian", -10, 10, 179.9, 180, 20000},
		{"antimeridian_west", -10, 10, -180, -179.9, 20000},
		{"north_pole", 89.9, 90, -180, 180, 30000},
		{"south_pole", -90, -89.95, -180, 180, 30000},
		{"equator_tiny", -0.01, 0.01, -0.01, 0.01, 300},
		{"dense_cluster", 37.560, 37.575, 126.970, 126.990, 2000},
	}
	edges := []point{{90, 0}, {-90, 0}, {0, 180}, {0, -180}, {37.565, 126.975}, {89.999, 180}, {-89.99, -180}}
	for seed := range uint64(5) {
		r := rand.New(rand.NewPCG(seed, 42))
		m := nearby.New()
		f := &feeder{m: m}
		open := map[string]point{}
		rnd := func() point {
			g := regions[r.IntN(len(regions))]
			return point{g.latLo + r.Float64()*(g.latHi-g.latLo), g.lngLo + r.Float64()*(g.lngHi-g.lngLo)}
		}
		for i := range 3000 {
			id := fmt.Sprintf("o%d", i)
			p := rnd()
			f.apply(placed(id, p))
			open[id] = p
			switch r.IntN(6) {
			case 0:
				f.apply(&deliveryv1.OrderAccepted{OrderId: id, RiderId: "r"})
				delete(open, id)
			case 1:
				f.apply(&deliveryv1.OrderCancelled{OrderId: id})
				delete(open, id)
			}
		}
		if m.Len() != len(open) {
			t.Fatalf("seed %d: Len = %d, want %d", seed, m.Len(), len(open))
		}
		for i := range 400 + len(edges) {
			g := regions[r.IntN(len(regions))]
			q := rnd()
			if i >= 400 {
				q, g.radiusMax = edges[i-400], 50000
			}
			radius := r.Float64() * g.radiusMax
			limit := 1 + r.IntN(120)
			want := bruteForce(open, q, radius, limit)
			hits := m.Nearby(q.lat, q.lng, radius, limit)
			if got := ids(hits); !slices.Equal(got, want) {
				t.Fatalf("seed %d: Nearby(%v, %v, %.0f m, %d) = %v, want %v", seed, q.lat, q.lng, radius, limit, got, want)
			}
			for _, h := range hits {
				p := open[h.Order.OrderId]
				if h.DistanceM != delivery.DistanceM(q.lat, q.lng, p.lat, p.lng) {
					t.Fatalf("distance of %s = %v", h.Order.OrderId, h.DistanceM)
				}
			}
		}
	}
}

func TestOpenUntilAcceptedOrCancelled(t *testing.T) {
	m := nearby.New()
	f := &feeder{m: m}
	here := point{37.5663, 126.9779}
	f.apply(placed("a", here))
	f.apply(placed("b", point{here.lat + 0.001, here.lng}))
	f.apply(placed("far", point{here.lat + 0.1, here.lng}))
	if got := ids(m.Nearby(here.lat, here.lng, 1000, 20)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("open nearby = %v", got)
	}
	f.apply(&deliveryv1.OrderAccepted{OrderId: "a", RiderId: "kim"})
	f.apply(&deliveryv1.OrderCancelled{OrderId: "b"})
	f.apply(&deliveryv1.OrderPickedUp{OrderId: "a"}) // not read, but advances the position
	if got := m.Nearby(here.lat, here.lng, 1000, 20); len(got) != 0 {
		t.Fatalf("after accept and cancel = %v", ids(got))
	}
	if m.Position() != 6 || m.Len() != 1 {
		t.Fatalf("position %d len %d", m.Position(), m.Len())
	}
}

func TestSnapshotRoundTrips(t *testing.T) {
	m := nearby.New()
	f := &feeder{m: m}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		f.apply(placed(fmt.Sprintf("o%d", i), point{37.45 + r.Float64()*0.25, 126.8 + r.Float64()*0.35}))
		if i%3 == 0 {
			f.apply(&deliveryv1.OrderAccepted{OrderId: fmt.Sprintf("o%d", i)})
		}
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	n := nearby.New()
	if err := n.Restore(snap); err != nil {
		t.Fatal(err)
	}
	again, _ := n.Snapshot()
	if !bytes.Equal(snap, again) || n.Position() != m.Position() || n.Len() != m.Len() {
		t.Fatal("restored model differs")
	}
	if a, b := ids(m.Nearby(37.55, 126.95, 3000, 100)), ids(n.Nearby(37.55, 126.95, 3000, 100)); !slices.Equal(a, b) || len(a) == 0 {
		t.Fatalf("queries differ: %v vs %v", a, b)
	}
	if err := n.Restore(snap[:len(snap)-3]); err == nil || n.Len() != m.Len() {
		t.Fatalf("truncated snapshot: err %v, len %d", err, n.Len())
	}
	n.Reset()
	if n.Len() != 0 || n.Position() != 0 {
		t.Fatal("reset left state")
	}
}

// BenchmarkNearby queries 100k open orders spread uniformly over Seoul
// (lat 37.45–37.70, lng 126.80–127.15) within the default 1000 m, limit 20.
func BenchmarkNearby(b *testing.B) {
	m := nearby.New()
	f := &feeder{m: m}
	r := rand.New(rand.NewPCG(7, 7))
	seoul := func() point { return point{37.45 + r.Float64()*0.25, 126.80 + r.Float64()*0.35} }
	for i := range 100_000 {
		f.apply(placed(fmt.Sprintf("o%d", i), seoul()))
	}
	queries := make([]point, 1024)
	for i := range queries {
		queries[i] = seoul()
	}
	for _, radius := range []float64{1000, 5000} {
		b.Run(fmt.Sprintf("radius=%.0fm", radius), func(b *testing.B) {
			found := 0
			i := 0
			for b.Loop() {
				q := queries[i%len(queries)]
				found += len(m.Nearby(q.lat, q.lng, radius, 20))
				i++
			}
			b.ReportMetric(float64(found)/float64(i), "hits/op")
		})
	}
	_ = math.Pi
}
