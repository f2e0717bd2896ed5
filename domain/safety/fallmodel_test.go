package safety_test

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/tideline/tideline/domain/safety"
)

// The body profile's fall model is trained here on the SisFall development
// split (A. Sucerquia, J. D. López, J. F. Vargas-Bonilla, "SisFall: A Fall
// and Movement Dataset", Sensors 17(1):198, 2017): gradient-boosted
// regression trees of depth fallDepth over the candidate impacts' features
// (safety.Candidates), logistic loss. `go test ./domain/safety/ -run
// TestFallModel -update-fall-model` rewrites fallmodel.go from every dev
// subject; without the flag the test cross-validates the same training by
// subject, which is the figure that estimates unseen people.

var updateFallModel = flag.Bool("update-fall-model", false, "retrain the body fall model on the SisFall dev split and rewrite fallmodel.go")

const (
	fallDepth    = 2
	fallTrees    = 60
	fallRate     = 0.2
	fallLambda   = 1.0 // L2 on leaf values
	fallBins     = 32  // split candidates per feature: quantiles of the training set
	fallMinHess  = 0.05
	fallSubjects = 18
)

// example is one candidate impact with its trial and label.
type example struct {
	tr    *trial
	f     [safety.NFeatures]float64
	label int // 1: the trial's fall impact; 0: daily life, or walking well before a fall; -1: around a fall, not its impact
}

var (
	examplesOnce sync.Once
	examplesAll  []example
)

// examples computes every trial's candidates once per test process, two
// trials at a time.
func examples(tb testing.TB) []example {
	trials := sisfall(tb)
	examplesOnce.Do(func() {
		per := make([][]example, len(trials))
		parallel(len(trials), func(i int) {
			tr := trials[i]
			s := make([]safety.Sample, len(tr.rows))
			for j := range s {
				s[j] = tr.sample(j)
			}
			impact := s[tr.impact()].T
			for _, c := range safety.Candidates(s) {
				label := 0
				switch {
				case !tr.fall:
				case c.Peak.Equal(impact):
					label = 1
				case c.Peak.Sub(impact).Seconds() >= -3:
					label = -1
				}
				per[i] = append(per[i], example{tr: tr, f: c.F, label: label})
			}
		})
		for _, p := range per {
			examplesAll = append(examplesAll, p...)
		}
	})
	return examplesAll
}

// parallel runs f(0..n-1) on two goroutines (the CI machine has two cores).
func parallel(n int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// tree is a complete regression tree of depth fallDepth in heap order.
type tree struct {
	feature   [1<<fallDepth - 1]int
	threshold [1<<fallDepth - 1]float64
	leaf      [1 << fallDepth]float64
}

type model struct {
	base  float64
	trees []tree
}

func (m *model) score(f *[safety.NFeatures]float64) float64 {
	s := m.base
	for i := range m.trees {
		t := &m.trees[i]
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

// train fits the model to the labelled (0 or 1) examples.
func train(ex []example) model {
	var data []*example
	for i := range ex {
		if ex[i].label >= 0 {
			data = append(data, &ex[i])
		}
	}
	n := len(data)
	// Split candidates: quantiles of each feature; bin[i][j] is the
	// number of cuts below example i's feature j.
	var cuts [safety.NFeatures][]float64
	bin := make([][safety.NFeatures]uint8, n)
	for j := range safety.NFeatures {
		v := make([]float64, n)
		for i, e := range data {
			v[i] = e.f[j]
		}
		sort.Float64s(v)
		for q := 1; q < fallBins; q++ {
			if c := v[q*n/fallBins]; len(cuts[j]) == 0 || c > cuts[j][len(cuts[j])-1] {
				cuts[j] = append(cuts[j], c)
			}
		}
		for i, e := range data {
			bin[i][j] = uint8(sort.SearchFloat64s(cuts[j], e.f[j])) // cuts[j][b-1] < x ≤ cuts[j][b]
		}
	}
	pos := 0
	for _, e := range data {
		pos += e.label
	}
	m := model{base: math.Log(float64(pos) / float64(n-pos))}
	score := make([]float64, n)
	g, h := make([]float64, n), make([]float64, n)
	for i := range score {
		score[i] = m.base
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	for range fallTrees {
		for i, e := range data {
			p := 1 / (1 + math.Exp(-score[i]))
			g[i], h[i] = p-float64(e.label), p*(1-p)
		}
		var t tree
		grow(&t, 0, all, bin, &cuts, g, h)
		for i, e := range data {
			score[i] += (&model{trees: []tree{t}}).score(&e.f)
		}
		m.trees = append(m.trees, t)
	}
	return m
}

// grow fills node k of t from the examples idx: the best split by the
// second-order gain, or, where none helps, a split that sends all left.
func grow(t *tree, k int, idx []int, bin [][safety.NFeatures]uint8, cuts *[safety.NFeatures][]float64, g, h []float64) {
	var G, H float64
	for _, i := range idx {
		G, H = G+g[i], H+h[i]
	}
	if k >= len(t.feature) {
		t.leaf[k-len(t.feature)] = -fallRate * G / (H + fallLambda)
		return
	}
	best, bf, bb := 0.0, -1, 0
	parent := G * G / (H + fallLambda)
	for j := range safety.NFeatures {
		var hg, hh [fallBins]float64
		for _, i := range idx {
			hg[bin[i][j]] += g[i]
			hh[bin[i][j]] += h[i]
		}
		var gl, hl float64
		for b := range len(cuts[j]) { // left: bins 0..b, i.e. x ≤ cuts[j][b]
			gl, hl = gl+hg[b], hl+hh[b]
			gr, hr := G-gl, H-hl
			if hl < fallMinHess || hr < fallMinHess {
				continue
			}
			if gain := gl*gl/(hl+fallLambda) + gr*gr/(hr+fallLambda) - parent; gain > best {
				best, bf, bb = gain, j, b
			}
		}
	}
	if bf < 0 {
		t.feature[k], t.threshold[k] = 0, math.MaxFloat64
		grow(t, 2*k+1, idx, bin, cuts, g, h)
		grow(t, 2*k+2, nil, bin, cuts, g, h)
		return
	}
	var l, r []int
	for _, i := range idx {
		if int(bin[i][bf]) <= bb {
			l = append(l, i)
		} else {
			r = append(r, i)
		}
	}
	t.feature[k], t.threshold[k] = bf, cuts[bf][bb]
	grow(t, 2*k+1, l, bin, cuts, g, h)
	grow(t, 2*k+2, r, bin, cuts, g, h)
}

// source renders the model as fallmodel.go.
func (m *model) source() ([]byte, error) {
	var b bytes.Buffer
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	b.WriteString(`// Code generated by go test ./domain/safety/ -run TestFallModel -update-fall-model; DO NOT EDIT.

package safety

// The body profile's fall model: gradient-boosted regression trees learnt
// on the SisFall development split (every trial of subjects SA01–SA12,
// SE01–SE05, SE07), from A. Sucerquia, J. D. López, J. F. Vargas-Bonilla,
// "SisFall: A Fall and Movement Dataset", Sensors 17(1):198, 2017,
// doi:10.3390/s17010198. fallScore sums fallBase and one leaf of each
// tree: the log-odds that a candidate impact is a fall.
`)
	fmt.Fprintf(&b, "\nconst fallDepth = %d\n\nconst fallBase = %s\n\nvar fallTrees = [...]fallTree{\n", fallDepth, f(m.base))
	for _, t := range m.trees {
		b.WriteString("\t{feature: [...]uint8{")
		for i, x := range t.feature {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Itoa(x))
		}
		b.WriteString("}, threshold: [...]float64{")
		for i, x := range t.threshold {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(f(x))
		}
		b.WriteString("}, leaf: [...]float64{")
		for i, x := range t.leaf {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(f(x))
		}
		b.WriteString("}},\n")
	}
	b.WriteString("}\n")
	return format.Source(b.Bytes())
}

// candOutcome is a trial's result under a scorer: how many candidates
// scored above 0 and, for a fall, whether one at or after 3 s before the
// impact did.
type candOutcome struct {
	tr     *trial
	alarms int
	hit    bool
}

func outcomes(ex []example, score []float64) map[*trial]*candOutcome {
	out := map[*trial]*candOutcome{}
	for i := range ex {
		e := &ex[i]
		o := out[e.tr]
		if o == nil {
			o = &candOutcome{tr: e.tr}
			out[e.tr] = o
		}
		if score[i] <= 0 {
			continue
		}
		o.alarms++
		if e.tr.fall && e.label != 0 {
			o.hit = true
		}
	}
	return out
}

// TestFallModel cross-validates the fall model by subject: for each of
// the 18 dev subjects, a model trained on the other 17 scores that
// subject's candidate impacts. A trial counts as the acceptance rule
// counts it (README of the split), with every candidate scoring above 0
// taken as a detection: the detector raises exactly those, less any a
// refractory period swallows, and no fall is swallowed in the dev split
// (TestSisFallDevSplit checks the shipped model through the detector).
// The floors sit a little under the cross-validated figures reached
// (sensitivity 0.991, specificity 0.995), so the test fails when a change
// to the features or the training makes unseen people worse off.
func TestFallModel(t *testing.T) {
	ex := examples(t)
	all := train(ex)
	if *updateFallModel {
		src, err := all.source()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("fallmodel.go", src, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote fallmodel.go: %d trees of depth %d", len(all.trees), fallDepth)
	}
	// The shipped model must be what this training gives: a change to the
	// features or the training without -update-fall-model shows here.
	// Decisions, not bits, are compared, so float rounding that differs
	// between machines does not matter.
	differ := 0
	for i := range ex {
		if (all.score(&ex[i].f) > 0) != (safety.FallScore(ex[i].f) > 0) {
			differ++
		}
	}
	if differ > len(ex)/1000 {
		t.Errorf("fallmodel.go is stale: it decides %d of %d candidates otherwise than training does; run with -update-fall-model", differ, len(ex))
	}
	var subjects []string
	for _, e := range ex {
		if !slices.Contains(subjects, e.tr.subject) {
			subjects = append(subjects, e.tr.subject)
		}
	}
	if len(subjects) != fallSubjects {
		t.Fatalf("%d subjects with candidates, want %d", len(subjects), fallSubjects)
	}
	// Each fold holds out one subject; under the race detector (CI's
	// test command), which slows training tenfold, each holds out three
	// (every sixth subject in order: two young, one elderly). Measured:
	// 0.993 / 0.996 that way, against 0.991 / 0.996 one by one.
	slices.Sort(subjects)
	folds := len(subjects)
	how := "leave-one-subject-out"
	if raceEnabled {
		folds, how = len(subjects)/3, "three subjects held out per fold"
	}
	score := make([]float64, len(ex))
	parallel(folds, func(k int) {
		out := func(e *example) bool { return slices.Index(subjects, e.tr.subject)%folds == k }
		var fit []example
		for i := range ex {
			if !out(&ex[i]) {
				fit = append(fit, ex[i])
			}
		}
		m := train(fit)
		for i := range ex {
			if out(&ex[i]) {
				score[i] = m.score(&ex[i].f)
			}
		}
	})
	res := outcomes(ex, score)
	r := tallyTrials(sisfall(t), func(tr *trial) verdict {
		if o := res[tr]; o != nil {
			return verdict{hit: o.hit, alarms: o.alarms}
		}
		return verdict{}
	})
	t.Log(how + " cross-validation (SisFall dev split, body profile):\n" + r.String())
	if r.sensitivity() < 0.98 || r.specificity() < 0.99 {
		t.Errorf("cross-validated sensitivity %.4f, specificity %.4f: want at least 0.98 and 0.99", r.sensitivity(), r.specificity())
	}
}
