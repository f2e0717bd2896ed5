package dashboard_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/dashboard"
	"github.com/tideline/tideline/projections/projtest"
	"github.com/tideline/tideline/projections/projtest/city"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// history builds a model of n events of city.Delivery and
// returns it with the time of its last event.
func history(tb testing.TB, n int) (*dashboard.Model, time.Time) {
	tb.Helper()
	var end time.Time
	m := dashboard.New()
	seq := uint64(0)
	for msg := range city.Delivery(n, time.Date(2026, 3, 1, 0, 0, 0, 0, dashboard.Zone), &end) {
		seq++
		m.Apply(es.Event{Type: string(msg.ProtoReflect().Descriptor().FullName()), Data: msg, Position: es.Position{Seq: seq}})
	}
	return m, end
}

// BenchmarkDashboardHistory is one default dashboard query (GetDashboard,
// or one watcher's update before sharing) over a short and a long
// history of the same city at the same pace: its cost must not grow with
// the history. Compare the two in one run:
//
//	go test ./projections/dashboard -run '^$' -bench DashboardHistory -benchtime 2s
func BenchmarkDashboardHistory(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%s", count(n)), func(b *testing.B) {
			m, end := history(b, n)
			var size int
			for b.Loop() {
				size = proto.Size(m.Dashboard(dashboard.Query{Now: end}))
			}
			b.ReportMetric(float64(size), "response-B")
		})
	}
}

func count(n int) string {
	switch {
	case n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// BenchmarkDashboardReplay is the cost per event of building the model
// from a short and a long history of the same city (a start without
// snapshots): it must not grow with the history. The 5M events are the
// delivery half of `tideline bench --scale 10M`.
//
//	go test ./projections/dashboard -run '^$' -bench DashboardReplay -benchtime 1x
func BenchmarkDashboardReplay(b *testing.B) {
	for _, n := range []int{100_000, 5_000_000} {
		b.Run(fmt.Sprintf("events=%s", count(n)), func(b *testing.B) {
			for b.Loop() {
				history(b, n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
		})
	}
}

// The segmented snapshot restores the model, an Apply during an Encode
// changes nothing it reads (orders, ratings, days, hours and danger
// events of months already captured), and events of the newest month
// re-encode only it and the live segment.
func TestSegments(t *testing.T) {
	var end time.Time
	var evs []es.Event
	seq := uint64(0)
	// 60k events are about 8 days: from March 28, two months.
	for msg := range city.Delivery(60_000, time.Date(2026, 3, 28, 0, 0, 0, 0, dashboard.Zone), &end) {
		seq++
		evs = append(evs, es.Event{Type: string(msg.ProtoReflect().Descriptor().FullName()), Data: msg, Position: es.Position{Seq: seq}})
	}
	// next: late reports of earlier days and months, among the rest.
	next := slices.Clone(evs[50_000:])
	for i := range 200 {
		seq++
		next = append(next, es.Event{Data: &safetyv1.DangerDetected{EventId: fmt.Sprintf("late%03d", i), RiderId: "r00001",
			DetectedAt: timestamppb.New(time.Date(2026, 3, 28+i%8, 12, 0, 0, 0, dashboard.Zone)),
			Location:   &safetyv1.Location{Lat: 37.5, Lng: 127}}, Position: es.Position{Seq: seq}})
	}
	later := []es.Event{
		{Data: &deliveryv1.OrderPlaced{OrderId: "late-order", Zone: "z01", Amount: 9000, PlacedAt: timestamppb.New(end)}, Position: es.Position{Seq: seq + 1}},
		{Data: &deliveryv1.OrderRated{OrderId: "o0000001", RiderId: "r00001", Stars: 4}, Position: es.Position{Seq: seq + 2}},
	}
	projtest.Segments(t, func() projtest.SegmentedModel { return dashboard.New() }, evs[:50_000], next, later)
}
