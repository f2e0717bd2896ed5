package labeling

import (
	"fmt"
	"sort"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

// CleanAnswer is an answer as recorded: Unicode NFC, runs of white space
// as one space, trimmed, at most MaxAnswerLen runes. Case is kept.
func CleanAnswer(s string) string {
	s = strings.Join(strings.FieldsFunc(norm.NFC.String(s), unicode.IsSpace), " ")
	if r := []rune(s); len(r) > MaxAnswerLen {
		s = string(r[:MaxAnswerLen])
	}
	return s
}

// Normalize is the form answers are compared in: CleanAnswer, lower case.
func Normalize(s string) string { return strings.ToLower(CleanAnswer(s)) }

// Similarity is 1 − (edit distance in runes, see distance) / (length of the longer), in
// 0..1; two empty strings are identical.
func Similarity(a, b string) float64 {
	ra, rb := []rune(a), []rune(b)
	n := max(len(ra), len(rb))
	if n == 0 {
		return 1
	}
	return 1 - float64(distance(ra, rb))/float64(n)
}

// distance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and swaps of two neighbours ("Statoin") each
// cost 1.
func distance(a, b []rune) int {
	pp, prev, cur := make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], pp[j-2]+1)
			}
		}
		pp, prev, cur = prev, cur, pp
	}
	return prev[len(b)]
}

// Agreement tunes the verification of tasks.
type Agreement struct {
	// MinSimilarity: two answers agree when their normalised forms are at
	// least this similar (0.8 lets "Hel1o" agree with "Hello").
	MinSimilarity float64
	// MinSupport is the share of the total weight the agreeing labels
	// must hold for the task to be accepted.
	MinSupport float64
	// MoreLabels is how many labels a task wants more when it has no
	// agreement; MaxLabels bounds the labels a task may get before it is
	// closed unresolved.
	MoreLabels, MaxLabels int32
}

// DefaultAgreement is what the verification batch uses unless told.
var DefaultAgreement = Agreement{MinSimilarity: 0.8, MinSupport: 0.6, MoreLabels: 2, MaxLabels: 9}

// Vote is a label to decide on and its labeler's weight (their gold
// accuracy, see Accuracy).
type Vote struct {
	Labeler, Answer string
	Weight          float64
}

// Decide verifies a task by weighted agreement: every distinct normalised
// answer is a candidate, supported by the weight of the votes at least
// MinSimilarity similar to it; the best supported candidate wins. With at
// least MinSupport of the total weight and at least two agreeing votes
// (one when a single label is wanted) the task is accepted: the agreeing
// votes are accepted, the others rejected, and the answer is the agreeing
// votes' most common recorded form (case kept). Otherwise the task wants
// MoreLabels more labels, or, past MaxLabels, is closed unresolved. The
// decision is a pure function of its input, so a replay decides the same.
func (a Agreement) Decide(taskID string, votes []Vote, wanted int32) *labelingv1.Decision {
	d := &labelingv1.Decision{TaskId: taskID, Wanted: wanted}
	if len(votes) == 0 {
		d.Outcome, d.Reason = labelingv1.Outcome_OUTCOME_NEEDS_MORE, "no labels"
		return d
	}
	norms := make([]string, len(votes))
	total := 0.0
	for i, v := range votes {
		norms[i] = Normalize(v.Answer)
		total += v.Weight
	}
	best, bestSupport, bestAgree := "", -1.0, 0
	for i, c := range norms {
		if i > 0 && containsBefore(norms, i) {
			continue
		}
		support, agree := 0.0, 0
		for j, n := range norms {
			if Similarity(c, n) >= a.MinSimilarity {
				support += votes[j].Weight
				agree++
			}
		}
		if support > bestSupport+1e-12 || (support > bestSupport-1e-12 && (agree > bestAgree || agree == bestAgree && c < best)) {
			best, bestSupport, bestAgree = c, support, agree
		}
	}
	d.Support = bestSupport / max(total, 1e-12)
	needAgree := min(2, max(int(wanted), 1))
	accepted := d.Support >= a.MinSupport && bestAgree >= needAgree
	forms := map[string]int{}
	for i, v := range votes {
		sim := Similarity(best, norms[i])
		ok := accepted && sim >= a.MinSimilarity
		d.Votes = append(d.Votes, &labelingv1.Vote{LabelerId: v.Labeler, Answer: v.Answer, Weight: v.Weight, Similarity: sim, Accepted: ok})
		if ok {
			forms[CleanAnswer(v.Answer)]++
		}
	}
	switch {
	case accepted:
		d.Outcome = labelingv1.Outcome_OUTCOME_ACCEPTED
		d.Answer = mostCommon(forms)
		d.Reason = fmt.Sprintf("%d of %d agree (support %.2f ≥ %.2f)", bestAgree, len(votes), d.Support, a.MinSupport)
	case int32(len(votes))+a.MoreLabels <= a.MaxLabels:
		d.Outcome, d.Wanted = labelingv1.Outcome_OUTCOME_NEEDS_MORE, int32(len(votes))+a.MoreLabels
		d.Reason = fmt.Sprintf("best answer has %d of %d (support %.2f < %.2f): %d more labels wanted", bestAgree, len(votes), d.Support, a.MinSupport, a.MoreLabels)
	default:
		d.Outcome = labelingv1.Outcome_OUTCOME_UNRESOLVED
		d.Reason = fmt.Sprintf("no agreement in %d labels (best support %.2f)", len(votes), d.Support)
	}
	return d
}

func containsBefore(s []string, i int) bool {
	for _, x := range s[:i] {
		if x == s[i] {
			return true
		}
	}
	return false
}

func mostCommon(forms map[string]int) string {
	keys := make([]string, 0, len(forms))
	for k := range forms {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if forms[keys[i]] != forms[keys[j]] {
			return forms[keys[i]] > forms[keys[j]]
		}
		return keys[i] < keys[j]
	})
	if len(keys) == 0 {
		return ""
	}
	return keys[0]
}
