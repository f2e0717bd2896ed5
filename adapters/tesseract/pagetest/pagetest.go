// Package pagetest renders pages of text as images, for tests of OCR:
// the text rendered is the reference. Tests only.
package pagetest

import (
	"os"
	"testing"

	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/internal/pages"
)

const nanum = "/usr/share/fonts/truetype/nanum/NanumGothic.ttf"

// Render draws lines in NanumGothic (Debian fonts-nanum: Hangul and
// Latin) at size pixels, black on white, as a PNG.
func Render(tb testing.TB, lines []string, size float64) []byte {
	tb.Helper()
	mediatest.NeedFile(tb, nanum, "fonts-nanum")
	ttf, err := os.ReadFile(nanum)
	if err != nil {
		tb.Fatal(err)
	}
	png, err := pages.Render(ttf, lines, size)
	if err != nil {
		tb.Fatal(err)
	}
	return png
}
