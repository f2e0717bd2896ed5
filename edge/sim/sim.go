// Package sim generates physically plausible motion traces of a rider
// wearing the sensor, at 100 Hz, with ground truth, for the edge agent's
// synthetic source and the detector's tests.
//
// The model: the device sits on the rider's trunk (x forward, y left, z up
// along the spine), leaning forward by a posture angle drawn per seed. Each
// sample's accelerometer reading is the specific force (acceleration minus
// gravity, in g) rotated into the device frame, and the gyro reading is the
// device's angular rate, both derived from one orientation track, so the
// two agree. Riding adds broadband road and engine vibration (0.04–0.12 g
// and 1.5–4°/s RMS, aliased to 100 Hz); the sensor adds 0.004 g and
// 0.2°/s of noise, a residual gyro bias of up to 0.2°/s per axis (a gyro
// whose bias was calibrated at rest), and saturates at ±16 g and
// ±2000°/s. Every 100th sample carries a position fix that moves with the
// device.
//
// Episodes, each drawn from the seed:
//
//   - corner: the bike leans 15–45° in a balanced turn, so the specific
//     force stays along the bike's vertical at 1/cos(lean) g while the
//     heading turns at g·tan(lean)/v; the rider's trunk leans 0–1.1 times
//     as far, so the gravity the device reads rotates by up to ~45°.
//   - pothole: a dip of 0.2–0.45 g, then a vertical spike to 1.5–2.5 g over
//     30–60 ms, a 0.3–0.8 g backward jolt and a few degrees of pitch.
//   - brake: 0.15–0.35 g for 1–3 s, or 0.2–0.3 g to a stop (service
//     braking, no alarm; 0.35 g is about the 3.4 m/s² "comfortable"
//     deceleration of road design guides such as AASHTO's).
//   - hard-brake: 0.62–0.95 g for 0.6–1.5 s after a 0.1–0.25 s ramp, with
//     an ABS-like ripple of up to 0.03 g.
//   - tipover: the rider stops, then goes over with the bike: 75–95° in
//     1–2 s, a soft landing, lying 4–12 s, getting up.
//   - crash: a collision at 8–20 m/s: a 4–10 g backward pulse over
//     80–160 ms pitching the rider over at 300–700°/s, tumbling and sliding
//     at ~0.6 g with bumps, then lying.
//   - fall: a highside: a sideways flick, 0.3–0.6 s airborne (under 0.25 g,
//     rotating 200–450°/s), a 3.5–8 g landing over 80–160 ms, sliding,
//     lying.
//   - phone-drop: the device comes off the rider, falls 0.3–0.5 s tumbling
//     at 300–1500°/s, strikes the road at 3–8 g in one or two samples (a
//     light rigid object), hops and skids with the bike's speed, and comes
//     to rest flat.
//
// After a crash or fall the rider either lies still (breathing only:
// Truth.Critical) or keeps moving.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/tideline/tideline/domain/safety"
)

// Period is the time between samples (100 Hz).
const Period = 10 * time.Millisecond

// Start is the timestamp of every trace's first sample.
var Start = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

// Trace is a generated recording and what happened in it.
type Trace struct {
	Name    string
	Seed    int64
	Samples []safety.Sample
	Truth   []Truth
}

// Truth is one labelled episode of a trace.
type Truth struct {
	// Label names the episode: crash, fall, tipover, hard-brake (incidents),
	// or corner, pothole, brake, phone-drop (not incidents).
	Label string
	// Kind is the detection the episode should raise, 0 for none.
	Kind safety.Kind
	// Start and End bound the episode; End includes any lying or resting
	// that follows.
	Start, End time.Time
	// Decide is when an ideal detector with BikeConfig, reading the
	// noise-free signal, could first decide: the first sample at or above
	// ImpactG (crash, fall); TiltHold after the tilt first reached TiltDeg
	// (tipover); HardBrakeHold after the deceleration first reached
	// HardBrakeG (hard-brake). Zero for non-incidents.
	Decide time.Time
	// Critical is true when the rider lies still after a crash or fall.
	Critical bool
}

var names = []string{"ride", "crash", "fall", "tipover", "hard-brake", "pothole", "phone-drop", "mixed"}

// Names returns the scenario names Scenario accepts.
func Names() []string { return slices.Clone(names) }

// Scenario generates the named scenario; the same name and seed give the
// same trace. The scenarios:
//
//	ride        2 minutes of riding: corners, service braking, stops
//	crash       riding, then a crash
//	fall        riding, then a fall (highside)
//	tipover     riding, stopping, the bike going over, getting up, riding on
//	hard-brake  riding, a hard brake, riding on
//	pothole     a minute of riding over 12–20 potholes
//	phone-drop  riding, then the device falls off and lies on the road
//	mixed       10 minutes of riding with two hard brakes, a tipover, a
//	            phone drop (picked up again), a crash, a fall and a hard
//	            brake ending in a crash, the rider getting up after each
//
// It returns an error naming the valid scenarios for an unknown name.
func Scenario(name string, seed int64) (Trace, error) {
	g := newGen(seed)
	switch name {
	case "ride":
		g.cruise(g.dur(6, 10))
		for g.elapsed() < 120*time.Second {
			g.rideMix(10 * time.Second)
		}
	case "crash":
		g.cruise(g.dur(6, 10))
		g.rideMix(g.dur(5, 15))
		g.crash(g.rng.IntN(2) == 0, false)
	case "fall":
		g.cruise(g.dur(6, 10))
		g.rideMix(g.dur(5, 15))
		g.fall(g.rng.IntN(2) == 0, false)
	case "tipover":
		g.cruise(g.dur(6, 10))
		g.rideMix(g.dur(5, 15))
		g.tipover()
		g.cruise(g.dur(8, 12))
	case "hard-brake":
		g.cruise(g.dur(6, 10))
		g.rideMix(g.dur(5, 15))
		g.hardBrake(true)
		g.cruise(g.dur(8, 12))
	case "pothole":
		g.cruise(g.dur(6, 10))
		for range 12 + g.rng.IntN(9) {
			g.ride(g.dur(1.5, 4))
			g.pothole()
		}
		g.ride(g.dur(2, 4))
	case "phone-drop":
		g.cruise(g.dur(6, 10))
		g.rideMix(g.dur(5, 15))
		g.phoneDrop(0)
	case "mixed":
		g.mixed()
	default:
		return Trace{}, fmt.Errorf("unknown scenario %q: valid are %s", name, strings.Join(names, ", "))
	}
	g.close()
	return Trace{Name: name, Seed: seed, Samples: g.samples, Truth: g.truth}, nil
}

const (
	gEarth  = 9.81 // m/s²
	dtSec   = 0.01
	sensorA = 0.004 // g RMS
	sensorW = 0.2   // °/s RMS
	maxA    = 16    // g
	maxW    = 2000  // °/s
)

// gen builds a trace sample by sample.
type gen struct {
	rng     *rand.Rand
	cfg     safety.Config
	samples []safety.Sample
	truth   []Truth
	open    []int // truths whose End is the trace's end unless set

	r      mat     // device orientation of the latest sample
	psi    float64 // heading, rad
	pitch0 float64 // the rider's forward lean, rad
	v      float64 // speed, m/s
	sway   vec     // the trunk's roll sway: amplitude (rad), frequency (Hz), phase
	vib    float64 // riding vibration, g RMS
	vibW   float64 // riding vibration, °/s RMS
	bias   vec     // gyro bias, °/s
	north  float64 // position, m
	east   float64
}

func newGen(seed int64) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(uint64(seed), 0x5afe7)), cfg: safety.BikeConfig()}
	g.pitch0 = rad(g.u(5, 25))
	g.v = g.u(10, 18)
	g.vib = g.u(0.04, 0.12)
	g.vibW = g.u(1.5, 4)
	g.bias = vec{g.u(-0.2, 0.2), g.u(-0.2, 0.2), g.u(-0.2, 0.2)}
	g.psi = g.u(0, 2*math.Pi)
	g.sway = vec{rad(g.u(0.5, 2)), g.u(0.2, 0.5), g.u(0, 2*math.Pi)}
	g.r = g.pose(0, 0)
	return g
}

func (g *gen) u(a, b float64) float64 { return a + (b-a)*g.rng.Float64() }

func (g *gen) dur(a, b float64) time.Duration { return time.Duration(g.u(a, b) * float64(time.Second)) }

func (g *gen) sign() float64 {
	if g.rng.IntN(2) == 0 {
		return -1
	}
	return 1
}

func steps(d time.Duration) int { return int(d / Period) }

func (g *gen) now() time.Time { return Start.Add(time.Duration(len(g.samples)) * Period) }

func (g *gen) elapsed() time.Duration { return time.Duration(len(g.samples)) * Period }

// pose is the riding orientation with the trunk rolled by roll and pitched
// forward by pitch beyond the rider's posture, swaying a little.
func (g *gen) pose(roll, pitch float64) mat {
	t := g.elapsed().Seconds()
	roll += g.sway[0] * math.Sin(2*math.Pi*g.sway[1]*t+g.sway[2])
	return rotZ(g.psi).mul(rotY(g.pitch0 + pitch)).mul(rotX(roll))
}

// heading turns a vector from the heading frame (x along the direction of
// travel) into the world frame.
func (g *gen) heading(x, y, z float64) vec { return rotZ(g.psi).apply(vec{x, y, z}) }

// tilt is the angle between the gravity the device reads at orientation r
// and at the upright riding posture, in degrees.
func (g *gen) tilt(r mat) float64 {
	up := r.t().apply(vec{0, 0, 1})
	up0 := rotY(g.pitch0).t().apply(vec{0, 0, 1})
	c := up[0]*up0[0] + up[1]*up0[1] + up[2]*up0[2]
	return deg(math.Acos(max(-1, min(1, c))))
}

// emit appends a sample with the device at orientation r feeling the
// world-frame specific force f (g), shaken by shake times the riding
// vibration. It returns the noise-free magnitude of f.
func (g *gen) emit(r mat, f vec, shake float64) float64 {
	fd := r.t().apply(f)
	w := scale(logm(g.r.t().mul(r)), deg(1)/dtSec)
	if len(g.samples) == 0 {
		w = vec{}
	}
	g.r = r
	sa := math.Hypot(sensorA, shake*g.vib)
	sw := math.Hypot(sensorW, shake*g.vibW)
	var s safety.Sample
	for i := range 3 {
		s.Accel[i] = max(-maxA, min(maxA, fd[i]+sa*g.rng.NormFloat64()))
		s.Gyro[i] = max(-maxW, min(maxW, w[i]+g.bias[i]+sw*g.rng.NormFloat64()))
	}
	n := len(g.samples)
	s.T, s.Seq = g.now(), uint32(n)
	if n%100 == 0 {
		const lat0, lng0 = 52.37, 4.89
		s.Loc = &safety.Location{
			Lat:       lat0 + g.north/111320,
			Lng:       lng0 + g.east/(111320*math.Cos(rad(lat0))),
			AccuracyM: 5,
		}
	}
	g.north += g.v * dtSec * math.Sin(g.psi)
	g.east += g.v * dtSec * math.Cos(g.psi)
	g.samples = append(g.samples, s)
	return norm(f)
}

func (g *gen) label(l string, k safety.Kind, start time.Time) *Truth {
	g.truth = append(g.truth, Truth{Label: l, Kind: k, Start: start, End: g.now()})
	return &g.truth[len(g.truth)-1]
}

// close ends the truths still open (a rider lying, a phone on the road) at
// the trace's end.
func (g *gen) close() {
	for _, i := range g.open {
		g.truth[i].End = g.now()
	}
	g.open = nil
}

// cruise rides straight at a steady speed: what calibrates the upright.
func (g *gen) cruise(d time.Duration) { g.rideAt(d, 0.02) }

// ride rides straight with gentle changes of speed.
func (g *gen) ride(d time.Duration) { g.rideAt(d, 0.08) }

func (g *gen) rideAt(d time.Duration, accel float64) {
	amp, fa, pa := g.u(0, accel), g.u(0.05, 0.15), g.u(0, 2*math.Pi)
	heave, fh := g.u(0.02, 0.08), g.u(1.2, 2)
	for i := range steps(d) {
		t := float64(i) * dtSec
		along := amp * math.Sin(2*math.Pi*fa*t+pa)
		if (g.v < 6 && along < 0) || (g.v > 25 && along > 0) {
			along = 0
		}
		g.v += along * gEarth * dtSec
		g.emit(g.pose(0, 0), g.heading(along, 0, 1+heave*math.Sin(2*math.Pi*fh*t)), 1)
	}
}

// rideMix rides for about d with corners, service braking and stops.
func (g *gen) rideMix(d time.Duration) {
	end := g.elapsed() + d
	for g.elapsed() < end {
		switch x := g.rng.Float64(); {
		case x < 0.45:
			g.ride(g.dur(3, 8))
		case x < 0.8:
			g.corner()
		case x < 0.9:
			g.brake()
		default:
			g.stopAndGo()
		}
	}
}

// corner leans the bike into a balanced turn and out again.
func (g *gen) corner() {
	start := g.now()
	g.v = max(6, min(20, g.v))
	lean, side, k := rad(g.u(15, 45)), g.sign(), g.u(0, 1.1)
	in, hold, out := g.u(1, 2), g.u(1, 5), g.u(1, 2)
	n := int((in + hold + out) / dtSec)
	for i := range n {
		t := float64(i) * dtSec
		phi := lean * (ease(t/in) - ease((t-in-hold)/out)) * side
		g.psi -= gEarth * math.Tan(phi) / g.v * dtSec
		g.emit(g.pose(k*phi, 0), g.heading(0, -math.Tan(phi), 1), 1)
	}
	g.label("corner", 0, start)
}

// brake slows down as in traffic.
func (g *gen) brake() {
	start := g.now()
	d, hold := g.u(0.15, 0.35), g.u(1, 3)
	hold = min(hold, (g.v-4)/(d*gEarth))
	g.decelerate(d, 0.3, max(0.3, hold), 0.3, rad(1), 0)
	g.label("brake", 0, start)
}

// stopAndGo stops at a light and rides off again.
func (g *gen) stopAndGo() {
	start := g.now()
	d := g.u(0.2, 0.3)
	g.decelerate(d, 0.3, math.Max(0, g.v/(d*gEarth)-0.3), 0, 0, 0)
	g.v = 0
	g.idle(g.dur(2, 5))
	g.label("brake", 0, start)
	a, target := g.u(0.15, 0.25), g.u(10, 16)
	for g.v < target {
		g.v += a * gEarth * dtSec
		g.emit(g.pose(0, 0), g.heading(a, 0, 1), 1)
	}
}

// idle stands still on the bike with the engine running.
func (g *gen) idle(d time.Duration) {
	for range steps(d) {
		g.emit(g.pose(0, 0), vec{0, 0, 1}, 0.4)
	}
}

// decelerate ramps the deceleration up to d (g) over rise seconds, holds
// it with an ABS-like ripple, and releases it over fall seconds (0: ends
// at d, or when stopped). The trunk dives by up to dive. It returns when
// the deceleration first reached HardBrakeG.
func (g *gen) decelerate(d, rise, hold, fall, dive, ripple float64) time.Time {
	var crossed time.Time
	n := int((rise + hold + fall) / dtSec)
	fr := g.u(5, 9)
	for i := range n {
		t := float64(i) * dtSec
		x := d * (ease(t/rise) - ease((t-rise-hold)/fall))
		if fall == 0 {
			x = d * ease(t/rise)
		}
		if t > rise {
			x += ripple * math.Sin(2*math.Pi*fr*t)
		}
		if fall == 0 && g.v <= 0 {
			break // stopped
		}
		g.v = max(0, g.v-x*gEarth*dtSec)
		if crossed.IsZero() && x >= g.cfg.HardBrakeG {
			crossed = g.now()
		}
		g.emit(g.pose(0, dive*x/d), g.heading(-x, 0, 1), 1)
	}
	return crossed
}

// hardBrake brakes hard; release false ends it still braking (a crash
// follows).
func (g *gen) hardBrake(release bool) {
	start := g.now()
	g.v = max(g.v, 14)
	d, rise := g.u(0.62, 0.95), g.u(0.1, 0.25)
	hold := min(g.u(0.6, 1.5), (g.v-3)/(d*gEarth)-rise)
	fall := g.u(0.15, 0.3)
	if !release {
		fall = 0
	}
	crossed := g.decelerate(d, rise, hold, fall, rad(g.u(2, 4)), g.u(0, 0.03))
	g.label("hard-brake", safety.HardBrake, start).Decide = crossed.Add(g.cfg.HardBrakeHold)
}

// pothole rides through a pothole.
func (g *gen) pothole() {
	start := g.now()
	dip, tdip := g.u(0.2, 0.45), g.u(0.03, 0.05)
	bump, tb := g.u(0.5, 1.5), g.u(0.03, 0.06)
	jolt, tj := g.u(0.3, 0.8), g.u(0.04, 0.06)
	nod, tn := rad(g.u(1, 3)), 0.15
	for i := range 40 {
		t := float64(i) * dtSec
		z := 1 - dip*pulse(t/tdip) + bump*pulse((t-tdip)/tb)
		x := -jolt * pulse((t-tdip)/tj)
		g.emit(g.pose(0, nod*pulse((t-tdip)/tn)), g.heading(x, 0, z), 1)
	}
	g.label("pothole", 0, start)
}

// tipover stops and goes over with the bike, lies, gets up and rides off.
func (g *gen) tipover() {
	d := g.u(0.2, 0.3)
	g.decelerate(d, 0.3, math.Max(0, g.v/(d*gEarth)-0.3), 0, 0, 0)
	g.v = 0
	g.idle(g.dur(1, 3))
	start := g.now()
	lean, side, over := rad(g.u(75, 95)), g.sign(), g.u(1, 2)
	land, tl := g.u(0.2, 0.7), g.u(0.06, 0.1)
	var crossed time.Time
	for i := range int(over / dtSec) {
		t := float64(i) * dtSec
		r := g.pose(side*lean*ease(t/over), 0)
		if crossed.IsZero() && g.tilt(r) >= g.cfg.TiltDeg {
			crossed = g.now()
		}
		g.emit(r, vec{0, 0, 1 + land*pulse((t-over+tl)/tl)}, 0.3)
	}
	lie := g.u(4, 12)
	wob, fw := rad(g.u(0.5, 2)), g.u(0.2, 0.6)
	for i := range int(lie / dtSec) {
		t := float64(i) * dtSec
		g.emit(g.pose(side*(lean+wob*math.Sin(2*math.Pi*fw*t)), 0), vec{0, 0, 1}, 0)
	}
	tr := g.label("tipover", safety.Tipover, start)
	tr.Decide = crossed.Add(g.cfg.TiltHold)
	g.handle(g.dur(4, 8))
	g.remount(false)
	g.v = g.u(8, 14)
}

// handle is the rider on foot: getting up, walking, picking things up.
// The trunk wanders within ~40° of upright and bounces with each step.
func (g *gen) handle(d time.Duration) {
	bounce, fs := g.u(0.3, 0.45), g.u(1.6, 2.1)
	n := steps(d)
	for i := 0; i < n; {
		from := g.r
		to := rotZ(g.psi + g.u(-1, 1)).mul(rotY(g.pitch0 + rad(g.u(-15, 40)))).mul(rotX(rad(g.u(-25, 25))))
		seg := max(1, min(n-i, int(g.u(0.6, 1.2)/dtSec)))
		for j := range seg {
			t := float64(i+j) * dtSec
			f := vec{0.1 * math.Sin(2*math.Pi*fs*t), 0, 1 + bounce*math.Sin(2*math.Pi*fs*t)}
			g.emit(slerp(from, to, ease(float64(j+1)/float64(seg))), g.heading(f[0], f[1], f[2]), 0.3)
		}
		i += seg
	}
}

// remount gets back on the bike and sets off. A device put back on its
// mount (moved) sits a few degrees from where it was.
func (g *gen) remount(moved bool) {
	from := g.r
	if moved {
		g.pitch0 += rad(g.u(-3, 3))
	}
	for j := range 100 {
		g.emit(slerp(from, g.pose(0, 0), ease(float64(j+1)/100)), vec{0, 0, 1}, 0.3)
	}
	g.idle(g.dur(1, 2))
}

// crash collides and tumbles; the rider then lies still or moving. If
// rideOn, the rider gets up and rides on.
func (g *gen) crash(still, rideOn bool) {
	start := g.now()
	g.v = max(g.v, 8)
	p, wid := g.u(4, 10), g.u(0.08, 0.16)
	axis := unit(vec{g.u(-0.3, 0.3), 1, g.u(-0.3, 0.3)})
	spin, tau := rad(g.u(300, 700)), g.u(0.8, 1.5)
	slide := g.u(0.5, 0.7)
	tumble := g.u(1, 2.5)
	var decide time.Time
	r := g.r
	nextBump, bump, tb, bumpAt := g.u(0.2, 0.4), 0.0, 0.0, 0.0
	for i := range int(tumble / dtSec) {
		t := float64(i) * dtSec
		w := spin * min(1, t/0.02) * math.Exp(-t/tau)
		axis = unit(add(axis, vec{g.u(-0.1, 0.1), g.u(-0.1, 0.1), g.u(-0.1, 0.1)}))
		r = r.mul(expm(scale(axis, w*dtSec)))
		f := g.heading(-p*pulse(t/wid), 0, 1)
		if t >= wid {
			if t >= nextBump {
				bump, tb, bumpAt = g.u(0.8, 2.5), g.u(0.03, 0.08), t
				nextBump = t + g.u(0.15, 0.4)
			}
			f = g.heading(-slide, 0, 1+bump*pulse((t-bumpAt)/tb))
		}
		g.v = max(0, g.v-slide*gEarth*dtSec)
		if m := g.emit(r, f, 0); decide.IsZero() && m >= g.cfg.ImpactG {
			decide = g.now().Add(-Period)
		}
	}
	g.v = 0
	g.settle(g.lying(), g.u(0.5, 0.8))
	g.afterImpact("crash", safety.Crash, start, decide, still, rideOn)
}

// fall is a highside: flicked sideways, airborne, landing, sliding.
func (g *gen) fall(still, rideOn bool) {
	start := g.now()
	g.v = max(g.v, 8)
	side := g.sign()
	flick, lat := g.u(0.15, 0.3), g.u(0.8, 1.5)
	spin := rad(g.u(200, 450))
	axis := unit(vec{side, g.u(-0.4, 0.4), g.u(-0.3, 0.3)})
	r := g.r
	for i := range int(flick / dtSec) {
		t := float64(i) * dtSec
		r = r.mul(expm(scale(axis, spin*ease(t/flick)*dtSec)))
		g.emit(r, g.heading(0, side*lat*pulse(t/flick), 1), 0.5)
	}
	air := g.u(0.3, 0.6)
	centripetal := scale(unit(vec{g.u(-1, 1), g.u(-1, 1), g.u(-1, 1)}), g.u(0.05, 0.2))
	for range int(air / dtSec) {
		axis = unit(add(axis, vec{g.u(-0.05, 0.05), g.u(-0.05, 0.05), g.u(-0.05, 0.05)}))
		r = r.mul(expm(scale(axis, spin*dtSec)))
		g.emit(r, r.apply(centripetal), 0)
	}
	p, wid := g.u(3.5, 8), g.u(0.08, 0.16)
	var decide time.Time
	slide := g.u(0.4, 1)
	for i := range int((wid + slide) / dtSec) {
		t := float64(i) * dtSec
		spin *= 0.97
		r = r.mul(expm(scale(axis, spin*dtSec)))
		settle := ease(t / wid)
		f := g.heading(-0.6*settle, 0, max(p*pulse(t/wid), settle))
		g.v = max(0, g.v-0.6*settle*gEarth*dtSec)
		if m := g.emit(r, f, 0); decide.IsZero() && m >= g.cfg.ImpactG {
			decide = g.now().Add(-Period)
		}
	}
	g.v = 0
	g.settle(g.lying(), g.u(0.4, 0.8))
	g.afterImpact("fall", safety.Fall, start, decide, still, rideOn)
}

// lying is a random orientation of a rider lying down: the spine
// horizontal, on the back, front or side.
func (g *gen) lying() mat {
	return rotZ(g.u(0, 2*math.Pi)).mul(rotY(g.sign() * rad(g.u(80, 100)))).mul(rotZ(g.u(0, 2*math.Pi)))
}

// settle rotates smoothly to r over secs, resting on the ground.
func (g *gen) settle(to mat, secs float64) {
	from := g.r
	n := int(secs / dtSec)
	for j := range n {
		g.emit(slerp(from, to, ease(float64(j+1)/float64(n))), vec{0, 0, 1}, 0)
	}
}

func (g *gen) afterImpact(label string, k safety.Kind, start, decide time.Time, still, rideOn bool) {
	lie := g.dur(8, 15)
	if rideOn {
		lie = g.dur(8, 12)
	}
	base := g.r
	if still {
		for i := range steps(lie) {
			t := float64(i) * dtSec
			g.emit(base.mul(rotX(rad(0.3)*math.Sin(2*math.Pi*0.25*t))), vec{0, 0, 1}, 0)
		}
	} else {
		for end := len(g.samples) + steps(lie); len(g.samples) < end; {
			from := g.r
			to := base.mul(rotX(rad(g.u(-25, 25)))).mul(rotY(rad(g.u(-25, 25))))
			n := int(g.u(0.3, 0.8) / dtSec)
			for j := range n {
				t := float64(len(g.samples)) * dtSec
				g.emit(slerp(from, to, ease(float64(j+1)/float64(n))), vec{0, 0, 1 + 0.15*math.Sin(2*math.Pi*0.8*t)}, 0)
			}
		}
	}
	tr := g.label(label, k, start)
	tr.Decide, tr.Critical = decide, still
	if !rideOn {
		g.open = append(g.open, len(g.truth)-1)
		return
	}
	g.handle(g.dur(6, 10))
	g.remount(false)
	g.v = g.u(8, 14)
}

// phoneDrop drops the device off the rider. It lies on the road until the
// rider comes back after pickup (never if 0).
func (g *gen) phoneDrop(pickup time.Duration) {
	start := g.now()
	r := g.r
	axis := unit(vec{g.u(-1, 1), g.u(-1, 1), g.u(-1, 1)})
	spin := rad(g.u(300, 1500))
	for i := range 6 { // snagged and torn off
		t := float64(i) * dtSec
		r = r.mul(expm(scale(axis, spin*ease(t/0.06)*dtSec)))
		g.emit(r, g.heading(0, 0.5*pulse(t/0.06), 1), 0.5)
	}
	small := scale(unit(vec{g.u(-1, 1), g.u(-1, 1), g.u(-1, 1)}), g.u(0.02, 0.1))
	fly := func(secs float64) {
		for range int(secs / dtSec) {
			r = r.mul(expm(scale(axis, spin*dtSec)))
			g.emit(r, r.apply(small), 0)
		}
	}
	strike := func(p float64) { // a light rigid object: one or two samples
		r = r.mul(expm(scale(axis, spin*dtSec)))
		g.emit(r, g.heading(-0.3*p, g.u(-0.2, 0.2)*p, p), 0)
		r = r.mul(expm(scale(axis, spin*dtSec)))
		g.emit(r, g.heading(0, 0, max(0.2, p*g.u(0, 0.45))), 0)
		spin *= g.u(0.4, 0.8)
		axis = unit(add(axis, vec{g.u(-1, 1), g.u(-1, 1), g.u(-1, 1)}))
	}
	fly(g.u(0.3, 0.5))
	strike(g.u(3, 8))
	for g.v > 0.5 || g.rng.IntN(2) == 0 { // hops and skids
		fly(g.u(0.05, 0.2))
		strike(g.u(1.5, 5))
		for range int(g.u(0.1, 0.3) / dtSec) {
			r = r.mul(expm(scale(axis, spin*dtSec)))
			g.v = max(0, g.v-0.5*gEarth*dtSec)
			g.emit(r, g.heading(-0.5, 0, 1), 0)
		}
		g.v = max(0, g.v-0.6*gEarth*0.2)
		spin *= 0.7
	}
	g.v = 0
	flat := rotZ(g.u(0, 2*math.Pi)).mul(rotY(g.sign() * math.Pi / 2)).mul(rotX(g.u(0, 2*math.Pi)))
	g.settle(flat, g.u(0.3, 0.6))
	if pickup == 0 {
		g.label("phone-drop", 0, start)
		g.open = append(g.open, len(g.truth)-1)
		for range steps(g.dur(20, 30)) {
			g.emit(flat, vec{0, 0, 1}, 0)
		}
		return
	}
	for range steps(pickup) {
		g.emit(flat, vec{0, 0, 1}, 0)
	}
	g.label("phone-drop", 0, start)
	g.handle(g.dur(6, 12))
	g.remount(true)
	g.v = g.u(8, 14)
}

// mixed is a ten-minute ride with incidents and non-incidents, at least
// 35 s apart.
func (g *gen) mixed() {
	g.cruise(g.dur(8, 12))
	episodes := []func(){
		func() { g.hardBrake(true) },
		func() { g.hardBrake(true) },
		g.tipover,
		func() { g.phoneDrop(g.dur(10, 30)) },
		func() { g.crash(g.rng.IntN(2) == 0, true) },
		func() { g.fall(g.rng.IntN(2) == 0, true) },
		func() { g.hardBrake(false); g.crash(g.rng.IntN(2) == 0, true) },
	}
	g.rng.Shuffle(len(episodes), func(i, j int) { episodes[i], episodes[j] = episodes[j], episodes[i] })
	for _, ep := range episodes {
		g.cruise(g.dur(6, 8)) // recalibrates after a free fall
		g.rideMix(g.dur(30, 40))
		for range g.rng.IntN(3) {
			g.ride(g.dur(1, 3))
			g.pothole()
		}
		g.ride(g.dur(2, 4))
		ep()
	}
	for g.elapsed() < 10*time.Minute {
		g.rideMix(10 * time.Second)
	}
}
