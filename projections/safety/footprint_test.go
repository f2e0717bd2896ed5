package safety_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/projtest"
	"github.com/tideline/tideline/projections/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// BenchmarkFootprint reports the model's heap and snapshot per danger
// event, for 1,000 riders with 100 events each. Run it with -benchtime 1x.
func BenchmarkFootprint(b *testing.B) {
	const riders, each = 1000, 100
	projtest.Footprint(b, riders*each, func() projections.Projection {
		m := safety.New()
		seq := uint64(0)
		for i := range each {
			for r := range riders {
				seq++
				d := danger(fmt.Sprintf("01JD%022d", seq), fmt.Sprintf("rider-%04d", r), time.Duration(i)*time.Hour, safetyv1.Severity_SEVERITY_MEDIUM)
				d.DeviceId, d.PeakGyroDps, d.DurationMs = fmt.Sprintf("bike-%04d", r), 210, 1800
				d.Location = &safetyv1.Location{Lat: 37.5, Lng: 127.0}
				m.Apply(ev(seq, d))
			}
		}
		return m
	})
}
