package alerts_test

import (
	"fmt"
	"testing"

	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/alerts"
	"github.com/tideline/tideline/projections/projtest"
)

// BenchmarkFootprint reports the model's heap and snapshot per alert, for
// 1,000 riders with 50 severe danger events each, hours apart: each
// raises an alert, which the reaction's AlertRaised records. Run it with
// -benchtime 1x.
func BenchmarkFootprint(b *testing.B) {
	const riders, each = 1000, 50
	projtest.Footprint(b, riders*each, func() projections.Projection {
		f := &feeder{m: alerts.New(alerts.DefaultRules())}
		for i := range each {
			for r := range riders {
				f.danger(danger{rider: fmt.Sprintf("rider-%04d", r), id: fmt.Sprintf("01JD%022d", i*riders+r), min: float64(60 * i), sev: high})
			}
		}
		return f.m
	})
}
