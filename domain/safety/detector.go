// Package safety is the safety context: the danger detector that the edge
// agent runs on its sensor and the server can run on phone uploads.
//
// The detector is a pure state machine over motion samples from a device
// worn by the rider: no clock (time comes with the samples), no randomness,
// no I/O. Its Config's Profile says where the device is.
//
// On the body (ProfileBody, DefaultConfig), for a rider on foot, it
// detects falls only. Thresholds cannot: on SisFall's waist-worn
// recordings a jog, a run up the stairs, a stumble or a jump passes 3 g
// and 180°/s many times a minute, while falls onto mats or from a chair
// stay under 3 g. So every impact (a peak of |a| of at least 1.6 g) is
// judged on its whole episode: the posture before and 1–2 s after, free
// fall, the velocity gained, rotation, the impact's energy, and how much
// the wearer moves before and after; gradient-boosted trees learnt on
// SisFall score it (body.go, fallmodel.go). A fall is decided on the
// sample 2 s after its impact's peak, when the posture after is known.
// Cross-validated by subject on the SisFall development split: sensitivity
// 0.991, specificity 0.996, 0.7 false alarms per hour of daily activity.
// The features assume the device worn upright at the waist or trunk: +z
// up the spine, +x forward.
//
// On the bike (ProfileBike) it recognises four kinds of danger from
// thresholds:
//
//   - crash: an impact of at least ImpactG lasting like a body's impact
//     (ImpactMinWidth above ImpactWidthG), corroborated by rotation
//     (RotationDPS), with no free fall before it;
//   - fall: the same impact within FreeFallGap after a free fall (below
//     FreeFallG for FreeFallMin);
//   - tipover: a tilt past TiltDeg from the calibrated upright, held for
//     TiltHold;
//   - hard brake: deceleration along the direction of travel of at least
//     HardBrakeG sustained for HardBrakeHold, while the device is near upright.
//
// An accelerometer alone cannot tell leaning forward from slowing down.
// The detector therefore carries a gravity estimate with the gyro (braking
// turns nobody; bending over or rolling into a corner does) and corrects
// it from the accelerometer only in straight steady riding; deceleration is
// the specific force backwards along the mounting's forward axis made
// horizontal against that estimate. Its accuracy is the estimate's: a
// sustained speed-up under ~0.14 g, or gyro bias left over between
// stretches of steady riding, tilts it by a few degrees, about 0.05–0.1 g
// of deceleration. The gyro should be bias-compensated (calibrated at
// rest) to a few tenths of a degree per second; the detector learns what
// remains.
//
// What does not alarm, and why:
//
//   - potholes and kerbs: their spike stays below ImpactG at the rider's
//     trunk, lasts less than HardBrakeHold along the direction of travel, and
//     does not rotate the rider at RotationDPS;
//   - cornering: in a balanced turn the specific force stays along the
//     bike's vertical, so the accelerometer's tilt is the difference between
//     the rider's and the bike's lean, well under TiltDeg; the sideways
//     centripetal pull has no part along the direction of travel; the
//     angular rates of leaning in and turning stay under RotationDPS;
//   - a phone dropped off the rider: it falls freely and tumbles, but a light
//     rigid object's impacts last a few milliseconds, one or two samples at
//     100 Hz, never ImpactMinWidth; a body's impact is cushioned over tens of
//     milliseconds. Any free fall also discards the calibrated upright (the
//     device may have left its mount), and the upright is calibrated again
//     only over stable riding with vibration, so a phone lying on the road in
//     a new orientation does not read as a tipped-over bike.
//
// Severities: hard brake LOW, tipover MEDIUM, crash and fall HIGH. A crash
// or fall is reported at once with severity HIGH; if stillness
// follows (StillHold of rest with no riding vibration, beginning within
// StillWithin; on the body, not upright), the detector reports the same
// incident again, with the same EventID and severity CRITICAL. One
// incident raises one detection (Refractory), but a crash or fall after
// the wearer was back upright for RecoverHold is a new incident: an
// earlier alarm, false or not, never swallows it.
package safety

import (
	"math"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// Kind is the kind of danger detected.
type Kind = safetyv1.DangerKind

// The kinds of danger.
const (
	Crash     = safetyv1.DangerKind_DANGER_KIND_CRASH
	Fall      = safetyv1.DangerKind_DANGER_KIND_FALL
	Tipover   = safetyv1.DangerKind_DANGER_KIND_TIPOVER
	HardBrake = safetyv1.DangerKind_DANGER_KIND_HARD_BRAKE
)

// Location is a position fix.
type Location struct {
	Lat, Lng float64
	// AccuracyM is the horizontal accuracy in metres, 0 when unknown.
	AccuracyM float64
}

// Sample is one reading of the device's motion sensor.
type Sample struct {
	// T is when the sample was taken. Samples must come in increasing T; the
	// detector ignores a sample not later than the previous one.
	T time.Time
	// Accel is the specific force in g along the device's axes: (0, 0, 1)
	// for a device lying still with +z up.
	Accel [3]float64
	// Gyro is the angular rate in degrees per second about the device's axes.
	Gyro [3]float64
	// Seq is the sensor's frame sequence number, if any, for the caller to
	// reorder frames; the detector orders by T.
	Seq uint32
	// Loc is a position fix taken with the sample, nil when there is none.
	// The detector copies it and reports the latest with each detection.
	Loc *Location
}

// Detection is a danger the detector decided on a sample.
type Detection struct {
	// EventID identifies the incident on its device: "<kind>-<unix ns of the
	// deciding sample>", e.g. "crash-1740816012340000000". A CRITICAL
	// upgrade carries the EventID of the detection it upgrades.
	EventID  string
	Kind     Kind
	Severity safetyv1.Severity
	// PeakAccelG and PeakGyroDPS are the largest acceleration and angular
	// rate magnitudes of the episode: over about the last 3 s at the
	// deciding sample, and since then for a CRITICAL upgrade.
	PeakAccelG, PeakGyroDPS float64
	// TiltDeg is the tilt from the calibrated upright at the deciding
	// sample, 0 if the device was never calibrated.
	TiltDeg float64
	// Duration is how long the episode had lasted at the deciding sample:
	// from the free fall's start (bike fall), the impact's peak (body
	// fall: 2 s), the impact's start (crash), the tilt's start (tipover)
	// or the deceleration's start (hard brake). For a CRITICAL upgrade it
	// runs to the end of the stillness.
	Duration time.Duration
	// At is the deciding sample's timestamp.
	At time.Time
	// Loc is the latest position fix seen by then, nil if none.
	Loc *Location
}

// Event returns the detection as the DangerDetected event of the given
// device and rider. Its event_id is "<deviceID>:<EventID>" (e.g.
// "dev7:crash-1740816012340000000"), shared by an incident's first report
// and its CRITICAL upgrade: read models merge the two (severity only
// rises). Transports must therefore not dedup on event_id; the edge
// forwarder and the API dedup on their own keys.
func (d Detection) Event(deviceID, riderID string) *safetyv1.DangerDetected {
	ev := &safetyv1.DangerDetected{
		EventId:     deviceID + ":" + d.EventID,
		DeviceId:    deviceID,
		RiderId:     riderID,
		Kind:        d.Kind,
		Severity:    d.Severity,
		PeakAccelG:  d.PeakAccelG,
		PeakGyroDps: d.PeakGyroDPS,
		DurationMs:  d.Duration.Milliseconds(),
		DetectedAt:  timestamppb.New(d.At),
		TiltDeg:     d.TiltDeg,
	}
	if d.Loc != nil {
		ev.Location = &safetyv1.Location{Lat: d.Loc.Lat, Lng: d.Loc.Lng, AccuracyM: d.Loc.AccuracyM}
	}
	return ev
}

func kindName(k Kind) string {
	switch k {
	case Crash:
		return "crash"
	case Fall:
		return "fall"
	case Tipover:
		return "tipover"
	case HardBrake:
		return "hard-brake"
	}
	return "unknown"
}

// rank orders kinds for the refractory period.
func rank(k Kind) int {
	switch k {
	case HardBrake:
		return 1
	case Tipover:
		return 2
	}
	return 3
}

const (
	// lowPassTau smooths the acceleration for tilt, braking and stillness:
	// short enough to add ~20 ms of lag, long enough to tame vibration.
	lowPassTau = 20 * time.Millisecond
	// vibrationTau averages the squared vibration.
	vibrationTau = 250 * time.Millisecond
	// The gravity estimate (see trackGravity) leans on the accelerometer
	// with gain gravityKP (a 5 s time constant) and learns the gyro bias
	// over about 1/biasGain of steady riding. The magnitude gate lets
	// through accelerations under ~0.14 g (√(1+a²) < 1.01), which tilt the
	// estimate toward them a little.
	gravityKP   = 0.2  // 1/s
	biasGain    = 0.05 // 1/s
	gravityTolG = 0.01
	// gravityNowTolG also holds the filtered magnitude itself near 1 g,
	// so the gate shuts as soon as braking starts, before the 1 s average
	// has moved.
	gravityNowTolG = 0.03
	gravityMaxDPS  = 10
	magnitudeTau   = time.Second
	// calSampleTolG is how far from 1 g the filtered magnitude of every
	// sample of a calibration window may be: riding stays within it, a
	// rider walking (±0.3 g or more at each step) does not.
	calSampleTolG = 0.25
	// peakHold is how long a reported peak is remembered.
	peakHold = 3 * time.Second
	// maxGap is the longest gap between samples the runs survive.
	maxGap = time.Second
	// tiltHysteresisDeg keeps a tilt hold going through sensor noise: once
	// past TiltDeg, the tilt may fall back this far.
	tiltHysteresisDeg = 5
	// gravityLo and gravityHi bound the filtered magnitude at which tilt is
	// judged: outside, something other than gravity dominates.
	gravityLo, gravityHi = 0.5, 1.5
	// poseTau averages the acceleration into a posture over strides and
	// pedal strokes; recoverTiltDeg is how close to upright it must be
	// for the wearer to be back up.
	poseTau        = 500 * time.Millisecond
	recoverTiltDeg = 30
)

// Detector turns samples into detections. It is not safe for concurrent
// use; run one per device. Push is O(1) and does not allocate unless it
// returns a detection.
type Detector struct {
	cfg Config
	// squared magnitude thresholds and cosines, precomputed
	impact2, width2, ff2, rot2, calGyro2, vib2 float64
	stillLo2, stillHi2, stillGyro2             float64
	cosTilt, cosTiltHold, cosBrakeTilt         float64
	minWidth, ffMin, ffGap, rotWindow          int64
	impactWait, tiltHold, calTime              int64
	stillHold, stillWithin, brakeHold          int64
	refractory, recoverHold                    int64
	cosRecover                                 float64

	started            bool
	now                time.Time
	last, dt           int64 // ns
	alpha, beta, beta2 float64
	lp                 [3]float64 // low-passed acceleration
	wlp                [3]float64 // low-passed angular rate
	mag                float64    // |lp| averaged over magnitudeTau
	grav               [3]float64 // gravity estimate: gyro-propagated, slowly pulled to lp
	bias               [3]float64 // gyro bias, °/s, as learnt
	fh                 [3]float64 // forward, perpendicular to grav (unit), or zero
	vib                float64    // mean squared vibration, g²
	loc                Location
	hasLoc             bool

	// peaks held for reporting
	peakA2, peakW2   float64
	peakAAt, peakWAt int64
	lastRot          int64
	rotSeen          bool
	tiltCos, lpNorm  float64
	hasTilt          bool

	// calibration: up is the calibrated upright (unit), fwd the configured
	// forward axis (unit); calibrated arms tipover and hard braking.
	up, fwd           [3]float64
	hasUp, calibrated bool
	calStart          int64
	calN              float64
	calA, calW        [3]float64
	calRunning        bool

	// free fall
	inFF, ffCounted bool
	ffStart, ffLast int64
	ffValid         bool
	ffBegin, ffEnd  int64 // the last counted free fall

	// impact: a run above ImpactWidthG, and a qualified impact awaiting rotation
	inRun                bool
	runStart             int64
	runPeak2             float64
	impact, impactFall   bool
	impactStart, ffOfImp int64

	// hard brake
	braking, brakeDone bool
	brakeStart         int64

	// tipover
	tilting, tiltDone bool
	tiltStart         int64

	// stillness after an impact
	pending, stilling  bool
	pend               Detection
	pendAt, stillStart int64
	pendA2, pendW2     float64

	// refractory, and the wearer being back up after a crash or fall
	lastRank              int
	lastAt                int64
	pose                  [3]float64 // acceleration averaged over poseTau
	gamma                 float64
	ref                   [3]float64 // upright for recovery (body: before the fall)
	hasRef, uprightNow    bool
	uprightRun, recovered bool
	uprightFrom           int64

	body bodyStage
}

// NewDetector returns a detector with the given thresholds.
func NewDetector(cfg Config) *Detector {
	sq := func(x float64) float64 { return x * x }
	cos := func(deg float64) float64 { return math.Cos(deg * math.Pi / 180) }
	return &Detector{
		cfg:          cfg,
		fwd:          unitVec(cfg.Forward),
		impact2:      sq(cfg.ImpactG),
		width2:       sq(cfg.ImpactWidthG),
		ff2:          sq(cfg.FreeFallG),
		rot2:         sq(cfg.RotationDPS),
		calGyro2:     sq(cfg.CalibrationMaxDPS),
		vib2:         sq(cfg.RidingVibrationG),
		stillLo2:     sq(1 - cfg.StillTolG),
		stillHi2:     sq(1 + cfg.StillTolG),
		stillGyro2:   sq(cfg.StillMaxDPS),
		cosTilt:      cos(cfg.TiltDeg),
		cosTiltHold:  cos(cfg.TiltDeg - tiltHysteresisDeg),
		cosBrakeTilt: cos(cfg.BrakeMaxTiltDeg),
		minWidth:     int64(cfg.ImpactMinWidth),
		ffMin:        int64(cfg.FreeFallMin),
		ffGap:        int64(cfg.FreeFallGap),
		rotWindow:    int64(cfg.RotationWindow),
		impactWait:   int64(cfg.ImpactWait),
		tiltHold:     int64(cfg.TiltHold),
		calTime:      int64(cfg.CalibrationTime),
		stillHold:    int64(cfg.StillHold),
		stillWithin:  int64(cfg.StillWithin),
		brakeHold:    int64(cfg.HardBrakeHold),
		refractory:   int64(cfg.Refractory),
		recoverHold:  int64(cfg.RecoverHold),
		cosRecover:   cos(recoverTiltDeg),
	}
}

// Calibrated reports whether the detector has an upright calibrated since
// the last free fall, which arms tipover and hard-brake detection.
func (d *Detector) Calibrated() bool { return d.calibrated }

// Push feeds one sample and reports a detection decided on it.
//
// Body profile: a fall is decided 2 s after its impact's peak (the
// deciding sample is the first at or past that), once the posture after
// the impact is known; nothing else but its CRITICAL upgrade is raised.
//
// Bike profile: crash and fall need no calibration; tipover and hard
// braking are armed once the upright is calibrated over CalibrationTime of
// stable riding, and disarmed by any free fall until it is calibrated
// again.
//
// A gap of more than a second between samples restarts every episode in
// progress.
func (d *Detector) Push(s Sample) (Detection, bool) {
	if s.Loc != nil {
		d.loc, d.hasLoc = *s.Loc, true
	}
	t := s.T.UnixNano()
	a, w := s.Accel, s.Gyro
	if !d.started {
		d.started, d.last, d.now, d.lp, d.mag, d.pose = true, t, s.T, a, math.Sqrt(dot(a, a)), a
		return Detection{}, false
	}
	dt := t - d.last
	if dt <= 0 {
		return Detection{}, false
	}
	d.last, d.now = t, s.T
	if dt > int64(maxGap) {
		d.restart(a)
	}
	if dt != d.dt {
		d.dt = dt
		d.alpha = float64(dt) / float64(int64(lowPassTau)+dt)
		d.beta = float64(dt) / float64(int64(vibrationTau)+dt)
		d.beta2 = float64(dt) / float64(int64(magnitudeTau)+dt)
		d.gamma = float64(dt) / float64(int64(poseTau)+dt)
	}
	for i := range 3 {
		d.lp[i] += d.alpha * (a[i] - d.lp[i])
	}
	hp := [3]float64{a[0] - d.lp[0], a[1] - d.lp[1], a[2] - d.lp[2]}
	d.vib += d.beta * (dot(hp, hp) - d.vib)
	a2, w2, lp2 := dot(a, a), dot(w, w), dot(d.lp, d.lp)

	if a2 >= d.peakA2 || t-d.peakAAt > int64(peakHold) {
		d.peakA2, d.peakAAt = a2, t
	}
	if w2 >= d.peakW2 || t-d.peakWAt > int64(peakHold) {
		d.peakW2, d.peakWAt = w2, t
	}
	if w2 >= d.rot2 {
		d.lastRot, d.rotSeen = t, true
	}
	for i := range 3 {
		d.pose[i] += d.gamma * (a[i] - d.pose[i])
	}
	d.lpNorm = math.Sqrt(lp2)
	d.mag += d.beta2 * (d.lpNorm - d.mag)
	d.trackGravity(dt, w)
	d.hasTilt = d.hasUp && d.lpNorm > gravityLo && d.lpNorm < gravityHi
	if d.hasTilt {
		d.tiltCos = dot(d.lp, d.up) / d.lpNorm
	}

	d.recoverStep(t)
	if d.cfg.Profile == ProfileBody {
		det, ok := d.fallStep(t, a, math.Sqrt(a2), math.Sqrt(w2))
		if det2, ok2 := d.stillStep(t, a2, w2, lp2); ok2 && !ok {
			det, ok = det2, true
		}
		return det, ok
	}

	d.freeFall(t, a2)
	d.calibrate(t, a, w)

	// Every stage sees every sample. Should two decide on one sample, the
	// higher rank's detection is returned and the refractory period has
	// already suppressed the lower one.
	det, ok := d.impactStep(t, a2)
	if det2, ok2 := d.tipoverStep(t); ok2 && !ok {
		det, ok = det2, true
	}
	if det2, ok2 := d.brakeStep(t); ok2 && !ok {
		det, ok = det2, true
	}
	if det2, ok2 := d.stillStep(t, a2, w2, lp2); ok2 && !ok {
		det, ok = det2, true
	}
	return det, ok
}

// restart forgets every episode in progress after a gap in the samples.
func (d *Detector) restart(a [3]float64) {
	d.lp, d.mag, d.pose = a, math.Sqrt(dot(a, a)), a
	d.body.reset()
	d.uprightRun = false
	d.inFF, d.ffCounted, d.inRun, d.impact = false, false, false, false
	d.braking, d.tilting, d.stilling, d.calRunning = false, false, false, false
}

// trackGravity keeps the gravity estimate that braking is measured
// against. The gyro carries it: gravity is fixed in the world, so in the
// device frame it turns against the device, dg/dt = -ω × g. During
// straight steady riding (the 1 s average of |a| within gravityTolG of
// 1 g, |a| itself within gravityNowTolG, turning slower than
// gravityMaxDPS) the accelerometer points at gravity: the estimate is
// turned toward it, a complementary filter after Mahony, Hamel & Pflimlin
// (2008, IEEE TAC 53:1203) for one direction, and the gyro's reading
// across gravity is averaged into its bias, since steady riding does not
// turn the rider on average. In between, the estimate drifts with what
// bias remains.
func (d *Detector) trackGravity(dt int64, w [3]float64) {
	for i := range 3 {
		d.wlp[i] += d.alpha * (w[i] - d.wlp[i])
	}
	if !d.calibrated {
		return
	}
	sec := float64(dt) * 1e-9
	for i := range 3 {
		w[i] = (w[i] - d.bias[i]) * math.Pi / 180
	}
	g := d.grav
	if math.Abs(d.mag-1) < gravityTolG && math.Abs(d.lpNorm-1) < gravityNowTolG && dot(d.wlp, d.wlp) < gravityMaxDPS*gravityMaxDPS {
		// Straight steady riding does not turn the rider on average (sway
		// goes both ways), so what the gyro reads across gravity is bias.
		// Turning about gravity itself (the road's bends) moves nothing.
		k := dot(w, g)
		for i := range 3 {
			d.bias[i] += biasGain * sec * (w[i] - k*g[i]) * 180 / math.Pi
		}
		n := 1 / d.lpNorm
		v := [3]float64{d.lp[0] * n, d.lp[1] * n, d.lp[2] * n}
		e := [3]float64{v[1]*g[2] - v[2]*g[1], v[2]*g[0] - v[0]*g[2], v[0]*g[1] - v[1]*g[0]}
		for i := range 3 {
			w[i] += gravityKP * e[i]
		}
	}
	d.grav[0] -= sec * (w[1]*g[2] - w[2]*g[1])
	d.grav[1] -= sec * (w[2]*g[0] - w[0]*g[2])
	d.grav[2] -= sec * (w[0]*g[1] - w[1]*g[0])
	n := 1 / math.Sqrt(dot(d.grav, d.grav))
	d.grav = [3]float64{d.grav[0] * n, d.grav[1] * n, d.grav[2] * n}
	// The forward axis made horizontal, zero if it points along gravity.
	k := dot(d.fwd, d.grav)
	d.fh = [3]float64{d.fwd[0] - k*d.grav[0], d.fwd[1] - k*d.grav[1], d.fwd[2] - k*d.grav[2]}
	if n := math.Sqrt(dot(d.fh, d.fh)); n > 0.1 {
		d.fh = [3]float64{d.fh[0] / n, d.fh[1] / n, d.fh[2] / n}
	} else {
		d.fh = [3]float64{}
	}
}

func (d *Detector) freeFall(t int64, a2 float64) {
	if a2 < d.ff2 {
		if !d.inFF {
			d.inFF, d.ffStart = true, t
		}
		d.ffLast = t
		if !d.ffCounted && t-d.ffStart >= d.ffMin {
			// Weightless long enough: the device may have left its mount.
			d.ffCounted, d.calibrated, d.calRunning = true, false, false
		}
		return
	}
	if d.inFF && d.ffCounted {
		d.ffValid, d.ffBegin, d.ffEnd = true, d.ffStart, d.ffLast
	}
	d.inFF, d.ffCounted = false, false
}

// calibrate averages the acceleration over CalibrationTime of stable riding
// (every sample vibrating, the window's mean near 1 g and barely turning)
// and takes its direction as upright.
func (d *Detector) calibrate(t int64, a, w [3]float64) {
	if d.calibrated {
		return
	}
	lp2 := dot(d.lp, d.lp)
	if d.vib < d.vib2 || lp2 < (1-calSampleTolG)*(1-calSampleTolG) || lp2 > (1+calSampleTolG)*(1+calSampleTolG) {
		d.calRunning = false
		return
	}
	if !d.calRunning {
		d.calRunning, d.calStart, d.calN = true, t, 0
		d.calA, d.calW = [3]float64{}, [3]float64{}
	}
	d.calN++
	for i := range 3 {
		d.calA[i] += a[i]
		d.calW[i] += w[i]
	}
	if t-d.calStart < d.calTime {
		return
	}
	d.calRunning = false
	m := math.Sqrt(dot(d.calA, d.calA)) / d.calN
	if math.Abs(m-1) > d.cfg.CalibrationTolG || dot(d.calW, d.calW)/(d.calN*d.calN) > d.calGyro2 {
		return
	}
	n := m * d.calN
	d.up = [3]float64{d.calA[0] / n, d.calA[1] / n, d.calA[2] / n}
	d.hasUp, d.calibrated = true, true
	d.grav = d.up
	d.braking = false
}

func (d *Detector) impactStep(t int64, a2 float64) (Detection, bool) {
	if a2 >= d.width2 {
		if !d.inRun {
			d.inRun, d.runStart, d.runPeak2 = true, t, 0
		}
		d.runPeak2 = max(d.runPeak2, a2)
		if !d.impact && d.runPeak2 >= d.impact2 && t-d.runStart >= d.minWidth {
			d.impact, d.impactStart = true, d.runStart
			d.impactFall = d.ffValid && d.runStart-d.ffEnd <= d.ffGap
			d.ffOfImp = d.ffBegin
		}
	} else {
		d.inRun = false
	}
	if !d.impact {
		return Detection{}, false
	}
	if !d.rotSeen || d.lastRot < d.impactStart-d.rotWindow {
		if t-d.impactStart > d.impactWait {
			d.impact = false // a jolt that did not turn the rider
		}
		return Detection{}, false
	}
	d.impact = false
	kind, start := Crash, d.impactStart
	if d.impactFall {
		kind, start = Fall, d.ffOfImp
	}
	det, ok := d.detect(t, kind, safetyv1.Severity_SEVERITY_HIGH, start)
	if ok {
		d.pending, d.stilling, d.pend, d.pendAt = true, false, det, t
		d.pendA2, d.pendW2 = d.peakA2, d.peakW2
	}
	return det, ok
}

// fallStep runs the body profile's fall stage: a candidate impact whose
// bodyPost has elapsed is measured and scored, and raised as a fall when
// the model says so. Its episode runs from the impact's peak.
func (d *Detector) fallStep(t int64, a [3]float64, am, wm float64) (Detection, bool) {
	p := d.body.push(t, a, am, wm)
	if p < 0 {
		return Detection{}, false
	}
	var f [nFeatures]float64
	before := d.body.features(p, &f)
	if fallScore(&f) <= 0 {
		return Detection{}, false
	}
	det, ok := d.detect(t, Fall, safetyv1.Severity_SEVERITY_HIGH, d.body.at(p).t)
	if ok {
		d.pending, d.stilling, d.pend, d.pendAt = true, false, det, t
		d.pendA2, d.pendW2 = d.peakA2, d.peakW2
		d.ref, d.hasRef = before, true
	}
	return det, ok
}

// recoverStep follows the posture after a crash or fall: held within
// recoverTiltDeg of upright for RecoverHold, the wearer is back up, which
// ends the incident (its refractory period and any pending upgrade).
// Upright is the posture before the fall (body) or the calibrated upright
// (bike).
func (d *Detector) recoverStep(t int64) {
	d.uprightNow = false
	if d.lastRank != rank(Crash) || d.recovered {
		return
	}
	ref, ok := d.ref, d.hasRef
	if d.cfg.Profile == ProfileBike {
		ref, ok = d.up, d.calibrated
	}
	n := math.Sqrt(dot(d.pose, d.pose))
	d.uprightNow = ok && n > gravityLo && n < gravityHi && dot(d.pose, ref) >= d.cosRecover*n
	if !d.uprightNow {
		d.uprightRun = false
		return
	}
	if !d.uprightRun {
		d.uprightRun, d.uprightFrom = true, t
	}
	if t-d.uprightFrom >= d.recoverHold {
		d.recovered, d.pending = true, false
	}
}

func (d *Detector) tipoverStep(t int64) (Detection, bool) {
	if !d.calibrated {
		d.tilting = false
		return Detection{}, false
	}
	if !d.hasTilt { // a jolt: the tilt is unknown, the hold goes on
		return Detection{}, false
	}
	switch {
	case d.tilting && d.tiltCos < d.cosTiltHold:
	case !d.tilting && d.tiltCos < d.cosTilt:
		d.tilting, d.tiltStart, d.tiltDone = true, t, false
	default:
		d.tilting = false
		return Detection{}, false
	}
	if d.tiltDone || t-d.tiltStart < d.tiltHold {
		return Detection{}, false
	}
	d.tiltDone = true
	return d.detect(t, Tipover, safetyv1.Severity_SEVERITY_MEDIUM, d.tiltStart)
}

func (d *Detector) brakeStep(t int64) (Detection, bool) {
	if !d.calibrated {
		return Detection{}, false
	}
	// Deceleration is the specific force backwards along the forward axis
	// made horizontal against the gravity estimate, which follows the
	// rider's lean through the gyro: bending over or rolling into a corner
	// does not read as braking, while braking turns nobody.
	upright := d.fh != [3]float64{} && dot(d.grav, d.up) >= d.cosBrakeTilt
	decel := -dot(d.lp, d.fh)
	switch {
	case d.braking && upright && decel >= 0.8*d.cfg.HardBrakeG:
	case !d.braking && upright && decel >= d.cfg.HardBrakeG:
		d.braking, d.brakeStart, d.brakeDone = true, t, false
	default:
		d.braking = false
		return Detection{}, false
	}
	if d.brakeDone || t-d.brakeStart < d.brakeHold {
		return Detection{}, false
	}
	d.brakeDone = true
	return d.detect(t, HardBrake, safetyv1.Severity_SEVERITY_LOW, d.brakeStart)
}

// stillStep upgrades a pending crash or fall to CRITICAL when the device
// comes to rest: gravity only, not turning, no riding vibration.
func (d *Detector) stillStep(t int64, a2, w2, lp2 float64) (Detection, bool) {
	if !d.pending {
		return Detection{}, false
	}
	d.pendA2, d.pendW2 = max(d.pendA2, a2), max(d.pendW2, w2)
	// On the body, resting upright (standing after stairs) is no lying
	// still.
	still := lp2 >= d.stillLo2 && lp2 <= d.stillHi2 && w2 < d.stillGyro2 && d.vib < d.vib2 &&
		!(d.cfg.Profile == ProfileBody && d.uprightNow)
	if !still {
		d.stilling = false
		if t-d.pendAt > d.stillWithin {
			d.pending = false
		}
		return Detection{}, false
	}
	if !d.stilling {
		d.stilling, d.stillStart = true, t
	}
	if t-d.stillStart < d.stillHold {
		return Detection{}, false
	}
	d.pending = false
	up := d.pend
	up.Severity = safetyv1.Severity_SEVERITY_CRITICAL
	up.PeakAccelG, up.PeakGyroDPS = math.Sqrt(d.pendA2), math.Sqrt(d.pendW2)
	up.TiltDeg = d.tiltDeg()
	up.Duration += time.Duration(t - d.pendAt)
	up.At = d.now
	up.Loc = d.location()
	return up, true
}

// detect builds a detection unless the refractory period of an earlier
// one of the same or a higher rank covers it. A crash or fall after the
// wearer was back up (recoverStep) is a new incident.
func (d *Detector) detect(t int64, k Kind, sev safetyv1.Severity, start int64) (Detection, bool) {
	r := rank(k)
	if d.lastRank > 0 && r <= d.lastRank && t-d.lastAt < d.refractory && !(r == rank(Crash) && d.recovered) {
		return Detection{}, false
	}
	d.lastRank, d.lastAt = r, t
	d.recovered, d.uprightRun, d.hasRef = false, false, false
	return Detection{
		EventID:     kindName(k) + "-" + strconv.FormatInt(t, 10),
		Kind:        k,
		Severity:    sev,
		PeakAccelG:  math.Sqrt(d.peakA2),
		PeakGyroDPS: math.Sqrt(d.peakW2),
		TiltDeg:     d.tiltDeg(),
		Duration:    time.Duration(t - start),
		At:          d.now,
		Loc:         d.location(),
	}, true
}

func (d *Detector) tiltDeg() float64 {
	if !d.hasUp || d.lpNorm == 0 {
		return 0
	}
	c := dot(d.lp, d.up) / d.lpNorm
	return math.Acos(max(-1, min(1, c))) * 180 / math.Pi
}

func (d *Detector) location() *Location {
	if !d.hasLoc {
		return nil
	}
	l := d.loc
	return &l
}

func dot(a, b [3]float64) float64 { return a[0]*b[0] + a[1]*b[1] + a[2]*b[2] }

func unitVec(v [3]float64) [3]float64 {
	n := math.Sqrt(dot(v, v))
	if n == 0 {
		return v
	}
	return [3]float64{v[0] / n, v[1] / n, v[2] / n}
}
