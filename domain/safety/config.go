package safety

import (
	"fmt"
	"strconv"
	"time"
)

// Config holds the detector's thresholds. Accelerations are in g (the
// magnitude of the specific force a body-worn accelerometer reads: 1 g at
// rest, 0 g in free fall), angular rates in degrees per second, durations
// measured between sample timestamps (a run of n samples at 100 Hz spans
// (n-1)×10 ms). BikeConfig documents each default and where it comes
// from; "ours" marks a choice made here from the physics rather than a
// figure from the literature. The body profile's fall stage is learnt
// (fallmodel.go): of these fields it uses only Profile, the stillness
// fields, Refractory and RecoverHold.
type Config struct {
	// Profile is where the device is worn, which selects the stages that
	// run (see Profile).
	Profile Profile
	// ImpactG is the peak a crash or fall impact must reach.
	ImpactG float64
	// ImpactWidthG is the level above which an impact's duration is measured.
	ImpactWidthG float64
	// ImpactMinWidth is how long the acceleration must stay above
	// ImpactWidthG for the impact to be a body's, not a light object's.
	ImpactMinWidth time.Duration
	// FreeFallG is the level below which the device is weightless.
	FreeFallG float64
	// FreeFallMin is how long weightlessness must last to count as a fall.
	FreeFallMin time.Duration
	// FreeFallGap is the longest time from the end of a free fall to the
	// start of the impact for the two to make one fall.
	FreeFallGap time.Duration
	// RotationDPS is the angular rate that corroborates an impact.
	RotationDPS float64
	// RotationWindow is how long before an impact's start the rotation may
	// have been seen.
	RotationWindow time.Duration
	// ImpactWait is how long after an impact's start the detector waits
	// for the rotation before dismissing the impact as a jolt.
	ImpactWait time.Duration
	// TiltDeg is the tilt from the calibrated upright that means the bike
	// (and the rider) went down.
	TiltDeg float64
	// TiltHold is how long the tilt must be held.
	TiltHold time.Duration
	// CalibrationTime is the length of the stable-riding window that
	// calibrates the upright.
	CalibrationTime time.Duration
	// CalibrationTolG is how far the window's mean acceleration magnitude
	// may be from 1 g.
	CalibrationTolG float64
	// CalibrationMaxDPS is the largest mean angular rate of the window.
	CalibrationMaxDPS float64
	// RidingVibrationG is the RMS vibration (road and engine) that tells a
	// device on a moving vehicle from one lying still.
	RidingVibrationG float64
	// StillTolG is how far from 1 g the filtered acceleration may be while
	// still.
	StillTolG float64
	// StillMaxDPS is the largest angular rate while still.
	StillMaxDPS float64
	// StillHold is how long stillness must last to upgrade an impact to
	// critical.
	StillHold time.Duration
	// StillWithin is how soon after an impact's detection stillness must
	// begin.
	StillWithin time.Duration
	// HardBrakeG is the deceleration along the direction of travel that is
	// hard braking.
	HardBrakeG float64
	// HardBrakeHold is how long the deceleration must be sustained.
	HardBrakeHold time.Duration
	// BrakeMaxTiltDeg is the largest tilt of the gravity estimate from the
	// calibrated upright at which braking is judged (a device lying on the
	// ground reads gravity on its forward axis).
	BrakeMaxTiltDeg float64
	// Forward is the direction of travel in the device frame when mounted.
	// It must not be parallel to gravity: the detector measures braking
	// along its part perpendicular to gravity.
	Forward [3]float64
	// Refractory is how long after a detection the detector raises no
	// detection of the same or a lower rank (hard brake < tipover <
	// crash = fall), so one incident raises one detection. A crash or fall
	// ends it early once the wearer has been upright again for
	// RecoverHold: what follows is a new incident, so an alarm, false or
	// not, never swallows a later fall.
	Refractory time.Duration
	// RecoverHold is how long the posture (the acceleration averaged over
	// about half a second) must stay within 30° of upright for the wearer
	// to count as back up after a crash or fall. Upright is the posture
	// before the impact (body) or the calibrated upright (bike; without
	// one, the refractory period runs its course).
	RecoverHold time.Duration
}

// Profile says where the device is: on the rider's body (walking, at
// the waist or trunk) or on the bike. A rider's device is on the body
// when walking and on the bike when riding.
type Profile int

const (
	// ProfileBody detects falls of a person on foot, and only falls: each
	// impact is judged on the episode around it by a model learnt on
	// real recordings (see fallScore); stillness after a fall upgrades it
	// to CRITICAL. Crash, tipover and hard-brake thresholds are not used:
	// running, stairs, jumps and sitting down hard pass them many times a
	// day.
	ProfileBody Profile = iota
	// ProfileBike detects crash, fall, tipover and hard braking on a
	// motorbike from the thresholds below.
	ProfileBike
)

// String returns "body" or "bike".
func (p Profile) String() string {
	switch p {
	case ProfileBody:
		return "body"
	case ProfileBike:
		return "bike"
	}
	return "Profile(" + strconv.Itoa(int(p)) + ")"
}

// ParseProfile reads "body" or "bike".
func ParseProfile(s string) (Profile, error) {
	switch s {
	case "body":
		return ProfileBody, nil
	case "bike":
		return ProfileBike, nil
	}
	return 0, fmt.Errorf("profile %q: want body or bike", s)
}

// Config returns the profile's defaults: BodyConfig or BikeConfig.
func (p Profile) Config() Config {
	if p == ProfileBike {
		return BikeConfig()
	}
	return BodyConfig()
}

// DefaultConfig returns BodyConfig: a device carried by a person on foot.
func DefaultConfig() Config { return BodyConfig() }

// BodyConfig returns the body profile: falls only, judged by the learnt
// model; stillness after a fall (StillTolG, StillMaxDPS, StillHold within
// StillWithin, RidingVibrationG) upgrades it to CRITICAL; Refractory 30 s,
// RecoverHold 2 s (a jogger who raised a false alarm is upright again two
// seconds after it is decided). The other thresholds are BikeConfig's and
// unused. On the SisFall development split, cross-validated by subject:
// sensitivity 0.991, specificity 0.996 (see TestFallModel).
func BodyConfig() Config {
	c := BikeConfig()
	c.Profile = ProfileBody
	c.RecoverHold = 2 * time.Second
	return c
}

// BikeConfig returns the bike profile's documented defaults:
//
//	field              default   source
//	ImpactG            3 g       trunk-worn fall studies put the impact ("upper fall")
//	                             threshold at about 3–3.5 g: peaks of daily activities
//	                             stay below it, falls exceed it (Bourke, O'Brien &
//	                             Lyons 2007, Gait & Posture 26:194). Not so for
//	                             SisFall's jogging, quick stairs, stumbles and
//	                             jumps: hence the body profile's learnt stage
//	ImpactWidthG       2 g       ours: above riding vibration and potholes' base,
//	                             two thirds of ImpactG
//	ImpactMinWidth     20 ms     ours, physics: contact lasts ~π·√(m/k); a body
//	                             landing on soft tissue decelerates over 50–150 ms,
//	                             a ~200 g phone on a road over 1–5 ms, which a
//	                             100 Hz sensor sees in one or two samples. 20 ms is
//	                             three consecutive samples at 100 Hz
//	FreeFallG          0.4 g     the "lower fall threshold" of the same studies is
//	                             about 0.4–0.6 g; accelerometer free-fall interrupts
//	                             use a few tenths of a g
//	FreeFallMin        80 ms     ours: 80 ms of free fall is a 3 cm drop
//	                             (½·g·t²), longer than any suspension or
//	                             vibration dip
//	FreeFallGap        500 ms    ours: a body leaving its support 1.2 m up lands
//	                             within 0.5 s, and the impact follows weightlessness
//	                             at once
//	RotationDPS        180°/s    trunk angular-rate fall threshold of about 3 rad/s
//	                             (Bourke & Lyons 2008, Med Eng Phys 30:84)
//	RotationWindow     1 s       ours
//	ImpactWait         500 ms    ours
//	TiltDeg            65°       motorcycle bank-angle (tip-over) sensors cut the
//	                             engine past roughly 60–70° of lean; road riding
//	                             leans stay under ~50°. A trunk more than ~60° from
//	                             vertical is "lying" in posture studies (Kangas et
//	                             al. 2008, Gait & Posture 28:285)
//	TiltHold           2 s       ours: tip-over sensors also wait before acting,
//	                             so a momentary lean does not trip them
//	CalibrationTime    3 s       ours ("the first seconds of stable riding")
//	CalibrationTolG    0.05 g    ours: a sustained 0.32 g speed change fails it
//	CalibrationMaxDPS  5°/s      ours: straight riding; a 10° lean at 15 m/s
//	                             already turns at ~7°/s
//	RidingVibrationG   0.02 g    ours: an order of magnitude above MEMS
//	                             accelerometer noise (~0.002–0.004 g RMS at
//	                             100 Hz), below two-wheeler ride vibration
//	                             (≥ 0.05 g RMS)
//	StillTolG          0.1 g     after the impact the device lies still, the
//	StillMaxDPS        10°/s     inactivity check of threshold fall detectors
//	StillHold          2 s       (AN-1023: weightlessness, impact, then about 2 s
//	                             without motion); the tolerances are ours
//	StillWithin        10 s      ours: sliding and tumbling end within seconds
//	HardBrakeG         0.5 g     naturalistic driving studies flag ≥ 0.5–0.6 g
//	                             longitudinal deceleration as hard or emergency
//	                             braking (the 100-Car study, Dingus et al. 2006,
//	                             uses 0.6 g for cars); motorcycle service braking
//	                             stays around 0.2–0.4 g. Once started, a brake
//	                             continues while above 0.8×HardBrakeG
//	HardBrakeHold      300 ms    ours: longer than a pothole's or a kerb's
//	                             longitudinal jolt (< 100 ms)
//	BrakeMaxTiltDeg    45°       ours: a device lying on the road is ~90° from
//	                             upright; a rider leant past 45° is cornering at
//	                             1 g or more and has no grip left to brake hard
//	Forward            +x        the device's mounting
//	Refractory         30 s      ours
//	RecoverHold        5 s       ours: longer than the gaps between one
//	                             crash's impacts
func BikeConfig() Config {
	return Config{
		Profile:           ProfileBike,
		ImpactG:           3,
		ImpactWidthG:      2,
		ImpactMinWidth:    20 * time.Millisecond,
		FreeFallG:         0.4,
		FreeFallMin:       80 * time.Millisecond,
		FreeFallGap:       500 * time.Millisecond,
		RotationDPS:       180,
		RotationWindow:    time.Second,
		ImpactWait:        500 * time.Millisecond,
		TiltDeg:           65,
		TiltHold:          2 * time.Second,
		CalibrationTime:   3 * time.Second,
		CalibrationTolG:   0.05,
		CalibrationMaxDPS: 5,
		RidingVibrationG:  0.02,
		StillTolG:         0.1,
		StillMaxDPS:       10,
		StillHold:         2 * time.Second,
		StillWithin:       10 * time.Second,
		HardBrakeG:        0.5,
		HardBrakeHold:     300 * time.Millisecond,
		BrakeMaxTiltDeg:   45,
		Forward:           [3]float64{1, 0, 0},
		Refractory:        30 * time.Second,
		RecoverHold:       5 * time.Second,
	}
}
