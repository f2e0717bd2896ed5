package safety_test

import (
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
