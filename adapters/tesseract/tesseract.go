// Package tesseract reads text from images with the tesseract program
// (Debian: tesseract-ocr, tesseract-ocr-eng, tesseract-ocr-kor): one
// child process per image, the image on its stdin, the text and the word
// boxes (txt and tsv outputs) in a temporary directory removed after.
package tesseract

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // DecodeConfig of the input
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/internal/enginerun"
)

// Config tunes an OCR; zero fields take the defaults.
type Config struct {
	// Binary is the tesseract program: "tesseract" on PATH by default.
	Binary string
	// PageSegMode is tesseract's --psm: 6 (one uniform block of text) by
	// default, the only mode that reads Korean pages (README, Engines).
	PageSegMode int
	// Concurrency bounds the images read at once: the number of CPUs by
	// default. Each run is held to one thread (OMP_THREAD_LIMIT=1).
	Concurrency int
	// Timeout bounds one image: 60 s by default.
	Timeout time.Duration
	// MaxPixels refuses larger images (ErrUnusable): 40 million by default.
	MaxPixels int
}

// OCR is a media.OCR over tesseract. Safe for concurrent use.
type OCR struct {
	cfg  Config
	pool *enginerun.Pool

	mu        sync.Mutex
	installed map[string]bool // tesseract's languages, once listed
}

var _ media.OCR = (*OCR)(nil)

// New returns an OCR; it does not look for tesseract until the first Read.
func New(cfg Config) *OCR {
	if cfg.Binary == "" {
		cfg.Binary = "tesseract"
	}
	if cfg.PageSegMode == 0 {
		cfg.PageSegMode = 6
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.MaxPixels == 0 {
		cfg.MaxPixels = 40_000_000
	}
	return &OCR{cfg: cfg, pool: enginerun.NewPool(cfg.Concurrency, cfg.Timeout)}
}

// tesseract's name and Debian package of each language, Korean first:
// with both, Korean leads ("kor+eng").
var languages = []struct{ iso, code, pkg string }{
	{"ko", "kor", "tesseract-ocr-kor"},
	{"en", "eng", "tesseract-ocr-eng"},
}

// Read reads the text on a PNG or JPEG image. langs are "en" and "ko";
// none means both that are installed. Errors: ErrUnusable for other bytes,
// an image over MaxPixels or another language; ErrUnavailable when
// tesseract or a language's data is not installed or a run times out.
func (o *OCR) Read(ctx context.Context, img []byte, langs []string) (media.Page, error) {
	if err := o.checkImage(img); err != nil {
		return media.Page{}, err
	}
	lang, err := o.languages(ctx, langs)
	if err != nil {
		return media.Page{}, err
	}
	dir, err := os.MkdirTemp("", "tesseract-")
	if err != nil {
		return media.Page{}, fmt.Errorf("tesseract: %w", err)
	}
	defer os.RemoveAll(dir)
	_, err = o.pool.Run(ctx, enginerun.Cmd{
		Name:  o.cfg.Binary,
		Args:  []string{"stdin", filepath.Join(dir, "out"), "-l", lang, "--psm", strconv.Itoa(o.cfg.PageSegMode), "txt", "tsv"},
		Stdin: img,
		Env:   []string{"OMP_THREAD_LIMIT=1"},
	})
	if err != nil {
		return media.Page{}, o.runError(err)
	}
	txt, err := os.ReadFile(filepath.Join(dir, "out.txt"))
	if err != nil {
		return media.Page{}, fmt.Errorf("tesseract: %w", err)
	}
	tsv, err := os.ReadFile(filepath.Join(dir, "out.tsv"))
	if err != nil {
		return media.Page{}, fmt.Errorf("tesseract: %w", err)
	}
	text := pageText(string(txt))
	tokens, lines := parseTSV(string(tsv))
	words, starts := alignWords(strings.Fields(text), tokens)
	return media.Page{Text: text, Words: words, Lines: pageLines(words, starts, lines), Lang: lang}, nil
}

func (o *OCR) checkImage(img []byte) error {
	if !bytes.HasPrefix(img, []byte("\x89PNG\r\n\x1a\n")) && !bytes.HasPrefix(img, []byte{0xff, 0xd8, 0xff}) {
		return fmt.Errorf("%w: not a PNG or JPEG image", media.ErrUnusable)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		return fmt.Errorf("%w: %v", media.ErrUnusable, err)
	}
	if cfg.Width*cfg.Height > o.cfg.MaxPixels {
		return fmt.Errorf("%w: a %dx%d image is over %d pixels", media.ErrUnusable, cfg.Width, cfg.Height, o.cfg.MaxPixels)
	}
	return nil
}

func (o *OCR) runError(err error) error {
	var e *enginerun.Error
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("%w: %s not found: install the Debian package tesseract-ocr", media.ErrUnavailable, o.cfg.Binary)
	case errors.Is(err, enginerun.ErrTimeout):
		return fmt.Errorf("%w: %v", media.ErrUnavailable, err)
	case errors.As(err, &e) && (strings.Contains(e.Stderr, "pixReadMem") || strings.Contains(e.Stderr, "cannot be read")):
		return fmt.Errorf("%w: tesseract cannot read the image: %s", media.ErrUnusable, e.Stderr)
	}
	return err
}

// languages returns tesseract's -l for langs, checking that each is
// installed.
func (o *OCR) languages(ctx context.Context, langs []string) (string, error) {
	want := map[string]bool{}
	for _, l := range langs {
		known := false
		for _, x := range languages {
			known = known || x.iso == l
		}
		if !known {
			return "", fmt.Errorf("%w: no OCR language %q (en, ko)", media.ErrUnusable, l)
		}
		want[l] = true
	}
	installed, err := o.installedLanguages(ctx, false)
	if err != nil {
		return "", err
	}
	var codes []string
	for _, x := range languages {
		switch {
		case len(langs) == 0 && installed[x.code], want[x.iso] && installed[x.code]:
			codes = append(codes, x.code)
		case want[x.iso]:
			// Installed since the list was made? List again before refusing.
			if again, err := o.installedLanguages(ctx, true); err != nil || !again[x.code] {
				return "", fmt.Errorf("%w: tesseract has no %s data: install the Debian package %s", media.ErrUnavailable, x.code, x.pkg)
			}
			codes = append(codes, x.code)
		}
	}
	if len(codes) == 0 {
		return "", fmt.Errorf("%w: tesseract has neither kor nor eng data: install the Debian packages tesseract-ocr-kor and tesseract-ocr-eng", media.ErrUnavailable)
	}
	return strings.Join(codes, "+"), nil
}

func (o *OCR) installedLanguages(ctx context.Context, fresh bool) (map[string]bool, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.installed != nil && !fresh {
		return o.installed, nil
	}
	out, err := o.pool.Run(ctx, enginerun.Cmd{Name: o.cfg.Binary, Args: []string{"--list-langs"}})
	if err != nil {
		return nil, o.runError(err)
	}
	m := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n")[1:] { // after "List of available languages ..."
		if l := strings.TrimSpace(line); l != "" {
			m[l] = true
		}
	}
	o.installed = m
	return m, nil
}

// pageText is tesseract's txt output as lines: no blank lines, no form
// feed, no trailing spaces.
func pageText(txt string) string {
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(txt, "\f", "\n"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// tsvLine is a text line (a level 4 row) of tesseract's tsv output: its
// box and its words, tokens[first:end] of parseTSV.
type tsvLine struct {
	box        media.Word
	first, end int
}

// parseTSV returns the words (level 5 rows) of tesseract's tsv output,
// and its lines (level 4 rows), each with the words that follow it.
func parseTSV(tsv string) ([]media.Word, []tsvLine) {
	var words []media.Word
	var lines []tsvLine
	for _, line := range strings.Split(tsv, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 12 || f[0] != "4" && f[0] != "5" {
			continue
		}
		n := make([]int, 4)
		for i := range n {
			n[i], _ = strconv.Atoi(f[6+i])
		}
		box := media.Word{X: n[0], Y: n[1], W: n[2], H: n[3]}
		if f[0] == "4" {
			lines = append(lines, tsvLine{box: box, first: len(words), end: len(words)})
			continue
		}
		text := strings.TrimSpace(f[11])
		if text == "" {
			continue
		}
		conf, _ := strconv.ParseFloat(f[10], 64)
		box.Text, box.Confidence = text, min(max(conf/100, 0), 1)
		words = append(words, box)
		if len(lines) == 0 { // a word before any line: its own line
			lines = append(lines, tsvLine{box: media.Word{X: box.X, Y: box.Y, W: box.W, H: box.H}, first: len(words) - 1})
		}
		lines[len(lines)-1].end = len(words)
	}
	return words, lines
}

// alignWords merges tsv tokens into the text's words. tesseract's tsv
// splits Korean words into syllables ("기", "사", "는") that its txt
// writes as one word ("기사는"): each word takes the tokens that spell
// it, the union of their boxes and the least of their confidences. When
// the two do not spell the same text, the tokens are returned as they are.
// starts[i] is the index of the first token of word i.
func alignWords(fields []string, tokens []media.Word) (words []media.Word, starts []int) {
	asTokens := func() ([]media.Word, []int) {
		starts := make([]int, len(tokens))
		for i := range starts {
			starts[i] = i
		}
		return tokens, starts
	}
	out := make([]media.Word, 0, len(fields))
	starts = make([]int, 0, len(fields))
	t := 0
	for _, f := range fields {
		if t >= len(tokens) || !strings.HasPrefix(f, tokens[t].Text) {
			return asTokens()
		}
		starts = append(starts, t)
		w := tokens[t]
		spelled := w.Text
		for t++; spelled != f; t++ {
			if t >= len(tokens) || !strings.HasPrefix(f, spelled+tokens[t].Text) {
				return asTokens()
			}
			n := tokens[t]
			w = union(w, n)
			w.Confidence = min(w.Confidence, n.Confidence)
			spelled += n.Text
		}
		w.Text = f
		out = append(out, w)
	}
	if t != len(tokens) {
		return asTokens()
	}
	return out, starts
}

// pageLines returns the lines that hold words: each line's box widened to
// hold its words' boxes (tesseract's line box leaves out the ascenders of
// some syllables), its words' texts joined by spaces and their mean
// confidence. A word belongs to the line of its first token.
func pageLines(words []media.Word, starts []int, lines []tsvLine) []media.Word {
	var out []media.Word
	w := 0
	for _, l := range lines {
		line := l.box
		var texts []string
		var conf float64
		for ; w < len(words) && starts[w] < l.end; w++ {
			if starts[w] < l.first {
				continue
			}
			line = union(line, words[w])
			texts = append(texts, words[w].Text)
			conf += words[w].Confidence
		}
		if len(texts) == 0 {
			continue
		}
		line.Text, line.Confidence = strings.Join(texts, " "), conf/float64(len(texts))
		out = append(out, line)
	}
	return out
}

// union is the box that holds a's and b's; its text and confidence are
// a's.
func union(a, b media.Word) media.Word {
	x0, y0 := min(a.X, b.X), min(a.Y, b.Y)
	x1, y1 := max(a.X+a.W, b.X+b.W), max(a.Y+a.H, b.Y+b.H)
	a.X, a.Y, a.W, a.H = x0, y0, x1-x0, y1-y0
	return a
}
