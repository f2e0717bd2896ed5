package alerts_test

import (
	"flag"
	"testing"

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
