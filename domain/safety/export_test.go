package safety

import (
	"math"
	"time"
)

// NFeatures is the length of a body candidate's feature vector.
const NFeatures = nFeatures

// Candidate is a candidate impact of the body profile's fall stage.
type Candidate struct {
	Peak, At time.Time // the peak and the deciding sample
	F        [nFeatures]float64
}

// Candidates runs the body fall stage alone over samples and returns every
// candidate impact it measured, whatever the model would decide.
func Candidates(samples []Sample) []Candidate {
	var b bodyStage
	var out []Candidate
	for _, s := range samples {
		a2, w2 := dot(s.Accel, s.Accel), dot(s.Gyro, s.Gyro)
		if p := b.push(s.T.UnixNano(), s.Accel, math.Sqrt(a2), math.Sqrt(w2)); p >= 0 {
			var c Candidate
			b.features(p, &c.F)
			c.Peak, c.At = time.Unix(0, b.at(p).t).UTC(), s.T
			out = append(out, c)
		}
	}
	return out
}

// FallScore is the shipped fall model's log-odds for a candidate's features.
func FallScore(f [nFeatures]float64) float64 { return fallScore(&f) }
