package sim_test

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge/sim"
)

func TestUnknownScenarioNamesTheValidOnes(t *testing.T) {
	_, err := sim.Scenario("wheelie", 1)
	if err == nil {
		t.Fatal("no error for an unknown scenario")
	}
	for _, n := range sim.Names() {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %q", err, n)
		}
	}
}

func TestSameSeedSameTrace(t *testing.T) {
	a, _ := sim.Scenario("mixed", 7)
	b, _ := sim.Scenario("mixed", 7)
	c, _ := sim.Scenario("mixed", 8)
	if !slices.EqualFunc(a.Samples, b.Samples, sameSample) || !slices.Equal(a.Truth, b.Truth) {
		t.Error("one seed gave two traces")
	}
	if len(a.Samples) == len(c.Samples) && slices.EqualFunc(a.Samples, c.Samples, sameSample) {
		t.Error("two seeds gave one trace")
	}
}

func sameSample(x, y safety.Sample) bool {
	return x.T.Equal(y.T) && x.Accel == y.Accel && x.Gyro == y.Gyro && x.Seq == y.Seq && (x.Loc == nil) == (y.Loc == nil)
}

// TestTraces checks every scenario's timing, sensor ranges, gravity and
// ground truth.
func TestTraces(t *testing.T) {
	cases := []struct {
		name      string
		incidents map[string]int // label → count
		windows   map[string]int // non-incident label → at least
		minLength time.Duration
	}{
		{"ride", nil, map[string]int{"corner": 3}, 2 * time.Minute},
		{"crash", map[string]int{"crash": 1}, nil, 20 * time.Second},
		{"fall", map[string]int{"fall": 1}, nil, 20 * time.Second},
		{"tipover", map[string]int{"tipover": 1}, nil, 20 * time.Second},
		{"hard-brake", map[string]int{"hard-brake": 1}, nil, 20 * time.Second},
		{"pothole", nil, map[string]int{"pothole": 12}, 30 * time.Second},
		{"phone-drop", nil, map[string]int{"phone-drop": 1}, 20 * time.Second},
		{"mixed", map[string]int{"crash": 2, "fall": 1, "tipover": 1, "hard-brake": 3},
			map[string]int{"phone-drop": 1, "corner": 5}, 10 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for seed := int64(1); seed <= 3; seed++ {
				tr, err := sim.Scenario(c.name, seed)
				if err != nil {
					t.Fatal(err)
				}
				end := sim.Start.Add(time.Duration(len(tr.Samples)) * sim.Period)
				if d := end.Sub(sim.Start); d < c.minLength {
					t.Errorf("seed %d: %v long, want at least %v", seed, d, c.minLength)
				}
				var sumA float64
				for i, s := range tr.Samples {
					if !s.T.Equal(sim.Start.Add(time.Duration(i)*sim.Period)) || s.Seq != uint32(i) {
						t.Fatalf("seed %d: sample %d at %v seq %d: not 100 Hz from Start", seed, i, s.T, s.Seq)
					}
					for k := range 3 {
						if math.Abs(s.Accel[k]) > 16 || math.Abs(s.Gyro[k]) > 2000 {
							t.Fatalf("seed %d: sample %d beyond the sensor's range: %v %v", seed, i, s.Accel, s.Gyro)
						}
					}
					sumA += norm(s.Accel)
				}
				if m := sumA / float64(len(tr.Samples)); m < 0.95 || m > 1.1 {
					t.Errorf("seed %d: mean |a| %.3f g, want about 1 g", seed, m)
				}
				got := map[string]int{}
				for _, x := range tr.Truth {
					got[x.Label]++
					if x.Start.Before(sim.Start) || x.End.After(end) || x.End.Before(x.Start) {
						t.Errorf("seed %d: %s window %v..%v outside the trace", seed, x.Label, x.Start, x.End)
					}
					if x.Kind != 0 && (x.Decide.Before(x.Start) || x.Decide.After(x.End)) {
						t.Errorf("seed %d: %s decidable at %v, outside its window", seed, x.Label, x.Decide)
					}
				}
				for l, n := range c.incidents {
					if got[l] != n {
						t.Errorf("seed %d: %d %s incidents, want %d", seed, got[l], l, n)
					}
				}
				for l, n := range c.windows {
					if got[l] < n {
						t.Errorf("seed %d: %d %s windows, want at least %d", seed, got[l], l, n)
					}
				}
			}
		})
	}
}

// TestPhysics checks the signatures the detector's discriminators rest
// on, in the samples themselves (noise included).
func TestPhysics(t *testing.T) {
	cases := []struct {
		name     string
		scenario string
		label    string // the episodes checked, "" for the whole trace
		check    func(t *testing.T, w []safety.Sample)
	}{
		{"riding_never_turns_at_180dps", "ride", "", func(t *testing.T, w []safety.Sample) {
			if g := maxOf(w, gyro); g >= 180 {
				t.Errorf("riding turned at %.0f°/s", g)
			}
		}},
		{"potholes_never_turn_at_180dps", "pothole", "", func(t *testing.T, w []safety.Sample) {
			if g := maxOf(w, gyro); g >= 180 {
				t.Errorf("riding over potholes turned at %.0f°/s", g)
			}
		}},
		{"corners_stay_under_180dps", "ride", "corner", func(t *testing.T, w []safety.Sample) {
			if g := maxOf(w, gyro); g >= 180 {
				t.Errorf("a corner turned at %.0f°/s", g)
			}
		}},
		{"potholes_spike_under_3g_briefly", "pothole", "pothole", func(t *testing.T, w []safety.Sample) {
			if a := maxOf(w, accel); a >= 3 || a < 1.3 {
				t.Errorf("pothole peak %.2f g", a)
			}
			if r := run(w, func(s safety.Sample) bool { return accel(s) > 1.6 }); r > 60*time.Millisecond {
				t.Errorf("pothole spike lasted %v", r)
			}
		}},
		{"a_dropped_phone_falls_freely_and_strikes_in_under_20ms", "phone-drop", "phone-drop", func(t *testing.T, w []safety.Sample) {
			if r := run(w, func(s safety.Sample) bool { return accel(s) < 0.4 }); r < 250*time.Millisecond {
				t.Errorf("free fall of %v", r)
			}
			if a := maxOf(w, accel); a < 3 {
				t.Errorf("strike peak %.2f g", a)
			}
			if r := run(w, func(s safety.Sample) bool { return accel(s) >= 2 }); r >= 20*time.Millisecond {
				t.Errorf("a strike above 2 g spanned %v", r)
			}
			if g := maxOf(w, gyro); g < 300 {
				t.Errorf("tumbling at only %.0f°/s", g)
			}
		}},
		{"a_fall_is_weightless_then_lands_like_a_body", "fall", "fall", func(t *testing.T, w []safety.Sample) {
			if r := run(w, func(s safety.Sample) bool { return accel(s) < 0.4 }); r < 250*time.Millisecond {
				t.Errorf("free fall of %v", r)
			}
			if r := run(w, func(s safety.Sample) bool { return accel(s) >= 2 }); r < 20*time.Millisecond {
				t.Errorf("landing above 2 g spanned only %v", r)
			}
		}},
		{"a_crash_strikes_without_free_fall", "crash", "crash", func(t *testing.T, w []safety.Sample) {
			if r := run(w, func(s safety.Sample) bool { return accel(s) < 0.4 }); r > 0 {
				t.Errorf("weightless for %v", r)
			}
			if a := maxOf(w, accel); a < 3.5 {
				t.Errorf("impact peak %.2f g", a)
			}
		}},
		{"a_tipover_ends_lying_over_65_degrees", "tipover", "tipover", func(t *testing.T, w []safety.Sample) {
			last := w[len(w)-1].Accel // lying, still
			if tilt := math.Acos(last[2]/norm(last)) * 180 / math.Pi; tilt < 50 {
				t.Errorf("lying at only %.0f° from the device's z", tilt)
			}
			if g := maxOf(w, gyro); g >= 180 {
				t.Errorf("went over at %.0f°/s", g)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for seed := int64(1); seed <= 10; seed++ {
				tr, _ := sim.Scenario(c.scenario, seed)
				if c.label == "" { // the whole trace
					c.check(t, tr.Samples)
					continue
				}
				for _, x := range tr.Truth {
					if x.Label == c.label {
						c.check(t, window(tr, x))
					}
				}
			}
		})
	}
}

func window(tr sim.Trace, x sim.Truth) []safety.Sample {
	i := int(x.Start.Sub(sim.Start) / sim.Period)
	j := int(x.End.Sub(sim.Start) / sim.Period)
	return tr.Samples[i:min(j, len(tr.Samples))]
}

func norm(v [3]float64) float64     { return math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2]) }
func accel(s safety.Sample) float64 { return norm(s.Accel) }
func gyro(s safety.Sample) float64  { return norm(s.Gyro) }

func maxOf(w []safety.Sample, f func(safety.Sample) float64) float64 {
	m := 0.0
	for _, s := range w {
		m = max(m, f(s))
	}
	return m
}

// run is the longest span of consecutive samples satisfying ok, from the
// first to the last sample's timestamp.
func run(w []safety.Sample, ok func(safety.Sample) bool) time.Duration {
	var best time.Duration
	start := -1
	for i, s := range w {
		switch {
		case ok(s) && start < 0:
			start = i
		case !ok(s):
			start = -1
		}
		if start >= 0 {
			best = max(best, s.T.Sub(w[start].T))
		}
	}
	return best
}
