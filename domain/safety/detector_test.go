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

// outcome runs the recording through a bike-profile detector and names
// what it raised: "kind/severity", e.g. "crash/high".
func outcome(s []safety.Sample) []string { return outcomeWith(safety.BikeConfig(), s) }

func outcomeWith(cfg safety.Config, s []safety.Sample) []string {
	d := safety.NewDetector(cfg)
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
		{"a_crash_after_the_rider_was_back_up_is_a_new_incident", func(r *rec) {
			hit := func() { r.hold(50*ms, [3]float64{-4, 0, 1}, [3]float64{0, 300, 0}, 0) }
			r.ride(5 * s)
			hit()
			r.ride(6 * s)
			hit()
			r.ride(2 * s)
		}, []string{"crash/high", "crash/high"}},
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
	d := safety.NewDetector(safety.BikeConfig())
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
	d := safety.NewDetector(safety.BikeConfig())
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
// nothing is detected, in either profile.
func TestPushDoesNotAllocate(t *testing.T) {
	tr, err := sim.Scenario("ride", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []safety.Profile{safety.ProfileBody, safety.ProfileBike} {
		d := safety.NewDetector(p.Config())
		i := 0
		if allocs := testing.AllocsPerRun(len(tr.Samples)-1, func() {
			d.Push(tr.Samples[i])
			i++
		}); allocs != 0 {
			t.Errorf("%s: Push allocates %.2f times per sample, want 0", p, allocs)
		}
	}
}

// BenchmarkDetector feeds a ten-minute mixed ride (60 000 samples) per
// iteration through each profile and reports the detector's throughput
// on one core. The ride's bumps, brakes and crashes give the body
// profile's fall stage candidate impacts to measure.
func BenchmarkDetector(b *testing.B) {
	tr, err := sim.Scenario("mixed", 1)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range []safety.Profile{safety.ProfileBody, safety.ProfileBike} {
		b.Run(p.String(), func(b *testing.B) {
			n := 0
			for b.Loop() {
				d := safety.NewDetector(p.Config())
				for _, s := range tr.Samples {
					d.Push(s)
				}
				n += len(tr.Samples)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
		})
	}
}

// Body-worn recordings: a device at the waist, +z up the spine, +x forward.
// onBack is lying on the back: +x faces the sky.
var onBack = [3]float64{1, 0, 0}

// walk walks upright for d: strides of ±0.3 g at 2 Hz, the trunk swaying.
func (r *rec) walk(d time.Duration) *rec {
	for i := range int(d / period) {
		ph := 2 * math.Pi * 2 * float64(i) * period.Seconds()
		r.hold(period, [3]float64{0.1 * math.Sin(ph), 0.05 * math.Cos(ph/2), 1 + 0.3*math.Sin(ph)}, [3]float64{20 * math.Cos(ph/2), 15 * math.Sin(ph), 10 * math.Cos(ph/2)}, 0.02)
	}
	return r
}

// jog jogs upright for d: a 4 g landing every 0.35 s, the trunk turning
// at up to 250°/s.
func (r *rec) jog(d time.Duration) *rec {
	n := int(d / period)
	for i := range n {
		ph := float64(i%35) / 35
		a := [3]float64{0.3 * math.Sin(2*math.Pi*ph), 0.2 * math.Cos(2*math.Pi*ph), 0.4}
		if ph < 0.12 {
			a[2] = 1 + 3*math.Sin(math.Pi*ph/0.12)
		}
		r.hold(period, a, [3]float64{250 * math.Sin(2*math.Pi*ph), 100 * math.Cos(2*math.Pi*ph), 60}, 0.03)
	}
	return r
}

// fall drops the wearer backwards: 0.4 s of falling while turning, an
// impact of 4 g over 60 ms.
func (r *rec) fall() *rec {
	return r.hold(400*time.Millisecond, [3]float64{0.2, 0, 0.3}, [3]float64{0, -220, 0}, 0.02).
		hold(60*time.Millisecond, [3]float64{3, 0, 2.5}, [3]float64{0, -150, 0}, 0)
}

func TestBodyRules(t *testing.T) {
	s := time.Second
	cases := []struct {
		name  string
		build func(r *rec)
		want  []string
	}{
		{"walking_raises_nothing", func(r *rec) { r.walk(60 * s) }, nil},
		{"jogging_past_3g_and_180dps_raises_nothing", func(r *rec) { r.walk(5 * s).jog(60 * s).walk(5 * s) }, nil},
		{"a_fall_onto_the_back_is_a_fall_and_lying_still_makes_it_critical", func(r *rec) {
			r.walk(5*s).fall().hold(8*s, onBack, still, 0.002)
		}, []string{"fall/high", "fall/critical"}},
		{"standing_still_after_a_fall_is_not_critical", func(r *rec) {
			r.walk(5*s).fall().hold(2*s, onBack, [3]float64{0, 20, 0}, 0.05).hold(10*s, upright, still, 0.002)
		}, []string{"fall/high"}},
		{"a_fall_after_getting_up_is_a_new_incident", func(r *rec) {
			r.walk(5*s).fall().hold(3*s, onBack, [3]float64{0, 20, 0}, 0.05).walk(5*s).fall().hold(3*s, onBack, [3]float64{0, 20, 0}, 0.05)
		}, []string{"fall/high", "fall/high"}},
		{"tilt_and_braking_mean_nothing_on_the_body", func(r *rec) {
			r.ride(5*s).hold(time.Second, [3]float64{-0.7, 0, 1}, still, 0.08).hold(5*s, [3]float64{0, math.Sin(1.4), math.Cos(1.4)}, still, 0)
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRec()
			c.build(r)
			if got := outcomeWith(safety.BodyConfig(), r.s); !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestBodyFallIsDecidedTwoSecondsAfterItsPeak pins the body profile's
// latency: the fall is returned by the Push of the first sample 2 s after
// the impact's peak, the deciding sample, and its Duration runs from the
// peak.
func TestBodyFallIsDecidedTwoSecondsAfterItsPeak(t *testing.T) {
	r := newRec().walk(5*time.Second).fall().hold(8*time.Second, onBack, still, 0.002)
	peak := r.s[0]
	for _, s := range r.s {
		if norm2(s.Accel) > norm2(peak.Accel) {
			peak = s
		}
	}
	d := safety.NewDetector(safety.BodyConfig())
	for _, s := range r.s {
		det, ok := d.Push(s)
		if !ok {
			continue
		}
		if !det.At.Equal(s.T) || det.At.Sub(peak.T) != 2*time.Second || det.Duration != 2*time.Second || det.Kind != safety.Fall {
			t.Errorf("%v %v at %v after the peak, duration %v; want a fall on the sample 2s after the peak, lasting 2s",
				det.Kind, det.Severity, det.At.Sub(peak.T), det.Duration)
		}
		return
	}
	t.Fatal("no fall detected")
}

func norm2(v [3]float64) float64 { return v[0]*v[0] + v[1]*v[1] + v[2]*v[2] }
