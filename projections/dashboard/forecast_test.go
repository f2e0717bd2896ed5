package dashboard_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/projections/dashboard"
)

// demand is the synthetic orders per hour of a zone: a daily shape with
// lunch and dinner peaks, busier Friday and Saturday evenings and a slow
// Monday, scaled per zone.
func demand(scale float64, t time.Time) float64 {
	t = t.In(dashboard.Zone)
	daily := []float64{ // 00..23 KST
		1.5, 1, 0.5, 0.3, 0.2, 0.2, 0.5, 1, 2, 3, 5, 9,
		11, 8, 4, 3, 4, 8, 12, 12, 9, 6, 4, 2.5,
	}
	f := 1.0
	switch wd, h := t.Weekday(), t.Hour(); {
	case (wd == time.Friday || wd == time.Saturday) && h >= 17:
		f = 1.5
	case wd == time.Sunday && h >= 11 && h <= 14:
		f = 1.3
	case wd == time.Monday:
		f = 0.8
	}
	return scale * daily[t.Hour()] * f
}

// poisson draws from a Poisson distribution (Knuth; fine for small means).
func poisson(rng *rand.Rand, mean float64) int {
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// TestForecastBeatsNaiveOnHeldOutWeek generates six weeks of hourly
// orders in three zones (a weekly pattern with Poisson noise, fixed
// seed), feeds the first five weeks to the model and forecasts every hour
// of the sixth. The forecast must have a lower mean absolute error than
// the naive "same as the last hour" and the seasonal naive "same as this
// hour last week".
func TestForecastBeatsNaiveOnHeldOutWeek(t *testing.T) {
	const weeks = 6
	start := kst(2026, 10, 5, 0, 0) // a Monday
	holdout := start.AddDate(0, 0, 7*(weeks-1))
	names := []string{"gangnam", "mapo", "jongno"}
	zones := map[string]float64{"gangnam": 1.6, "mapo": 1.0, "jongno": 0.5}
	rng := rand.New(rand.NewPCG(42, 2026))

	hours := 7 * 24 * weeks
	actual := map[string][]int{}
	var training []proto.Message
	for _, z := range names { // fixed order: a fixed draw
		actual[z] = make([]int, hours)
		for h := range hours {
			at := start.Add(time.Duration(h) * time.Hour)
			n := poisson(rng, demand(zones[z], at))
			actual[z][h] = n
			if at.Before(holdout) {
				for i := range n {
					training = append(training, placed(fmt.Sprintf("%s-%d-%d", z, h, i), z, 10000, at.Add(time.Duration(rng.IntN(3600))*time.Second)))
				}
			}
		}
	}
	m := build(training, start)

	type errs struct {
		abs, pct   float64
		n, nonzero int
	}
	add := func(e *errs, forecast float64, actual int) {
		d := math.Abs(forecast - float64(actual))
		e.abs += d
		e.n++
		if actual > 0 {
			e.pct += d / float64(actual)
			e.nonzero++
		}
	}
	methods := []string{"naive (last hour)", "seasonal naive (last week)", fmt.Sprintf("smoothed by hour of week, alpha %.1f", dashboard.Alpha), "true mean (the noise floor)"}
	total := make([]errs, len(methods))
	first := 7 * 24 * (weeks - 1)
	for _, z := range names {
		counts := actual[z]
		zone := make([]errs, len(methods))
		for h := first; h < hours; h++ {
			at := start.Add(time.Duration(h) * time.Hour)
			forecasts := []float64{float64(counts[h-1]), float64(counts[h-7*24]), m.Forecast(z, at), demand(zones[z], at)}
			for i, f := range forecasts {
				add(&zone[i], f, counts[h])
				add(&total[i], f, counts[h])
			}
		}
		for i := range methods {
			t.Logf("%-8s %-40s MAE %5.2f  MAPE %5.1f%%", z, methods[i], zone[i].abs/float64(zone[i].n), 100*zone[i].pct/float64(zone[i].nonzero))
		}
	}
	mae := func(e errs) float64 { return e.abs / float64(e.n) }
	for i := range methods {
		t.Logf("%-8s %-40s MAE %5.2f  MAPE %5.1f%%  (%d hours, MAPE over the %d with orders)", "all", methods[i], mae(total[i]), 100*total[i].pct/float64(total[i].nonzero), total[i].n, total[i].nonzero)
	}
	if mae(total[2]) >= mae(total[0]) {
		t.Errorf("forecast MAE %.2f does not beat the naive last hour's %.2f", mae(total[2]), mae(total[0]))
	}
	if mae(total[2]) >= mae(total[1]) {
		t.Errorf("forecast MAE %.2f does not beat the seasonal naive %.2f", mae(total[2]), mae(total[1]))
	}
}
