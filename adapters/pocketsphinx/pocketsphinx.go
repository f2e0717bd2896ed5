// Package pocketsphinx transcribes English speech and recognises spoken
// commands with CMU PocketSphinx (Debian: pocketsphinx, whose program is
// pocketsphinx_continuous, and pocketsphinx-en-us, the only model Debian
// ships). Each call is a child process decoding the PCM from a temporary
// file.
//
// Commands are decoded against a finite-state grammar built from the
// phrases, plus a garbage loop of single phones: speech that is none of
// the phrases matches the loop better and is rejected. pocketsphinx gives
// every word of a grammar's result a posterior of 1.0, so the loop, not a
// score, is what rejects; GarbageEntry and GarbageLoop trade accepted
// commands for false accepts (README, Engines, has the measured rates).
// Korean phrases are given romanised and pronounced with the English
// model's phones (romanise.go).
package pocketsphinx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/internal/enginerun"
)

// Config tunes a Recognizer; zero fields take the defaults.
type Config struct {
	// Binary is the decoder: "pocketsphinx_continuous" on PATH by default.
	Binary string
	// ModelDir holds the English model (en-us/), its language model
	// (en-us.lm.bin) and dictionary (cmudict-en-us.dict):
	// /usr/share/pocketsphinx/model/en-us by default.
	ModelDir string
	// GarbageEntry is the grammar's probability of the garbage loop
	// against the phrases (1e-3 by default); GarbageLoop its probability
	// of one more phone (0.5 by default). Higher values reject more; a
	// negative GarbageEntry leaves the loop out (nothing is rejected but
	// what fits no phrase at all).
	GarbageEntry, GarbageLoop float64
	// Concurrency bounds the decoders at once: the number of CPUs by
	// default.
	Concurrency int
	// Timeout bounds one decoding: 5 minutes by default.
	Timeout time.Duration
}

// Recognizer is a media.Transcriber and a media.CommandRecognizer. Safe
// for concurrent use.
type Recognizer struct {
	cfg  Config
	pool *enginerun.Pool
}

var (
	_ media.Transcriber       = (*Recognizer)(nil)
	_ media.CommandRecognizer = (*Recognizer)(nil)
)

// New returns a Recognizer; it looks for the decoder and model at each
// call.
func New(cfg Config) *Recognizer {
	if cfg.Binary == "" {
		cfg.Binary = "pocketsphinx_continuous"
	}
	if cfg.ModelDir == "" {
		cfg.ModelDir = "/usr/share/pocketsphinx/model/en-us"
	}
	if cfg.GarbageEntry == 0 {
		cfg.GarbageEntry = 1e-3
	}
	if cfg.GarbageLoop == 0 {
		cfg.GarbageLoop = 0.5
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	return &Recognizer{cfg: cfg, pool: enginerun.NewPool(cfg.Concurrency, cfg.Timeout)}
}

func checkPCM(pcm []byte) error {
	if len(pcm) == 0 || len(pcm)%2 != 0 {
		return fmt.Errorf("%w: PCM of %d bytes is not 16-bit samples", media.ErrUnusable, len(pcm))
	}
	return nil
}

func (r *Recognizer) model() (hmm, lm, dict string, err error) {
	hmm = filepath.Join(r.cfg.ModelDir, "en-us")
	lm = filepath.Join(r.cfg.ModelDir, "en-us.lm.bin")
	dict = filepath.Join(r.cfg.ModelDir, "cmudict-en-us.dict")
	for _, p := range []string{filepath.Join(hmm, "mdef"), lm, dict} {
		if _, err := os.Stat(p); err != nil {
			return "", "", "", fmt.Errorf("%w: no English model (%s): install the Debian package pocketsphinx-en-us", media.ErrUnavailable, p)
		}
	}
	return hmm, lm, dict, nil
}

// Transcribe transcribes English speech (lang "en"; other languages fail
// with ErrUnusable: no model), one segment per stretch of speech between
// pauses, with the mean of its words' posteriors as confidence.
func (r *Recognizer) Transcribe(ctx context.Context, pcm []byte, lang string) (media.Transcript, error) {
	if err := checkPCM(pcm); err != nil {
		return media.Transcript{}, err
	}
	if lang != "en" {
		return media.Transcript{}, fmt.Errorf("%w: no model for %q", media.ErrUnusable, lang)
	}
	hmm, lm, dict, err := r.model()
	if err != nil {
		return media.Transcript{}, err
	}
	out, err := r.decode(ctx, pcm, map[string]string{}, "-hmm", hmm, "-lm", lm, "-dict", dict)
	if err != nil {
		return media.Transcript{}, err
	}
	return parseTranscript(out), nil
}

// decode runs the decoder on pcm with args, in a temporary directory
// holding files (name → content) and the audio as speech.raw. The audio is
// a file, not a pipe: the decoder reads it in blocks, and a pipe's short
// reads would change where its live normalisation updates, and so the
// result, from one run to the next.
func (r *Recognizer) decode(ctx context.Context, pcm []byte, files map[string]string, args ...string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "pocketsphinx-")
	if err != nil {
		return nil, fmt.Errorf("pocketsphinx: %w", err)
	}
	defer os.RemoveAll(dir)
	files["speech.raw"] = string(pcm)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return nil, fmt.Errorf("pocketsphinx: %w", err)
		}
	}
	out, err := r.pool.Run(ctx, enginerun.Cmd{
		Name: r.cfg.Binary,
		Args: append([]string{"-infile", "speech.raw", "-samprate", strconv.Itoa(media.SampleRate), "-time", "yes"}, args...),
		Dir:  dir,
	})
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return nil, fmt.Errorf("%w: %s not found: install the Debian package pocketsphinx", media.ErrUnavailable, r.cfg.Binary)
	case errors.Is(err, enginerun.ErrTimeout):
		return nil, fmt.Errorf("%w: %v", media.ErrUnavailable, err)
	case err != nil:
		return nil, fmt.Errorf("pocketsphinx: %w", err)
	}
	return out, nil
}

// utterance is one block of pocketsphinx_continuous -time yes output: the
// hypothesis line, then "word start end posterior" lines (from <s> to
// </s> when it cuts utterances at silences, without them when it does
// not). An utterance without hypothesis prints its words alone.
type utterance struct {
	hyp   string
	words []timedWord
}

type timedWord struct {
	word       string
	start, end float64
	posterior  float64
}

func parseUtterances(out []byte) []utterance {
	var us []utterance
	var cur *utterance // nil: the words of an utterance without hypothesis, skipped
	flush := func() {
		if cur != nil {
			us = append(us, *cur)
		}
		cur = nil
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		w, ok := parseTimedWord(line)
		switch {
		case !ok:
			flush()
			cur = &utterance{hyp: line}
		case w.word == "<s>" && cur != nil && len(cur.words) > 0:
			flush() // a new utterance begins without a hypothesis line
		case cur != nil:
			cur.words = append(cur.words, w)
		}
	}
	flush()
	return us
}

func parseTimedWord(line string) (timedWord, bool) {
	f := strings.Fields(line)
	if len(f) != 4 {
		return timedWord{}, false
	}
	var n [3]float64
	for i := range n {
		v, err := strconv.ParseFloat(f[i+1], 64)
		if err != nil {
			return timedWord{}, false
		}
		n[i] = v
	}
	w := f[0]
	if i := strings.IndexByte(w, '('); i > 0 && strings.HasSuffix(w, ")") { // "was(2)": an alternative pronunciation
		w = w[:i]
	}
	return timedWord{word: w, start: n[0], end: n[1], posterior: n[2]}, true
}

// filler says whether a decoder word is silence or noise, not speech.
func filler(w string) bool {
	return strings.HasPrefix(w, "<") || strings.HasPrefix(w, "[") || w == "(NULL)"
}

func parseTranscript(out []byte) media.Transcript {
	var tr media.Transcript
	for _, u := range parseUtterances(out) {
		var seg media.Segment
		n := 0
		for _, w := range u.words {
			if filler(w.word) {
				continue
			}
			if n == 0 {
				seg.Start = seconds(w.start)
			}
			seg.End = seconds(w.end)
			seg.Confidence += w.posterior
			n++
		}
		if n == 0 {
			continue
		}
		seg.Text = u.hyp
		seg.Confidence = math.Min(1, math.Max(0, seg.Confidence/float64(n)))
		tr.Segments = append(tr.Segments, seg)
	}
	return tr
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// Recognize hears one phrase of g (lang "en", or "ko" with romanised
// phrases) or rejects the speech. Confidence is 1 for a phrase heard, 0
// for a rejection: pocketsphinx has no finer score under a grammar.
func (r *Recognizer) Recognize(ctx context.Context, pcm []byte, g media.Grammar) (media.Command, error) {
	if err := checkPCM(pcm); err != nil {
		return media.Command{}, err
	}
	hmm, _, dict, err := r.model()
	if err != nil {
		return media.Command{}, err
	}
	gr, err := r.buildGrammar(g, dict)
	if err != nil {
		return media.Command{}, err
	}
	// One utterance for the whole recording: a pause inside a phrase must
	// not cut it in two.
	out, err := r.decode(ctx, pcm, map[string]string{"commands.fsg": gr.fsg, "commands.dict": gr.dict},
		"-hmm", hmm, "-fsg", "commands.fsg", "-dict", "commands.dict", "-remove_silence", "no")
	if err != nil {
		return media.Command{}, err
	}
	var heard []string
	for _, u := range parseUtterances(out) {
		for _, w := range u.words {
			if filler(w.word) {
				continue
			}
			if strings.HasPrefix(w.word, garbagePrefix) {
				return media.Command{}, nil // the garbage loop won: not a command
			}
			heard = append(heard, w.word)
		}
	}
	phrase, ok := gr.phrases[strings.Join(heard, " ")]
	if !ok {
		return media.Command{Heard: strings.Join(heard, " ")}, nil
	}
	return media.Command{Heard: phrase, Intent: g.Phrases[phrase], Confidence: 1}, nil
}

// words is a phrase as the dictionary spells it: lowercase words of
// letters, digits and apostrophes.
func words(phrase string) []string {
	return strings.FieldsFunc(strings.ToLower(phrase), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\''
	})
}

const garbagePrefix = "garbage_"

// The English model's phones, each a garbage word.
var phones = strings.Fields("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH")

type grammar struct {
	fsg, dict string
	phrases   map[string]string // words joined by one space → the phrase as given
}

// buildGrammar writes g as a Sphinx FSG: from state 0 to the final state
// 1 through each phrase's words (equally likely), or through the garbage
// loop of phones (GarbageEntry, then GarbageLoop for each further phone),
// and the dictionary of every word used.
func (r *Recognizer) buildGrammar(g media.Grammar, cmudict string) (grammar, error) {
	if len(g.Phrases) == 0 {
		return grammar{}, fmt.Errorf("%w: a grammar without phrases", media.ErrUnusable)
	}
	if g.Lang != "en" && g.Lang != "ko" {
		return grammar{}, fmt.Errorf("%w: no model for %q", media.ErrUnusable, g.Lang)
	}
	gr := grammar{phrases: map[string]string{}}
	need := map[string]bool{}
	for p := range g.Phrases {
		ws := words(p)
		if len(ws) == 0 {
			return grammar{}, fmt.Errorf("%w: phrase %q has no words", media.ErrUnusable, p)
		}
		gr.phrases[strings.Join(ws, " ")] = p
		for _, w := range ws {
			need[w] = true
		}
	}
	prons, err := pronounce(need, g.Lang, cmudict)
	if err != nil {
		return grammar{}, err
	}
	var d strings.Builder
	for _, w := range slices.Sorted(maps.Keys(prons)) {
		for i, p := range prons[w] {
			if i == 0 {
				fmt.Fprintf(&d, "%s %s\n", w, p)
			} else {
				fmt.Fprintf(&d, "%s(%d) %s\n", w, i+1, p)
			}
		}
	}
	for _, p := range phones {
		fmt.Fprintf(&d, "%s%s %s\n", garbagePrefix, strings.ToLower(p), p)
	}
	gr.dict = d.String()

	var t []string
	next := 2
	each := 1 / float64(len(gr.phrases))
	for _, p := range slices.Sorted(maps.Keys(gr.phrases)) {
		ws := strings.Fields(p)
		from := 0
		for i, w := range ws {
			to := 1
			if i < len(ws)-1 {
				to = next
				next++
			}
			prob := 1.0
			if i == 0 {
				prob = each
			}
			t = append(t, fmt.Sprintf("TRANSITION %d %d %g %s", from, to, prob, w))
			from = to
		}
	}
	if r.cfg.GarbageEntry > 0 {
		loop, loopEnd := next, next+1
		next += 2
		t = append(t, fmt.Sprintf("TRANSITION 0 %d %g", loop, r.cfg.GarbageEntry))
		for _, p := range phones {
			t = append(t, fmt.Sprintf("TRANSITION %d %d %g %s%s", loop, loopEnd, 1/float64(len(phones)), garbagePrefix, strings.ToLower(p)))
		}
		t = append(t,
			fmt.Sprintf("TRANSITION %d %d %g", loopEnd, loop, r.cfg.GarbageLoop),
			fmt.Sprintf("TRANSITION %d 1 %g", loopEnd, 1-r.cfg.GarbageLoop))
	}
	gr.fsg = fmt.Sprintf("FSG_BEGIN commands\nNUM_STATES %d\nSTART_STATE 0\nFINAL_STATE 1\n%s\nFSG_END\n", next, strings.Join(t, "\n"))
	return gr, nil
}

// pronounce finds each word's pronunciations: for Korean by
// romanisation, else (and for English) in the English dictionary.
func pronounce(need map[string]bool, lang, cmudict string) (map[string][]string, error) {
	f, err := os.Open(cmudict)
	if err != nil {
		return nil, fmt.Errorf("%w: %v: install the Debian package pocketsphinx-en-us", media.ErrUnavailable, err)
	}
	defer f.Close()
	cmu := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w, pron, ok := strings.Cut(sc.Text(), " ")
		if j := strings.IndexByte(w, '('); j > 0 { // "read(2)": another pronunciation
			w = w[:j]
		}
		if ok && need[w] {
			cmu[w] = append(cmu[w], strings.TrimSpace(pron))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("pocketsphinx: read %s: %w", cmudict, err)
	}
	prons := map[string][]string{}
	for w := range need {
		if p, ok := romanised(w); ok && lang == "ko" {
			prons[w] = []string{p}
		} else if cmu[w] != nil {
			prons[w] = cmu[w]
		} else {
			return nil, fmt.Errorf("%w: no pronunciation for %q in %s (Korean phrases are given romanised)", media.ErrUnusable, w, lang)
		}
	}
	return prons, nil
}
