package safety_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge/sim"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// rec builds a synthetic 100 Hz recording of a device worn upright (+z up,
// +x forward).
type rec struct {
	t   time.Time
	rng *rand.Rand
	s   []safety.Sample
}

const period = 10 * time.Millisecond

func newRec() *rec {
	return &rec{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(1, 2))}
}

// hold reads acceleration a (g) and angular rate w (°/s) for d, with
// vibration of shake g RMS (and 25 times that in °/s).
func (r *rec) hold(d time.Duration, a, w [3]float64, shake float64) *rec {
	for range int(d / period) {
		s := safety.Sample{T: r.t, Seq: uint32(len(r.s))}
		for i := range 3 {
			s.Accel[i] = a[i] + shake*r.rng.NormFloat64()
			s.Gyro[i] = w[i] + 25*shake*r.rng.NormFloat64()
		}
		r.s = append(r.s, s)
		r.t = r.t.Add(period)
	}
	return r
}

var (
	upright = [3]float64{0, 0, 1}
	still   = [3]float64{}
)

// ride rides steadily for d: long enough (over 3 s) to calibrate.
func (r *rec) ride(d time.Duration) *rec { return r.hold(d, upright, still, 0.08) }

// lie rests on the side, perfectly still, for d.
func (r *rec) lie(d time.Duration) *rec { return r.hold(d, [3]float64{0, 1, 0}, still, 0) }

// pitch bends the device forward to deg degrees over d, its gyro agreeing.
func (r *rec) pitch(deg float64, d time.Duration) *rec {
	n := int(d / period)
	for i := range n {
		th := deg * float64(i+1) / float64(n) * math.Pi / 180
		r.hold(period, [3]float64{-math.Sin(th), 0, math.Cos(th)}, [3]float64{0, deg / d.Seconds(), 0}, 0.02)
	}
	return r
}

// outcome runs the recording through a detector and names what it
// raised: "kind/severity", e.g. "crash/high".
func outcome(s []safety.Sample) []string {
	d := safety.NewDetector(safety.DefaultConfig())
	var out []string
	for _, x := range s {
		if det, ok := d.Push(x); ok {
			out = append(out, strings.SplitN(det.EventID, "-1", 2)[0]+"/"+strings.ToLower(strings.TrimPrefix(det.Severity.String(), "SEVERITY_")))
		}
	}
	return out
}

func TestRules(t *testing.T) {
	s := time.Second
	ms := time.Millisecond
	cases := []struct {
		name  string
		build func(r *rec)
		want  []string
	}{
		{"riding_raises_nothing", func(r *rec) { r.ride(60 * s) }, nil},
		{"impact_turning_the_rider_is_a_crash", func(r *rec) {
			r.ride(5*s).hold(50*ms, [3]float64{-4, 0, 1}, [3]float64{0, 300, 0}, 0).lie(s)
		}, []string{"crash/high"}},
		{"impact_without_rotation_is_a_jolt", func(r *rec) {
			r.ride(5*s).hold(50*ms, [3]float64{-4, 0, 1}, still, 0).ride(5 * s)
		}, nil},
		{"impact_under_3g_is_a_bump", func(r *rec) {
			r.ride(5*s).hold(50*ms, [3]float64{0, 0, 2.5}, [3]float64{0, 300, 0}, 0).ride(5 * s)
		}, nil},
		{"free_fall_then_impact_is_a_fall", func(r *rec) {
			r.ride(5*s).hold(300*ms, [3]float64{0.05, 0, 0}, [3]float64{250, 0, 0}, 0).
				hold(60*ms, [3]float64{0, 5, 1}, [3]float64{100, 0, 0}, 0).lie(s)
		}, []string{"fall/high"}},
		{"light_object_striking_in_one_sample_is_no_impact", func(r *rec) {
			r.ride(5*s).hold(400*ms, [3]float64{0.05, 0, 0}, [3]float64{800, 300, 0}, 0).
				hold(period, [3]float64{6, 0, 0}, [3]float64{500, 0, 0}, 0).
				hold(period, [3]float64{1, 0, 0}, [3]float64{200, 0, 0}, 0).
				hold(20*s, [3]float64{1, 0, 0}, still, 0) // flat on the road, 90° from upright
		}, nil},
		{"tilt_held_past_65_degrees_is_a_tipover", func(r *rec) {
			r.ride(5*s).hold(3*s, [3]float64{0, math.Sin(1.4), math.Cos(1.4)}, still, 0)
		}, []string{"tipover/medium"}},
		{"tilt_released_before_2s_is_nothing", func(r *rec) {
			r.ride(5*s).hold(1500*ms, [3]float64{0, math.Sin(1.4), math.Cos(1.4)}, still, 0).ride(5 * s)
		}, nil},
		{"tilt_before_calibration_is_ignored", func(r *rec) {
			r.hold(10*s, [3]float64{0, math.Sin(1.4), math.Cos(1.4)}, still, 0)
		}, nil},
		{"sustained_deceleration_is_a_hard_brake", func(r *rec) {
			r.ride(5*s).hold(time.Second, [3]float64{-0.7, 0, 1}, still, 0.08).ride(5 * s)
		}, []string{"hard-brake/low"}},
		{"short_deceleration_is_a_jolt", func(r *rec) {
			r.ride(5*s).hold(200*ms, [3]float64{-0.7, 0, 1}, still, 0.08).ride(5 * s)
		}, nil},
		{"bending_forward_is_not_braking", func(r *rec) {
			r.ride(5*s).pitch(40, 500*ms).hold(3*s, [3]float64{-math.Sin(0.7), 0, math.Cos(0.7)}, still, 0.02)
		}, nil},
		{"stillness_after_a_crash_upgrades_it_to_critical", func(r *rec) {
			r.ride(5*s).hold(50*ms, [3]float64{-4, 0, 1}, [3]float64{0, 300, 0}, 0).lie(5 * s)
		}, []string{"crash/high", "crash/critical"}},
		{"moving_after_a_crash_stays_high", func(r *rec) {
			r.ride(5*s).hold(50*ms, [3]float64{-4, 0, 1}, [3]float64{0, 300, 0}, 0).
				hold(12*s, [3]float64{0, 1, 0}, [3]float64{0, 0, 40}, 0.1)
		}, []string{"crash/high"}},
		{"one_incident_raises_one_detection", func(r *rec) {
			hit := func() { r.hold(50*ms, [3]float64{-4, 0, 1}, [3]float64{0, 300, 0}, 0).ride(2 * s) }
			r.ride(5 * s)
			hit()
			hit()
			hit()
		}, []string{"crash/high"}},
		{"a_crash_after_a_hard_brake_is_raised_too", func(r *rec) {
			r.ride(5*s).hold(time.Second, [3]float64{-0.7, 0, 1}, still, 0.08).
				hold(50*ms, [3]float64{-4, 0, 1}, [3]float64{0, 300, 0}, 0).ride(2 * s)
		}, []string{"hard-brake/low", "crash/high"}},
		{"a_hard_brake_after_a_crash_is_the_same_incident", func(r *rec) {
			r.ride(5*s).hold(50*ms, [3]float64{-4, 0, 1}, [3]float64{0, 300, 0}, 0).
				ride(5*s).hold(time.Second, [3]float64{-0.7, 0, 1}, still, 0.08)
		}, []string{"crash/high"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRec()
			c.build(r)
			if got := outcome(r.s); !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestSamplesOutOfOrderAreIgnored(t *testing.T) {
	r := newRec().ride(5 * time.Second)
	d := safety.NewDetector(safety.DefaultConfig())
	for _, s := range r.s {
		d.Push(s)
	}
	crash := safety.Sample{T: r.s[100].T, Accel: [3]float64{-4, 0, 1}, Gyro: [3]float64{0, 300, 0}}
	for range 10 {
		if det, ok := d.Push(crash); ok {
			t.Fatalf("a stale sample raised %v", det)
		}
	}
}

func TestDetectionEvent(t *testing.T) {
	r := newRec().ride(5 * time.Second)
	r.s[len(r.s)-1].Loc = &safety.Location{Lat: 52.37, Lng: 4.89, AccuracyM: 5}
	r.hold(50*time.Millisecond, [3]float64{-4, 0, 1}, [3]float64{0, 300, 0}, 0).lie(5 * time.Second)
	d := safety.NewDetector(safety.DefaultConfig())
	var dets []safety.Detection
	for _, s := range r.s {
		if det, ok := d.Push(s); ok {
			dets = append(dets, det)
		}
	}
	if len(dets) != 2 {
		t.Fatalf("got %d detections, want the crash and its upgrade", len(dets))
	}
	first, up := dets[0], dets[1]
	if first.EventID != up.EventID || first.EventID != "crash-"+strconv.FormatInt(first.At.UnixNano(), 10) {
		t.Errorf("event ids %q and %q, want both crash-<ns of the first>", first.EventID, up.EventID)
	}
	if first.PeakAccelG < 4 || first.PeakGyroDPS < 300 || first.Loc == nil || first.Loc.Lat != 52.37 {
		t.Errorf("first detection %+v lacks its peaks or location", first)
	}
	if up.Severity != safetyv1.Severity_SEVERITY_CRITICAL || up.TiltDeg < 80 || up.Duration < 2*time.Second {
		t.Errorf("upgrade %+v: want critical, lying (~90°), lasting past the stillness", up)
	}

	ev := first.Event("dev7", "rider3")
	want := &safetyv1.DangerDetected{
		EventId: "dev7:" + first.EventID, DeviceId: "dev7", RiderId: "rider3",
		Kind: safetyv1.DangerKind_DANGER_KIND_CRASH, Severity: safetyv1.Severity_SEVERITY_HIGH,
		PeakAccelG: first.PeakAccelG, PeakGyroDps: first.PeakGyroDPS, DurationMs: first.Duration.Milliseconds(),
		TiltDeg: first.TiltDeg,
	}
	if ev.EventId != want.EventId || ev.DeviceId != want.DeviceId || ev.RiderId != want.RiderId ||
		ev.Kind != want.Kind || ev.Severity != want.Severity || ev.PeakAccelG != want.PeakAccelG ||
		ev.PeakGyroDps != want.PeakGyroDps || ev.DurationMs != want.DurationMs || ev.TiltDeg != want.TiltDeg {
		t.Errorf("event %v, want %v", ev, want)
	}
	if !ev.DetectedAt.AsTime().Equal(first.At) || ev.Location.GetLat() != 52.37 || ev.Location.GetAccuracyM() != 5 {
		t.Errorf("event time %v location %v", ev.DetectedAt.AsTime(), ev.Location)
	}
	if got := up.Event("dev7", "rider3").EventId; got != ev.EventId {
		t.Errorf("upgrade event id %q: must equal the first's %q so read models merge the two", got, ev.EventId)
	}
	if (safety.Detection{}).Event("d", "r").Location != nil {
		t.Error("a detection without a location must not invent one")
	}
}

// TestPushDoesNotAllocate holds Push to zero allocations per sample while
// nothing is detected.
func TestPushDoesNotAllocate(t *testing.T) {
	tr, err := sim.Scenario("ride", 1)
	if err != nil {
		t.Fatal(err)
	}
	d := safety.NewDetector(safety.DefaultConfig())
	i := 0
	if allocs := testing.AllocsPerRun(len(tr.Samples)-1, func() {
		d.Push(tr.Samples[i])
		i++
	}); allocs != 0 {
		t.Errorf("Push allocates %.2f times per sample, want 0", allocs)
	}
}

// BenchmarkDetector feeds a ten-minute mixed ride (60 000 samples) per
// iteration and reports the detector's throughput on one core.
func BenchmarkDetector(b *testing.B) {
	tr, err := sim.Scenario("mixed", 1)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		d := safety.NewDetector(safety.DefaultConfig())
		for _, s := range tr.Samples {
			d.Push(s)
		}
		n += len(tr.Samples)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
}
