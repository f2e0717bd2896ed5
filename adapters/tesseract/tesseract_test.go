package tesseract_test

import (
	"bytes"
	"context"
	"image"
	_ "image/png" // DecodeConfig of the pages
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/tesseract"
	"github.com/tideline/tideline/adapters/tesseract/pagetest"
	"github.com/tideline/tideline/domain/media/mediatest"
)

// The pages are rendered here, so the text rendered is the reference.
var pages = map[string][]string{
	"en": {
		"The rider accepts the order and rides to the shop.",
		"After the pickup the rider heads to the customer.",
		"A fall detected on the road alerts the dispatcher.",
		"Lecture scripts are split into paragraphs with key words.",
		"Every step counted today appears on the leaderboard.",
		"Voice commands let riders keep both hands on the bars.",
	},
	"ko": {
		"배달 기사는 주문을 받으면 가게로 이동합니다.",
		"음식을 받은 뒤에는 고객의 주소로 출발합니다.",
		"위험한 상황이 감지되면 관리자에게 알림이 갑니다.",
		"강의 내용은 문단으로 나누고 중요한 단어를 표시합니다.",
		"모두의 들을 권리를 위하여 자막을 제공합니다.",
		"오늘 걸은 걸음 수는 순위표에 기록됩니다.",
	},
}

func needTesseract(tb testing.TB) {
	tb.Helper()
	mediatest.Need(tb, "tesseract", "tesseract-ocr")
	mediatest.NeedFile(tb, "/usr/share/tesseract-ocr/5/tessdata/kor.traineddata", "tesseract-ocr-kor")
}

func TestContract(t *testing.T) {
	needTesseract(t)
	ocr := tesseract.New(tesseract.Config{})
	for _, lang := range []string{"en", "ko"} {
		t.Run(lang, func(t *testing.T) {
			lines := pages[lang][:3]
			mediatest.OCR(t, ocr, mediatest.Image{Data: pagetest.Render(t, lines, 28), Text: strings.Join(lines, "\n"), Langs: []string{lang}})
		})
	}
}

// A Korean word is one word with one box, though tesseract's tsv cuts it
// into syllables; with no language given, both are used, Korean first.
func TestKoreanWordsAreWhole(t *testing.T) {
	needTesseract(t)
	p, err := tesseract.New(tesseract.Config{}).Read(context.Background(), pagetest.Render(t, pages["ko"][:1], 28), nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Lang != "kor+eng" || len(p.Words) != len(strings.Fields(p.Text)) {
		t.Fatalf("lang %q, %d words for %q: %+v", p.Lang, len(p.Words), p.Text, p.Words)
	}
}

// Each line drawn is one line read, top to bottom, inside the page, its
// box holding the ink of that line and no other.
func TestLines(t *testing.T) {
	needTesseract(t)
	ocr := tesseract.New(tesseract.Config{})
	for _, lang := range []string{"en", "ko"} {
		t.Run(lang, func(t *testing.T) {
			lines := pages[lang][:4]
			img := pagetest.Render(t, lines, 28)
			p, err := ocr.Read(context.Background(), img, []string{lang})
			if err != nil {
				t.Fatal(err)
			}
			cfg, _, err := image.DecodeConfig(bytes.NewReader(img))
			if err != nil {
				t.Fatal(err)
			}
			mediatest.CheckLines(t, p, cfg.Width, cfg.Height, strings.Join(lines, "\n"))
			for i, l := range p.Lines {
				if acc := 1 - mediatest.WordErrorRate(lines[i], l.Text); acc < 0.75 {
					t.Errorf("line %d: word accuracy %.2f, read %q, drawn %q", i, acc, l.Text, lines[i])
				}
				if i > 0 && p.Lines[i-1].Y+p.Lines[i-1].H > l.Y {
					t.Errorf("line %d %+v overlaps line %d %+v", i, l, i-1, p.Lines[i-1])
				}
			}
		})
	}
}

func TestMissingEngineIsUnavailable(t *testing.T) {
	_, err := tesseract.New(tesseract.Config{Binary: "no-tesseract-here"}).Read(context.Background(), mediatest.TextPNG("x"), []string{"en"})
	if err == nil || !strings.Contains(err.Error(), "install the Debian package tesseract-ocr") {
		t.Fatalf("err = %v", err)
	}
}

// TestFigureWordAccuracy prints word accuracy (1 - word error rate) and
// time per page for page segmentation modes 3 (tesseract's default), 4
// and 6 on a rendered English and Korean page:
//
//	go test -v -run TestFigureWordAccuracy ./adapters/tesseract/
func TestFigureWordAccuracy(t *testing.T) {
	needTesseract(t)
	for _, lang := range []string{"en", "ko"} {
		img := pagetest.Render(t, pages[lang], 28)
		ref := strings.Join(pages[lang], "\n")
		for _, psm := range []int{3, 4, 6} {
			start := time.Now()
			p, err := tesseract.New(tesseract.Config{PageSegMode: psm}).Read(context.Background(), img, []string{lang})
			if err != nil {
				t.Fatal(err)
			}
			acc := 1 - mediatest.WordErrorRate(ref, p.Text)
			t.Logf("%s page (%d words), --psm %d: word accuracy %.1f%%, %v", lang, len(strings.Fields(ref)), psm, 100*acc, time.Since(start).Round(10*time.Millisecond))
			if psm == 6 && acc < 0.9 {
				t.Errorf("%s at --psm 6: word accuracy %.2f, read %q", lang, acc, p.Text)
			}
		}
	}
}

// BenchmarkLines reads the lines of a rendered page of six English lines,
// one page at a time:
//
//	go test -run '^$' -bench Lines -benchtime 5x ./adapters/tesseract/
func BenchmarkLines(b *testing.B) {
	needTesseract(b)
	ocr := tesseract.New(tesseract.Config{})
	img := pagetest.Render(b, pages["en"], 28)
	for b.Loop() {
		p, err := ocr.Read(context.Background(), img, []string{"en"})
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Lines) != len(pages["en"]) {
			b.Fatalf("%d lines: %+v", len(p.Lines), p.Lines)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
}
