// Package textrank is the offline media.Restructurer: paragraphs by
// lexical cohesion (TextTiling: a break where the words of the sentences
// before a gap and after it have least in common) and key words by
// TextRank (PageRank over the graph of words that occur near each other),
// weighted per paragraph by how often the word occurs in it and how few
// paragraphs share it. Words are runs of Unicode letters and digits, so
// English and Korean both work; each has a small stop-word list, and
// Korean words lose their particles (기사는 → 기사). No process, no
// model, no randomness: the same sentences always give the same result.
package textrank

import (
	"context"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tideline/tideline/domain/media"
)

// Config tunes a Restructurer; zero fields take the defaults.
type Config struct {
	// Window is how many sentences on each side of a gap are compared: 3.
	Window int
	// MinSentences and MaxSentences bound a paragraph: 3 and 8 (a text
	// shorter than two paragraphs is one).
	MinSentences, MaxSentences int
	// Highlights is the most key words picked per paragraph: 3.
	Highlights int
}

// Restructurer is a media.Restructurer. Safe for concurrent use.
type Restructurer struct{ cfg Config }

var _ media.Restructurer = (*Restructurer)(nil)

// New returns a Restructurer.
func New(cfg Config) *Restructurer {
	if cfg.Window == 0 {
		cfg.Window = 3
	}
	if cfg.MinSentences == 0 {
		cfg.MinSentences = 3
	}
	if cfg.MaxSentences == 0 {
		cfg.MaxSentences = 8
	}
	if cfg.Highlights == 0 {
		cfg.Highlights = 3
	}
	return &Restructurer{cfg: cfg}
}

// Restructure groups sentences into paragraphs and picks their key words.
// lang ("en", "ko") chooses the stop words; any other language is split
// by the same rules without them. It fails only on ctx.
func (r *Restructurer) Restructure(ctx context.Context, sentences []string, lang string) ([]media.Paragraph, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(sentences) == 0 {
		return nil, nil
	}
	toks := make([][]token, len(sentences))
	for i, s := range sentences {
		toks[i] = tokens(s, lang)
	}
	cuts := r.breaks(toks)
	rank := textRank(toks)
	var ps []media.Paragraph
	start := 0
	for _, end := range append(cuts, len(sentences)) {
		ps = append(ps, media.Paragraph{Sentences: sentences[start:end]})
		start = end
	}
	r.highlight(ps, toks, rank)
	return ps, nil
}

// token is a word as compared (lowercase, Korean without its particle)
// and as written in the sentence.
type token struct{ word, surface string }

func tokens(s, lang string) []token {
	var out []token
	for _, w := range strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		lower := strings.ToLower(w)
		stem := stripParticle(lower)
		word := stripSuffix(stem)
		if stopWords[word] || predicate(word) || utf8.RuneCountInString(word) < 2 {
			continue
		}
		surface := w
		if stem != lower && len(stem) <= len(w) {
			surface = w[:len(stem)] // the Korean word without its particle, as written
		}
		out = append(out, token{word, surface})
	}
	return out
}

// Korean particles, longest first; one is cut from a word's end when a
// stem of at least one syllable stays.
var particles = []string{"에서는", "으로는", "에게서", "까지", "부터", "에서", "에게", "으로", "처럼", "보다", "이나", "은", "는", "이", "가", "을", "를", "의", "에", "로", "와", "과", "도", "만"}

func stripParticle(w string) string {
	if r, _ := utf8.DecodeRuneInString(w); !unicode.Is(unicode.Hangul, r) {
		return w
	}
	for _, p := range particles {
		if strings.HasSuffix(w, p) && utf8.RuneCountInString(w) > utf8.RuneCountInString(p) {
			return strings.TrimSuffix(w, p)
		}
	}
	return w
}

// stripSuffix cuts an English plural or possessive s when four letters
// stay (riders → rider, alerts → alert; not class), so that both forms
// count as one word.
func stripSuffix(w string) string {
	if strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") && len(w) >= 5 && w[0] < utf8.RuneSelf {
		return w[:len(w)-1]
	}
	return w
}

// predicate says whether a Korean word is a conjugated verb or adjective
// (…니다, …어요): the sentence's predicate, never a key word.
func predicate(w string) bool {
	for _, e := range []string{"니다", "니까", "어요", "아요", "해요", "어도", "면서", "하면", "되면"} {
		if strings.HasSuffix(w, e) {
			return true
		}
	}
	return false
}

var stopWords = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`a an the and or but if then else when while of to in on at by for with from into onto
		about as is are was were be been being am do does did has have had having it its it's this that these those there
		here i you he she we they me him her us them my your his our their what which who whom whose how why where can could
		will would shall should may might must not no nor so than too very just also only each every all any some such own
		same other more most much many few one let lets now up down out over under again once even let's us
		이 그 저 것 수 등 및 더 또 또는 그리고 그러나 하지만 그래서 때 중 안 위 좀 잘 이제 오늘 우리 여러분 바로 모든 어떻게 알아보겠습니다 있습니다 없습니다`) {
		stopWords[w] = true
	}
}

// breaks returns the indexes of the sentences that start a paragraph
// (after the first): TextTiling's depth scores at the gaps, cut from the
// deepest down while both sides keep MinSentences, then any paragraph
// over MaxSentences cut at its deepest gap.
func (r *Restructurer) breaks(toks [][]token) []int {
	n := len(toks)
	if n < 2*r.cfg.MinSentences {
		return nil
	}
	score := make([]float64, n) // score[i]: the gap before sentence i, 1 ≤ i < n
	for i := 1; i < n; i++ {
		score[i] = cosine(bag(toks[max(0, i-r.cfg.Window):i]), bag(toks[i:min(n, i+r.cfg.Window)]))
	}
	depth := make([]float64, n)
	var sum, sq float64
	for i := 1; i < n; i++ {
		left, right := score[i], score[i]
		for j := i - 1; j >= 1 && score[j] >= left; j-- {
			left = score[j]
		}
		for j := i + 1; j < n && score[j] >= right; j++ {
			right = score[j]
		}
		depth[i] = left + right - 2*score[i]
		sum += depth[i]
		sq += depth[i] * depth[i]
	}
	mean := sum / float64(n-1)
	cutoff := mean + math.Sqrt(max(0, sq/float64(n-1)-mean*mean))/2 // Hearst's cutoff, the conservative side
	gaps := make([]int, 0, n)
	for i := 1; i < n; i++ {
		gaps = append(gaps, i)
	}
	sort.SliceStable(gaps, func(a, b int) bool { return depth[gaps[a]] > depth[gaps[b]] })
	cut := map[int]bool{}
	fits := func(i int) bool { // both sides of i keep MinSentences
		lo, hi := 0, n
		for c := range cut {
			if c < i {
				lo = max(lo, c)
			} else {
				hi = min(hi, c)
			}
		}
		return i-lo >= r.cfg.MinSentences && hi-i >= r.cfg.MinSentences
	}
	for _, i := range gaps {
		if depth[i] > 0 && depth[i] >= cutoff && fits(i) {
			cut[i] = true
		}
	}
	for { // paragraphs too long: cut at their deepest gap that fits
		cuts := slices.Sorted(maps.Keys(cut))
		lo, split := 0, -1
		for _, hi := range append(cuts, n) {
			if hi-lo > r.cfg.MaxSentences {
				for _, i := range gaps {
					if i > lo && i < hi && fits(i) {
						split = i
						break
					}
				}
				if split < 0 { // no gap keeps MinSentences on both sides: halve
					split = lo + (hi-lo)/2
				}
				break
			}
			lo = hi
		}
		if split < 0 {
			return cuts
		}
		cut[split] = true
	}
}

func bag(sentences [][]token) map[string]float64 {
	m := map[string]float64{}
	for _, s := range sentences {
		for _, t := range s {
			m[t.word]++
		}
	}
	return m
}

func cosine(a, b map[string]float64) float64 {
	var dot, na, nb float64
	for w, x := range a {
		dot += x * b[w]
		na += x * x
	}
	for _, y := range b {
		nb += y * y
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// candidate says whether a word may be a key word: two syllables of
// Hangul, or three letters of another script, at least.
func candidate(w string) bool {
	r, _ := utf8.DecodeRuneInString(w)
	if unicode.Is(unicode.Hangul, r) {
		return utf8.RuneCountInString(w) >= 2
	}
	return utf8.RuneCountInString(w) >= 3 && !unicode.IsDigit(r)
}

// textRank ranks the candidate words by PageRank (damping 0.85, 50
// rounds) over the graph linking words at most 2 candidates apart in a
// sentence.
func textRank(toks [][]token) map[string]float64 {
	links := map[string]map[string]float64{}
	link := func(a, b string) {
		if links[a] == nil {
			links[a] = map[string]float64{}
		}
		links[a][b]++
	}
	for _, s := range toks {
		var ws []string
		for _, t := range s {
			if candidate(t.word) {
				ws = append(ws, t.word)
				if links[t.word] == nil {
					links[t.word] = map[string]float64{}
				}
			}
		}
		for i := range ws {
			for j := i + 1; j < len(ws) && j <= i+2; j++ {
				if ws[i] != ws[j] {
					link(ws[i], ws[j])
					link(ws[j], ws[i])
				}
			}
		}
	}
	nodes := make([]string, 0, len(links))
	for w := range links {
		nodes = append(nodes, w)
	}
	sort.Strings(nodes)
	out := map[string]float64{}
	total := map[string]float64{}
	for _, w := range nodes {
		out[w] = 1
		for _, x := range links[w] {
			total[w] += x
		}
	}
	for range 50 {
		next := make(map[string]float64, len(nodes))
		for _, w := range nodes {
			var s float64
			for _, v := range slices.Sorted(maps.Keys(links[w])) {
				s += links[w][v] / total[v] * out[v]
			}
			next[w] = 0.15 + 0.85*s
		}
		out = next
	}
	return out
}

// highlight gives each paragraph its best words by rank × occurrences in
// the paragraph × log(1 + paragraphs / paragraphs holding the word), as
// written in the paragraph; ties go to the word that comes first.
func (r *Restructurer) highlight(ps []media.Paragraph, toks [][]token, rank map[string]float64) {
	df := map[string]int{}
	per := make([][]token, len(ps))
	at := 0
	for i, p := range ps {
		seen := map[string]bool{}
		for _, s := range toks[at : at+len(p.Sentences)] {
			per[i] = append(per[i], s...)
			for _, t := range s {
				if !seen[t.word] {
					seen[t.word] = true
					df[t.word]++
				}
			}
		}
		at += len(p.Sentences)
	}
	for i := range ps {
		tf := map[string]float64{}
		var order []token
		for _, t := range per[i] {
			if rank[t.word] == 0 {
				continue
			}
			if tf[t.word] == 0 {
				order = append(order, t)
			}
			tf[t.word]++
		}
		score := func(t token) float64 {
			return rank[t.word] * tf[t.word] * math.Log(1+float64(len(ps))/float64(df[t.word]))
		}
		sort.SliceStable(order, func(a, b int) bool { return score(order[a]) > score(order[b]) })
		for _, t := range order[:min(len(order), r.cfg.Highlights)] {
			ps[i].Highlights = append(ps[i].Highlights, t.surface)
		}
	}
}
