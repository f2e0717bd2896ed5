package mediatest

import (
	"bytes"
	"context"
	"errors"
	"image"
	_ "image/jpeg" // DecodeConfig of the samples
	_ "image/png"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/wav"
)

// The suites take *testing.T, not testing.TB: they run their checks as
// named subtests.

// Image is a sample for the OCR suite: an image and the text on it.
type Image struct {
	Data  []byte
	Text  string
	Langs []string
}

// Speech is a sample for the Transcriber and CommandRecognizer suites:
// PCM (media.SampleRate, mono, s16le) and what is said in it.
type Speech struct {
	PCM  []byte
	Lang string
	Text string
}

// Need stops a test whose engine is missing: it fails when the
// environment variable CI is set (CI installs every engine, so a missing
// one is a broken set-up) and skips, saying what to install, otherwise.
func Need(tb testing.TB, binary, debianPackage string) {
	tb.Helper()
	_, err := exec.LookPath(binary)
	need(tb, binary, err, debianPackage)
}

// NeedFile is Need for engine data (a model, a language) that a package
// installs.
func NeedFile(tb testing.TB, path, debianPackage string) {
	tb.Helper()
	_, err := os.Stat(path)
	need(tb, path, err, debianPackage)
}

func need(tb testing.TB, what string, missing error, debianPackage string) {
	tb.Helper()
	switch {
	case missing == nil:
	case os.Getenv("CI") != "":
		tb.Fatalf("%s not found: CI must install the Debian package %s (.ci/run)", what, debianPackage)
	default:
		tb.Skipf("%s not found: install the Debian package %s to run this test", what, debianPackage)
	}
}

func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func wantUnusable(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, media.ErrUnusable) {
		t.Fatalf("%s: err = %v, want one wrapping media.ErrUnusable", what, err)
	}
}

func wantCanceled(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: err = %v, want one wrapping context.Canceled", err)
	}
}

// words is the lowercase letters-and-digits words of s.
func words(s string) []string { return strings.Fields(normalise(s)) }

// found is the share of want's words that got holds.
func found(want, got string) float64 {
	w := words(want)
	if len(w) == 0 {
		return 1
	}
	have := map[string]int{}
	for _, g := range words(got) {
		have[g]++
	}
	n := 0
	for _, x := range w {
		if have[x] > 0 {
			have[x]--
			n++
		}
	}
	return float64(n) / float64(len(w))
}

// OCR checks the contract of media.OCR on a sample image whose text the
// implementation reads well: at least 80% of its words are read, words
// have boxes inside the image and confidences in [0,1]; there is a line
// for each of the sample's lines, top to bottom, inside the image, most
// of its words read, and the lines hold the page's words in order; bad
// input and
// unknown languages wrap ErrUnusable, a canceled context is honoured,
// and concurrent reads agree.
func OCR(t *testing.T, ocr media.OCR, sample Image) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(sample.Data))
	if err != nil {
		t.Fatalf("the sample is not an image: %v", err)
	}
	var first media.Page
	t.Run("reads_the_sample", func(t *testing.T) {
		p, err := ocr.Read(context.Background(), sample.Data, sample.Langs)
		if err != nil {
			t.Fatal(err)
		}
		first = p
		if f := found(sample.Text, p.Text); f < 0.8 {
			t.Fatalf("read %.0f%% of the words: %q, want %q", 100*f, p.Text, sample.Text)
		}
		if p.Lang == "" {
			t.Error("Page.Lang is empty")
		}
		if len(p.Words) == 0 {
			t.Fatal("no words")
		}
		for _, w := range p.Words {
			if strings.TrimSpace(w.Text) == "" || w.W <= 0 || w.H <= 0 || w.X < 0 || w.Y < 0 ||
				w.X+w.W > cfg.Width || w.Y+w.H > cfg.Height || w.Confidence < 0 || w.Confidence > 1 {
				t.Errorf("malformed word %+v in a %dx%d image", w, cfg.Width, cfg.Height)
			}
			if !strings.Contains(p.Text, w.Text) {
				t.Errorf("word %q is not in the page's text", w.Text)
			}
		}
		CheckLines(t, p, cfg.Width, cfg.Height, sample.Text)
	})
	t.Run("concurrent_reads_agree", func(t *testing.T) {
		var wg sync.WaitGroup
		pages := make([]media.Page, 3)
		errs := make([]error, 3)
		for i := range pages {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pages[i], errs[i] = ocr.Read(context.Background(), sample.Data, sample.Langs)
			}()
		}
		wg.Wait()
		for i := range pages {
			if errs[i] != nil || pages[i].Text != first.Text {
				t.Fatalf("read %d: %q, %v; the first read %q", i, pages[i].Text, errs[i], first.Text)
			}
		}
	})
	t.Run("unusable_input", func(t *testing.T) {
		for name, b := range map[string][]byte{
			"empty":     nil,
			"text":      []byte("not an image at all"),
			"truncated": sample.Data[:min(len(sample.Data), 60)],
		} {
			_, err := ocr.Read(context.Background(), b, sample.Langs)
			wantUnusable(t, name, err)
		}
		_, err := ocr.Read(context.Background(), sample.Data, []string{"xx"})
		wantUnusable(t, "language xx", err)
	})
	t.Run("canceled_context", func(t *testing.T) {
		_, err := ocr.Read(canceled(), sample.Data, sample.Langs)
		wantCanceled(t, err)
	})
}

// CheckLines fails unless p's lines are one for each line of text, top
// to bottom, inside a width×height image, with confidences in [0,1],
// each holding at least half the words of its line of text, and unless
// together, in order, they hold p's words.
func CheckLines(tb testing.TB, p media.Page, width, height int, text string) {
	tb.Helper()
	var want []string
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) != "" {
			want = append(want, l)
		}
	}
	if len(p.Lines) != len(want) {
		tb.Fatalf("%d lines %+v, want %d: %q", len(p.Lines), p.Lines, len(want), want)
	}
	var inLines, inWords []string
	for i, l := range p.Lines {
		if strings.TrimSpace(l.Text) == "" || l.W <= 0 || l.H <= 0 || l.X < 0 || l.Y < 0 ||
			l.X+l.W > width || l.Y+l.H > height || l.Confidence < 0 || l.Confidence > 1 {
			tb.Errorf("malformed line %+v in a %dx%d image", l, width, height)
		}
		if i > 0 && p.Lines[i-1].Y+p.Lines[i-1].H/2 >= l.Y+l.H/2 {
			tb.Errorf("line %d %+v is not below line %d %+v", i, l, i-1, p.Lines[i-1])
		}
		if f := found(want[i], l.Text); f < 0.5 {
			tb.Errorf("line %d reads %q: %.0f%% of the words of %q", i, l.Text, 100*f, want[i])
		}
		inLines = append(inLines, strings.Fields(l.Text)...)
	}
	for _, w := range p.Words {
		inWords = append(inWords, w.Text)
	}
	if strings.Join(inLines, " ") != strings.Join(inWords, " ") {
		tb.Errorf("the lines hold %q, the words are %q", inLines, inWords)
	}
}

// Speaker checks the contract of media.Speaker: English and Korean text
// give audio of the content type it claims, lasting about as long as
// speech of it; empty, oversized (1 MiB) text and unknown languages wrap
// ErrUnusable; a canceled context is honoured.
func Speaker(t *testing.T, sp media.Speaker) {
	for _, tc := range []struct{ name, lang, text string }{
		{"english", "en", "Your order is ready for pickup."},
		{"korean", "ko", "주문하신 음식이 준비되었습니다."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := sp.Speak(context.Background(), tc.text, tc.lang)
			if err != nil {
				t.Fatal(err)
			}
			CheckAudio(t, a)
			if a.Duration < 500*time.Millisecond || a.Duration > 15*time.Second {
				t.Errorf("%d characters last %v", len(tc.text), a.Duration)
			}
		})
	}
	t.Run("unusable_input", func(t *testing.T) {
		for name, text := range map[string]string{
			"empty":     "",
			"blank":     " \n\t",
			"oversized": strings.Repeat("long text ", 1<<17),
		} {
			_, err := sp.Speak(context.Background(), text, "en")
			wantUnusable(t, name, err)
		}
		_, err := sp.Speak(context.Background(), "hello", "xx")
		wantUnusable(t, "language xx", err)
	})
	t.Run("canceled_context", func(t *testing.T) {
		_, err := sp.Speak(canceled(), "hello there", "en")
		wantCanceled(t, err)
	})
}

// CheckAudio fails unless a's bytes are of its content type (Ogg, MP3 or
// WAV) and its duration is positive; for WAV, the duration is the data's.
func CheckAudio(tb testing.TB, a media.Audio) {
	tb.Helper()
	if a.Duration <= 0 || len(a.Data) == 0 {
		tb.Fatalf("audio of %d bytes lasting %v", len(a.Data), a.Duration)
	}
	switch a.ContentType {
	case "audio/ogg":
		if !bytes.HasPrefix(a.Data, []byte("OggS")) || !bytes.Contains(a.Data[:min(len(a.Data), 100)], []byte("OpusHead")) {
			tb.Fatalf("audio/ogg that is not Ogg Opus: % x", a.Data[:min(len(a.Data), 16)])
		}
	case "audio/mpeg":
		if !bytes.HasPrefix(a.Data, []byte("ID3")) && !(a.Data[0] == 0xff && a.Data[1]&0xe0 == 0xe0) {
			tb.Fatalf("audio/mpeg that is not MP3: % x", a.Data[:min(len(a.Data), 16)])
		}
	case "audio/wav":
		f, pcm, err := wav.Decode(a.Data)
		if err != nil {
			tb.Fatal(err)
		}
		if d := f.Duration(len(pcm)); d != a.Duration {
			tb.Fatalf("WAV of %v says it lasts %v", d, a.Duration)
		}
	default:
		tb.Fatalf("content type %q", a.ContentType)
	}
}

// Silence is seconds of silent PCM.
func Silence(seconds float64) []byte { return make([]byte, 2*int(seconds*media.SampleRate)) }

// Transcriber checks the contract of media.Transcriber on a sample
// recording: at least half its words are heard, in segments that are in
// order, within the audio, with confidences in [0,1]; silence gives no
// text; bad PCM and unknown languages wrap ErrUnusable; a canceled context
// is honoured.
func Transcriber(t *testing.T, tr media.Transcriber, sample Speech) {
	t.Run("hears_the_sample", func(t *testing.T) {
		got, err := tr.Transcribe(context.Background(), sample.PCM, sample.Lang)
		if err != nil {
			t.Fatal(err)
		}
		if f := found(sample.Text, got.Text()); f < 0.5 {
			t.Errorf("heard %.0f%% of the words: %q, want %q", 100*f, got.Text(), sample.Text)
		}
		CheckSegments(t, got, PCM.Duration(len(sample.PCM)))
	})
	t.Run("silence_has_no_text", func(t *testing.T) {
		got, err := tr.Transcribe(context.Background(), Silence(1), sample.Lang)
		if err != nil || got.Text() != "" {
			t.Fatalf("silence: %q, %v", got.Text(), err)
		}
	})
	t.Run("unusable_input", func(t *testing.T) {
		for name, pcm := range map[string][]byte{"empty": nil, "odd_length": sample.PCM[:len(sample.PCM)-1]} {
			_, err := tr.Transcribe(context.Background(), pcm, sample.Lang)
			wantUnusable(t, name, err)
		}
		_, err := tr.Transcribe(context.Background(), sample.PCM, "xx")
		wantUnusable(t, "language xx", err)
	})
	t.Run("canceled_context", func(t *testing.T) {
		_, err := tr.Transcribe(canceled(), sample.PCM, sample.Lang)
		wantCanceled(t, err)
	})
}

// CheckSegments fails unless tr's segments are in order, each within
// [0, length] (100 ms of slack), with confidences in [0,1].
func CheckSegments(tb testing.TB, tr media.Transcript, length time.Duration) {
	tb.Helper()
	var last time.Duration
	for i, s := range tr.Segments {
		if s.Start < last || s.End < s.Start || s.End > length+100*time.Millisecond ||
			s.Confidence < 0 || s.Confidence > 1 {
			tb.Errorf("segment %d %+v (audio of %v, previous segment ends at %v)", i, s, length, last)
		}
		last = s.End
	}
}

// CommandRecognizer checks the contract of media.CommandRecognizer with
// a grammar and a sample saying one of its phrases: the phrase is heard
// with its intent; silence is rejected; an empty grammar and bad PCM wrap
// ErrUnusable; a canceled context is honoured.
func CommandRecognizer(t *testing.T, cr media.CommandRecognizer, g media.Grammar, said Speech) {
	t.Run("hears_the_phrase", func(t *testing.T) {
		c, err := cr.Recognize(context.Background(), said.PCM, g)
		if err != nil {
			t.Fatal(err)
		}
		if c.Intent != g.Phrases[said.Text] || c.Heard != said.Text || c.Confidence < 0 || c.Confidence > 1 {
			t.Fatalf("heard %+v, want %q → %q", c, said.Text, g.Phrases[said.Text])
		}
	})
	t.Run("rejects_silence", func(t *testing.T) {
		c, err := cr.Recognize(context.Background(), Silence(1), g)
		if err != nil || c.Intent != "" {
			t.Fatalf("silence: %+v, %v", c, err)
		}
	})
	t.Run("unusable_input", func(t *testing.T) {
		_, err := cr.Recognize(context.Background(), said.PCM, media.Grammar{Lang: g.Lang})
		wantUnusable(t, "empty grammar", err)
		_, err = cr.Recognize(context.Background(), said.PCM[:len(said.PCM)-1], g)
		wantUnusable(t, "odd-length PCM", err)
	})
	t.Run("canceled_context", func(t *testing.T) {
		_, err := cr.Recognize(canceled(), said.PCM, g)
		wantCanceled(t, err)
	})
}

// Lecture is a short transcript on two topics, in English and Korean,
// for the Restructurer suite and for figures.
var Lecture = map[string][]string{
	"en": {
		"Today we look at how a rider's delivery is tracked.",
		"Every delivery starts when a rider accepts an order.",
		"The rider then rides to the shop and picks up the food.",
		"Each step of the delivery is recorded as an event.",
		"The customer sees the rider's position on a map.",
		"When the food arrives the rider marks the delivery as complete.",
		"Now let us turn to safety on the road.",
		"A phone's gyroscope can tell when a rider falls.",
		"The fall detector runs on the device itself.",
		"When it detects a fall it raises an alert at once.",
		"The alert reaches the dispatcher even without a network.",
		"Safety alerts are never dropped, only delayed.",
	},
	"ko": {
		"오늘은 배달이 어떻게 기록되는지 알아보겠습니다.",
		"배달은 기사가 주문을 수락하면서 시작됩니다.",
		"기사는 가게로 가서 음식을 받습니다.",
		"배달의 모든 단계는 이벤트로 저장됩니다.",
		"고객은 지도에서 기사의 위치를 봅니다.",
		"음식이 도착하면 기사가 배달 완료를 누릅니다.",
		"이제 도로 위의 안전을 이야기하겠습니다.",
		"휴대폰의 자이로 센서는 넘어짐을 감지합니다.",
		"넘어짐 감지는 기기 안에서 실행됩니다.",
		"넘어짐이 감지되면 바로 경보가 울립니다.",
		"경보는 네트워크가 없어도 관제사에게 전달됩니다.",
		"안전 경보는 지연될 수는 있어도 사라지지 않습니다.",
	},
}

// Restructurer checks the contract of media.Restructurer on Lecture: the
// paragraphs hold every sentence once, in order, unchanged; highlights
// are found in their paragraph; no sentences give no paragraphs; a
// canceled context is honoured.
func Restructurer(t *testing.T, r media.Restructurer) {
	for _, lang := range []string{"en", "ko"} {
		t.Run(lang, func(t *testing.T) {
			ps, err := r.Restructure(context.Background(), Lecture[lang], lang)
			if err != nil {
				t.Fatal(err)
			}
			CheckParagraphs(t, Lecture[lang], ps)
		})
	}
	t.Run("no_sentences", func(t *testing.T) {
		ps, err := r.Restructure(context.Background(), nil, "en")
		if err != nil || len(ps) != 0 {
			t.Fatalf("no sentences: %v, %v", ps, err)
		}
	})
	t.Run("canceled_context", func(t *testing.T) {
		_, err := r.Restructure(canceled(), Lecture["en"], "en")
		wantCanceled(t, err)
	})
}

// CheckParagraphs fails unless ps hold sentences once each, in order,
// unchanged, with highlights found (ignoring case) in their paragraph.
func CheckParagraphs(tb testing.TB, sentences []string, ps []media.Paragraph) {
	tb.Helper()
	var got []string
	for i, p := range ps {
		if len(p.Sentences) == 0 {
			tb.Errorf("paragraph %d is empty", i)
		}
		got = append(got, p.Sentences...)
		text := strings.ToLower(strings.Join(p.Sentences, " "))
		for _, h := range p.Highlights {
			if strings.TrimSpace(h) == "" || !strings.Contains(text, strings.ToLower(h)) {
				tb.Errorf("paragraph %d: highlight %q is not in it", i, h)
			}
		}
	}
	if strings.Join(got, "\x00") != strings.Join(sentences, "\x00") {
		tb.Fatalf("paragraphs hold %q, want %q", got, sentences)
	}
}

// WordErrorRate is the word-level edit distance from ref to hyp over the
// number of words in ref, on lowercase letters and digits: the figure
// quoted for STT, and 1 minus it for OCR's word accuracy.
func WordErrorRate(ref, hyp string) float64 {
	r, h := words(ref), words(hyp)
	if len(r) == 0 {
		return float64(len(h))
	}
	prev := make([]int, len(h)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(r); i++ {
		cur := make([]int, len(h)+1)
		cur[0] = i
		for j := 1; j <= len(h); j++ {
			sub := prev[j-1]
			if r[i-1] != h[j-1] {
				sub++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, sub)
		}
		prev = cur
	}
	return float64(prev[len(h)]) / float64(len(r))
}
