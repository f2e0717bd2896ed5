package safety_test

import (
	"flag"
	"testing"

	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/projtest"
	"github.com/tideline/tideline/projections/safety"
)

// BenchmarkFootprint reports the model's heap and snapshot per danger
// event, for 1,000 riders with 100 events each. Run it with -benchtime 1x.
func BenchmarkFootprint(b *testing.B) {
	const riders, each = 1000, 100
	projtest.Footprint(b, riders*each, func() projections.Projection {
		m := safety.New()
		seq := uint64(0)
		for d := range projtest.DangerEvents(riders, each, t0) {
			seq++
			m.Apply(ev(seq, d))
		}
		return m
	})
}

var stallEvents = flag.Int("stall.events", 1_000_000, "events of a city's history BenchmarkSnapshotStall loads")

// BenchmarkSnapshotStall reports the longest an Apply waits for a snapshot
// (projtest.SnapshotStall) with the model holding a city's history of
// -stall.events events (the delivery half of `tideline bench --scale
// 10M` is 5M), as its last 300k stream in. Run it with -benchtime 1x.
func BenchmarkSnapshotStall(b *testing.B) {
	m := safety.New()
	tail := projtest.CityHistory(*stallEvents, 300_000, t0, m.Apply)
	projtest.SnapshotStall(b, m, tail, 3, nil)
}
