// Package pagetest renders pages of text as images, for tests of OCR:
// the text rendered is the reference. Tests only.
package pagetest

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"
	"testing"

	"golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"

	"github.com/tideline/tideline/domain/media/mediatest"
)

const nanum = "/usr/share/fonts/truetype/nanum/NanumGothic.ttf"

// Render draws lines in NanumGothic (Debian fonts-nanum: Hangul and
// Latin) at size pixels, black on white, as a PNG.
func Render(tb testing.TB, lines []string, size float64) []byte {
	tb.Helper()
	mediatest.NeedFile(tb, nanum, "fonts-nanum")
	data, err := os.ReadFile(nanum)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := opentype.Parse(data)
	if err != nil {
		tb.Fatal(err)
	}
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		tb.Fatal(err)
	}
	defer face.Close()
	m := face.Metrics()
	lineHeight := (m.Height * 3 / 2).Ceil()
	width := 0
	for _, l := range lines {
		width = max(width, font.MeasureString(face, l).Ceil())
	}
	img := image.NewGray(image.Rect(0, 0, width+80, lineHeight*len(lines)+80))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	d := font.Drawer{Dst: img, Src: image.NewUniform(color.Black), Face: face}
	for i, l := range lines {
		d.Dot = fixed.P(40, 40+m.Ascent.Ceil()+i*lineHeight)
		d.DrawString(l)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}
