package safety_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge/sim"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// latencyBound is how far a detection may be from the ideal deciding
// moment of the noise-free signal (Truth.Decide). An impact is decided on
// the samples themselves (the 20 ms of ImpactMinWidth). A tipover or a
// hard brake is decided on a low-passed signal (20 ms of lag) measured
// against the detector's own references: a tipover's ideal moment uses the
// true upright, the detector its calibrated one, a degree or two apart,
// which at a topple's 50–90°/s is up to 40 ms; a brake's deceleration
// carries the gravity estimate's few hundredths of a g, which on a
// 3–9 g/s ramp moves the crossing by up to ~20 ms, and vibration noise
// moves it too. (The alarm's own latency is another matter: Push returns
// the detection on the deciding sample.)
func latencyBound(k safety.Kind) time.Duration {
	if k == safety.Tipover || k == safety.HardBrake {
		return 100 * time.Millisecond
	}
	return 50 * time.Millisecond
}

var kinds = []safety.Kind{safety.Crash, safety.Fall, safety.Tipover, safety.HardBrake}

// tally accumulates the outcome of many traces.
type tally struct {
	incidents, hits  map[safety.Kind]int
	falseAlarms      map[safety.Kind]int // detections matching no incident of their kind
	negatives        map[safety.Kind]int // truth windows not of the kind
	negativeAlarms   map[safety.Kind]int // ... holding a detection of the kind
	windows, alarmed map[string]int      // non-incident windows by label
	maxLatency       map[safety.Kind]time.Duration
	minLatency       map[safety.Kind]time.Duration
	critical, upOK   int // crash/fall hits, and those whose CRITICAL upgrade matched the truth
	problems         []string
}

func newTally() *tally {
	return &tally{
		incidents: map[safety.Kind]int{}, hits: map[safety.Kind]int{},
		falseAlarms: map[safety.Kind]int{}, negatives: map[safety.Kind]int{}, negativeAlarms: map[safety.Kind]int{},
		windows: map[string]int{}, alarmed: map[string]int{},
		maxLatency: map[safety.Kind]time.Duration{}, minLatency: map[safety.Kind]time.Duration{},
	}
}

func detect(tr sim.Trace) []safety.Detection {
	d := safety.NewDetector(safety.BikeConfig())
	var out []safety.Detection
	for _, s := range tr.Samples {
		if det, ok := d.Push(s); ok {
			out = append(out, det)
		}
	}
	return out
}

func within(at time.Time, tr sim.Truth) bool { return !at.Before(tr.Start) && !at.After(tr.End) }

func (ty *tally) add(tr sim.Trace, dets []safety.Detection) {
	where := func(at time.Time) string {
		return fmt.Sprintf("%s/%d at %.2fs", tr.Name, tr.Seed, at.Sub(sim.Start).Seconds())
	}
	var firsts []safety.Detection
	upgrades := map[string]bool{}
	for _, d := range dets {
		if d.Severity == safetyv1.Severity_SEVERITY_CRITICAL {
			upgrades[d.EventID] = true
			continue
		}
		firsts = append(firsts, d)
	}
	matched := make([]bool, len(firsts))
	for _, truth := range tr.Truth {
		for _, k := range kinds {
			if truth.Kind == k {
				continue
			}
			ty.negatives[k]++
			for _, d := range firsts {
				if d.Kind == k && within(d.At, truth) {
					ty.negativeAlarms[k]++
					break
				}
			}
		}
		if truth.Kind == 0 {
			ty.windows[truth.Label]++
			for _, d := range firsts {
				if within(d.At, truth) {
					ty.alarmed[truth.Label]++
					ty.problems = append(ty.problems, fmt.Sprintf("%s: %s alarmed %s", where(d.At), truth.Label, d.Kind))
					break
				}
			}
			continue
		}
		ty.incidents[truth.Kind]++
		hit := -1
		for i, d := range firsts {
			if d.Kind == truth.Kind && within(d.At, truth) {
				hit = i
				break
			}
		}
		if hit < 0 {
			ty.problems = append(ty.problems, fmt.Sprintf("%s: missed %s", where(truth.Start), truth.Label))
			continue
		}
		matched[hit] = true
		ty.hits[truth.Kind]++
		d := firsts[hit]
		lat := d.At.Sub(truth.Decide)
		if _, ok := ty.minLatency[truth.Kind]; !ok || lat < ty.minLatency[truth.Kind] {
			ty.minLatency[truth.Kind] = lat
		}
		ty.maxLatency[truth.Kind] = max(ty.maxLatency[truth.Kind], lat)
		if b := latencyBound(truth.Kind); lat < -b || lat > b {
			ty.problems = append(ty.problems, fmt.Sprintf("%s: %s decided %v from the ideal moment", where(d.At), truth.Label, lat))
		}
		if truth.Kind == safety.Crash || truth.Kind == safety.Fall {
			ty.critical++
			if upgrades[d.EventID] == truth.Critical {
				ty.upOK++
			} else {
				ty.problems = append(ty.problems, fmt.Sprintf("%s: %s critical upgrade %v, rider still %v", where(d.At), truth.Label, upgrades[d.EventID], truth.Critical))
			}
		}
	}
	for i, d := range firsts {
		if !matched[i] {
			ty.falseAlarms[d.Kind]++
			ty.problems = append(ty.problems, fmt.Sprintf("%s: false %s", where(d.At), d.Kind))
		}
	}
}

func (ty *tally) report(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-11s %9s %5s %11s %9s %12s %11s %19s\n", "kind", "incidents", "hits", "sensitivity", "negatives", "false alarms", "specificity", "latency min..max")
	for _, k := range kinds {
		spec := 1 - float64(ty.negativeAlarms[k])/float64(ty.negatives[k])
		fmt.Fprintf(&b, "%-11s %9d %5d %11.3f %9d %12d %11.3f %8v..%v\n", name(k), ty.incidents[k], ty.hits[k],
			float64(ty.hits[k])/float64(ty.incidents[k]), ty.negatives[k], ty.falseAlarms[k], spec, ty.minLatency[k], ty.maxLatency[k])
	}
	fmt.Fprintf(&b, "\n%-11s %9s %8s\n", "non-incident", "windows", "alarmed")
	for _, l := range []string{"corner", "pothole", "brake", "phone-drop"} {
		fmt.Fprintf(&b, "%-12s %9d %8d\n", l, ty.windows[l], ty.alarmed[l])
	}
	fmt.Fprintf(&b, "\ncritical upgrade agrees with the rider lying still: %d/%d crashes and falls\n", ty.upOK, ty.critical)
	t.Log(b.String())
}

func name(k safety.Kind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "DANGER_KIND_"))
}

// TestScenarios runs the detector over generated scenarios with ground
// truth and holds it to the bar: sensitivity of at least 0.95 for
// every kind, no alarm at all in rides, potholes, phone drops, corners or
// service braking, every detection close to the ideal moment (50 ms for
// an impact, 100 ms for a tipover or hard brake, see latencyBound).
func TestScenarios(t *testing.T) {
	cases := []struct {
		scenario string
		seeds    int
		quiet    bool // no detection at all in the trace
	}{
		{"ride", 15, true},
		{"pothole", 20, true},
		{"phone-drop", 40, true},
		{"crash", 40, false},
		{"fall", 40, false},
		{"tipover", 40, false},
		{"hard-brake", 40, false},
		{"mixed", 8, false},
	}
	all := newTally()
	for _, c := range cases {
		t.Run(c.scenario, func(t *testing.T) {
			ty := newTally()
			for seed := range int64(c.seeds) {
				tr, err := sim.Scenario(c.scenario, seed+1)
				if err != nil {
					t.Fatal(err)
				}
				dets := detect(tr)
				if c.quiet && len(dets) > 0 {
					t.Errorf("%s/%d: %d detections, want none: first %s at %.2fs", c.scenario, seed+1, len(dets), dets[0].Kind, dets[0].At.Sub(sim.Start).Seconds())
				}
				ty.add(tr, dets)
				all.add(tr, dets)
			}
			for _, p := range ty.problems {
				t.Error(p)
			}
		})
	}
	all.report(t)
	for _, k := range kinds {
		if s := float64(all.hits[k]) / float64(all.incidents[k]); s < 0.95 {
			t.Errorf("%s sensitivity %.3f, want at least 0.95", name(k), s)
		}
	}
}
