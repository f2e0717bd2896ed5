package alerts_test

import (
	"testing"

	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/alerts"
	"github.com/tideline/tideline/projections/projtest"
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
