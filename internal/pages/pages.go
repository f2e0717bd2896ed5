// Package pages renders lines of text as a page image (black on white,
// PNG): what OCR tests read, and the pages `tideline demo --labeling`
// uploads.
package pages

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"

	"golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Render draws lines in the TrueType or OpenType font ttf at size pixels,
// black on white with a 40-pixel margin, as a PNG.
func Render(ttf []byte, lines []string, size float64) ([]byte, error) {
	f, err := opentype.Parse(ttf)
	if err != nil {
		return nil, fmt.Errorf("pages: font: %w", err)
	}
	face, err := opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	if err != nil {
		return nil, fmt.Errorf("pages: font face: %w", err)
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
		return nil, fmt.Errorf("pages: %w", err)
	}
	return b.Bytes(), nil
}
