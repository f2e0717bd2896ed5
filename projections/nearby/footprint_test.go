package nearby_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/nearby"
	"github.com/tideline/tideline/projections/projtest"
)

// BenchmarkFootprint reports the index's heap and snapshot per open order,
// for 100k open orders over Seoul. Run it with -benchtime 1x.
func BenchmarkFootprint(b *testing.B) {
	const orders = 100_000
	projtest.Footprint(b, orders, func() projections.Projection {
		f := &feeder{m: nearby.New()}
		r := rand.New(rand.NewPCG(8, 8))
		at := timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		for i := range orders {
			o := placed(fmt.Sprintf("order-%08d", i), point{37.45 + r.Float64()*0.25, 126.80 + r.Float64()*0.35})
			o.StoreId, o.PlacedAt = fmt.Sprintf("store-%04d", i%1000), at
			f.apply(o)
		}
		return f.m
	})
}
