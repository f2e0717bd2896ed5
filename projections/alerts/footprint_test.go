package alerts_test

import (
	"flag"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/alerts"
	"github.com/tideline/tideline/projections/projtest"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// BenchmarkFootprint reports the model's heap and snapshot per alert, for
// 1,000 riders with 50 severe danger events each, an hour apart: each
// raises an alert, which the reaction's AlertRaisedV2 records. Run it with
// -benchtime 1x.
func BenchmarkFootprint(b *testing.B) {
	const riders, each = 1000, 50
	projtest.Footprint(b, riders*each, func() projections.Projection {
		f := &feeder{m: alerts.New(alerts.DefaultRules())}
		for d := range projtest.DangerEvents(riders, each, t0) {
			f.apply(d)
			for _, a := range f.m.Triggered(d.EventId) {
				f.apply(a)
			}
		}
		return f.m
	})
}

var stallEvents = flag.Int("stall.events", 1_000_000, "events of a city's history BenchmarkSnapshotStall loads")

// BenchmarkSnapshotStall reports the longest an Apply waits for a snapshot
// (projtest.SnapshotStall) with the model holding a city's history of
// -stall.events events (the delivery half of `tideline bench --scale
// 10M` is 5M), as its last 300k stream in; every alert due is raised
// after its danger event, as the reaction does. Run it with -benchtime
// 1x.
func BenchmarkSnapshotStall(b *testing.B) {
	m := alerts.New(alerts.DefaultRules())
	seq := uint64(0)
	apply := func(e es.Event) {
		seq++
		e.Position.Seq = seq
		m.Apply(e)
		if d, ok := e.Data.(*safetyv1.DangerDetected); ok {
			for _, a := range m.Triggered(d.EventId) {
				seq++
				m.Apply(es.Event{Data: a, Position: es.Position{Seq: seq}})
			}
		}
	}
	tail := projtest.CityHistory(*stallEvents, 300_000, t0, apply)
	projtest.SnapshotStall(b, m, tail, 3, apply)
}

// BenchmarkList is the alerts page's query, the newest 50 of every rider's
// alerts, with 1,000 and 100,000 alerts kept (a fifth acknowledged): it
// must not grow with them.
func BenchmarkList(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("alerts=%d", n), func(b *testing.B) {
			m := alerts.New(alerts.DefaultRules())
			for i := range n {
				id := fmt.Sprintf("al%07d", i)
				m.Apply(es.Event{Data: &safetyv1.AlertRaisedV2{AlertId: id, RiderId: fmt.Sprintf("r%04d", i%1000),
					RaisedAt: timestamppb.New(t0.Add(time.Duration(i) * time.Second))}, Position: es.Position{Seq: uint64(2*i + 1)}})
				if i%5 == 0 {
					m.Apply(es.Event{Data: &safetyv1.AlertAcknowledged{AlertId: id, By: "admin:ops"}, Position: es.Position{Seq: uint64(2*i + 2)}})
				}
			}
			for b.Loop() {
				if got, total := m.List("", false, 50); len(got) != 50 || total != n {
					b.Fatalf("%d alerts of %d", len(got), total)
				}
			}
		})
	}
}
