package dashboard_test

import (
	"flag"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/dashboard"
	"github.com/tideline/tideline/projections/projtest"
)

// BenchmarkFootprint reports the dashboard's heap and snapshot per entity
// that makes it grow: a zone-hour with orders (100 zones × 24 hours × 30
// days, 2 orders each placed, accepted, picked up, delivered and rated,
// by 500 riders), and a danger event (100k, by 1,000 riders over 100
// hours).
// Run it with -benchtime 1x.
func BenchmarkFootprint(b *testing.B) {
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, dashboard.Zone)
	apply := func(m *dashboard.Model, seq *uint64, msg proto.Message) {
		*seq++
		m.Apply(es.Event{Data: msg, OccurredAt: start, Position: es.Position{Seq: *seq}})
	}
	b.Run("zone-hours=72k", func(b *testing.B) {
		const zones, hours, perHour = 100, 24 * 30, 2
		projtest.Footprint(b, zones*hours, func() projections.Projection {
			m := dashboard.New()
			seq := uint64(0)
			for h := range hours {
				for z := range zones {
					for k := range perHour {
						id, rider := fmt.Sprintf("order-%d-%d-%d", h, z, k), fmt.Sprintf("rider-%03d", (h+z+k)%500)
						at := start.Add(time.Duration(h)*time.Hour + time.Duration(k)*time.Minute)
						apply(m, &seq, placed(id, fmt.Sprintf("wydm%02d", z), 15000, at))
						apply(m, &seq, accepted(id, rider, at.Add(time.Minute)))
						apply(m, &seq, pickedUp(id, rider, at.Add(5*time.Minute)))
						apply(m, &seq, delivered(id, rider, at.Add(20*time.Minute)))
						apply(m, &seq, rated(id, rider, 5))
					}
				}
			}
			return m
		})
	})
	b.Run("danger-events=100k", func(b *testing.B) {
		const riders, each = 1000, 100
		projtest.Footprint(b, riders*each, func() projections.Projection {
			m := dashboard.New()
			seq := uint64(0)
			for d := range projtest.DangerEvents(riders, each, start) {
				apply(m, &seq, d)
			}
			return m
		})
	})
}

var stallEvents = flag.Int("stall.events", 1_000_000, "events of a city's history BenchmarkSnapshotStall loads")

// BenchmarkSnapshotStall reports the longest an Apply waits for a snapshot
// (projtest.SnapshotStall) with the model holding a city's history of
// -stall.events events (the delivery half of `tideline bench --scale
// 10M` is 5M), as its last 300k stream in. Run it with -benchtime 1x.
func BenchmarkSnapshotStall(b *testing.B) {
	m := dashboard.New()
	tail := projtest.CityHistory(*stallEvents, 300_000, time.Date(2026, 3, 1, 0, 0, 0, 0, dashboard.Zone), m.Apply)
	projtest.SnapshotStall(b, m, tail, 3, nil)
}
