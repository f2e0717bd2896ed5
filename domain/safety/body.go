package safety

import "math"

// The body profile's fall stage. A waist-worn device sees daily life that
// a threshold cannot tell from a fall: a jog lands at 4–9 g and turns the
// trunk past 180°/s on every stride, while a fall onto a mat or from a
// chair stays under 3 g. What does tell them apart is the whole episode
// around the impact: how the trunk dropped before it, how it turned, and
// above all what came after: a faller ends up lying, or at least in a
// posture far from the one before, and stops moving, while a jogger,
// stair climber or jumper carries on upright.
//
// So the stage keeps the last few seconds of samples. Every peak of |a|
// of at least bodyTriggerG that nothing exceeds within bodyDominance after
// it is a candidate impact (every SisFall fall peaks above 1.7 g, and a
// trip's first jolt gives way to the landing that follows). At the first
// sample bodyPost after the peak, the deciding sample, the stage measures
// the episode from bodyPre before the peak to bodyPost after it
// (features) and a small model learnt on SisFall decides (fallScore).
// Waiting 2 s lets the posture after the impact settle; 1.5 s cost 0.3
// points of cross-validated sensitivity, 3 s gained nothing.
const (
	bodyTriggerG  = 1.6
	bodyDominance = 1e9     // ns
	bodyPre       = 3e9     // ns of history before the peak the features read
	bodyPost      = 2e9     // ns from the peak to the deciding sample
	ringSize      = 1 << 10 // > bodyPre+bodyPost at up to ~200 Hz
)

// nFeatures is the length of the feature vector (see features).
const nFeatures = 16

type ringSample struct {
	t     int64
	a     [3]float64
	am, w float64 // |a| in g, |ω| in °/s
}

type bodyStage struct {
	ring [ringSize]ringSample
	n    int // samples written; the latest is ring[(n-1)&(ringSize-1)]

	open   bool   // a candidate peak still within bodyDominance of the latest sample
	candN  int    // its sample number
	queue  [4]int // peaks past their dominance, awaiting bodyPost
	queued int
}

func (b *bodyStage) reset() {
	b.n, b.open, b.queued = 0, false, 0
}

func (b *bodyStage) at(i int) *ringSample { return &b.ring[i&(ringSize-1)] }

// push records a sample and returns the sample number of a candidate peak
// whose bodyPost has elapsed, or -1.
func (b *bodyStage) push(t int64, a [3]float64, am, w float64) int {
	*b.at(b.n) = ringSample{t: t, a: a, am: am, w: w}
	b.n++
	i := b.n - 1
	if am >= bodyTriggerG {
		if !b.open || am > b.at(b.candN).am {
			b.open, b.candN = true, i
		}
	}
	if b.open && t-b.at(b.candN).t > bodyDominance {
		b.open = false
		if b.queued == len(b.queue) { // cannot happen with bodyDominance ≥ bodyPost/3
			copy(b.queue[:], b.queue[1:])
			b.queued--
		}
		b.queue[b.queued] = b.candN
		b.queued++
	}
	if b.queued > 0 && (b.n-b.queue[0] >= ringSize || t-b.at(b.queue[0]).t >= bodyPost) {
		p := b.queue[0]
		copy(b.queue[:], b.queue[1:])
		b.queued--
		if b.n-p < ringSize { // else overwritten: samples far faster than 100 Hz
			return p
		}
	}
	return -1
}

// window returns the mean vector, mean |a|, std |a|, mean |ω| and count
// of the samples from peak time + from to + to (ns).
func (b *bodyStage) window(p int, from, to int64) (mean [3]float64, am, sd, w float64, n float64) {
	tp := b.at(p).t
	lo := max(0, b.n-ringSize+1)
	var s2 float64
	for i := p; i >= lo && i < b.n; {
		s := b.at(i)
		dt := s.t - tp
		if from < 0 && dt < from || from >= 0 && dt > to {
			break
		}
		if dt >= from && dt <= to {
			for k := range 3 {
				mean[k] += s.a[k]
			}
			am += s.am
			s2 += s.am * s.am
			w += s.w
			n++
		}
		if from < 0 {
			i--
		} else {
			i++
		}
	}
	if n == 0 {
		return mean, 1, 0, 0, 0
	}
	for k := range 3 {
		mean[k] /= n
	}
	am /= n
	w /= n
	sd = math.Sqrt(max(0, s2/n-am*am))
	return
}

func angleDeg(u, v [3]float64) float64 {
	nu, nv := math.Sqrt(dot(u, u)), math.Sqrt(dot(v, v))
	if nu == 0 || nv == 0 {
		return 0
	}
	return math.Acos(max(-1, min(1, dot(u, v)/(nu*nv)))) * 180 / math.Pi
}

// features measures the episode around candidate peak p (time tp) into
// f, and returns the posture before it (a unit vector). Postures are mean
// accelerations: before is tp−3 s to tp−1.2 s, after is tp+1 s to
// tp+bodyPost. In order:
//
// A recording that began less than 1.2 s before the peak takes its first
// sample as the posture before.
//
//	 0 the peak |a| (g)
//	 1 the angle between the postures before and after (°)
//	 2 the angle of the posture after from the device's +z (°): the
//	   trunk lying or upright, for a device worn upright at the waist
//	 3 the same for the posture before (°)
//	 4 the lowest |a| in the second before the peak (g): free fall
//	 5 ∫(|a|−1) dt over that second (g·s): velocity gained falling
//	 6 ∫(a·up−1) dt over that second, up the posture before (g·s)
//	 7 the largest |ω| from tp−1 s to tp+0.5 s (°/s)
//	 8 the standard deviation of |a| after (g): still or still moving
//	 9 the mean |ω| after (°/s)
//	10 the standard deviation of |a| from tp−3 s to tp−1.2 s (g): the
//	   activity before
//	11 ∫max(0, |a|−1) dt within 0.2 s of the peak (g·s): the impact's
//	   energy
//	12 the mean |a| after (g)
//	13 ∫|ω| dt from tp−1 s to tp+1 s (°): how far the trunk turned
//	14 the largest |a| from tp+0.3 s to tp+bodyPost (g): further
//	   impacts, or strides
//	15 the magnitude of the posture after (g): near 1 when still
func (b *bodyStage) features(p int, f *[nFeatures]float64) [3]float64 {
	const s = 1e9
	pk := b.at(p)
	tp := pk.t
	pre, _, preSD, _, n := b.window(p, -bodyPre, -1.2*s)
	if n == 0 { // the recording began less than 1.2 s before the peak
		pre = b.at(max(0, b.n-ringSize+1)).a
	}
	post, postAm, postSD, postW, _ := b.window(p, 1*s, bodyPost)
	z := [3]float64{0, 0, 1}
	preU := unitVec(pre)

	// Just before the impact: the lowest |a|, the velocity lost to the
	// ground along the pre-impact vertical and in magnitude, the largest
	// rotation; over the episode: how far the trunk turned.
	minA, vMag, vVert, maxW, turn := math.Inf(1), 0.0, 0.0, 0.0, 0.0
	lo := max(0, b.n-ringSize+1)
	for i := p; i > lo; i-- {
		c, q := b.at(i), b.at(i-1)
		if tp-c.t > 1*s {
			break
		}
		dt := float64(c.t-q.t) * 1e-9
		minA = min(minA, c.am)
		vMag += (c.am - 1) * dt
		vVert += (dot(c.a, preU) - 1) * dt
	}
	if math.IsInf(minA, 1) {
		minA = pk.am
	}
	var secondPeak, energy float64
	for i := max(lo+1, p); i < b.n; i++ {
		c := b.at(i)
		d := c.t - tp
		dt := float64(c.t-b.at(i-1).t) * 1e-9
		if d <= s/2 {
			maxW = max(maxW, c.w)
		}
		if d <= s {
			turn += c.w * dt
		}
		if d >= 300e6 {
			secondPeak = max(secondPeak, c.am)
		}
		if d <= 200e6 {
			energy += max(0, c.am-1) * dt
		}
	}
	for i := p - 1; i > lo; i-- {
		c := b.at(i)
		d := tp - c.t
		if d > s {
			break
		}
		dt := float64(c.t-b.at(i-1).t) * 1e-9
		maxW = max(maxW, c.w)
		turn += c.w * dt
		if d <= 200e6 {
			energy += max(0, c.am-1) * dt
		}
	}
	*f = [nFeatures]float64{
		pk.am,
		angleDeg(pre, post),
		angleDeg(post, z),
		angleDeg(pre, z),
		minA,
		vMag,
		vVert,
		maxW,
		postSD,
		postW,
		preSD,
		energy,
		postAm,
		turn,
		secondPeak,
		math.Sqrt(dot(post, post)),
	}
	return preU
}

// fallTree is a complete regression tree of depth fallDepth in heap
// order: node k's children are 2k+1 (feature ≤ threshold) and 2k+2.
type fallTree struct {
	feature   [1<<fallDepth - 1]uint8
	threshold [1<<fallDepth - 1]float64
	leaf      [1 << fallDepth]float64
}

// fallScore returns the log-odds that the episode measured in f is a
// fall; the detector raises a fall above 0.
func fallScore(f *[nFeatures]float64) float64 {
	s := float64(fallBase)
	for i := range fallTrees {
		t := &fallTrees[i]
		k := 0
		for k < len(t.feature) {
			if f[t.feature[k]] <= t.threshold[k] {
				k = 2*k + 1
			} else {
				k = 2*k + 2
			}
		}
		s += t.leaf[k-len(t.feature)]
	}
	return s
}
