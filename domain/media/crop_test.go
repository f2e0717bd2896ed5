package media_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"testing"

	"github.com/tideline/tideline/domain/media"
)

// page returns a w×h image whose every pixel differs from its
// neighbours, encoded by enc.
func page(tb testing.TB, w, h int, enc func(*bytes.Buffer, image.Image) error) []byte {
	tb.Helper()
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x * 7), uint8(y * 13), uint8(x*y + 5), 255})
		}
	}
	var b bytes.Buffer
	if err := enc(&b, m); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(b *bytes.Buffer, m image.Image) error  { return png.Encode(b, m) }
func encodeJPEG(b *bytes.Buffer, m image.Image) error { return jpeg.Encode(b, m, nil) }

func TestCropPNG(t *testing.T) {
	const w, h = 200, 120
	for _, tc := range []struct {
		name string
		enc  func(*bytes.Buffer, image.Image) error
		box  media.Word
		pad  int
		want image.Rectangle // in the source
	}{
		{"inside", encodePNG, media.Word{X: 20, Y: 30, W: 50, H: 10}, 4, image.Rect(16, 26, 74, 44)},
		{"no_pad", encodePNG, media.Word{X: 20, Y: 30, W: 50, H: 10}, 0, image.Rect(20, 30, 70, 40)},
		{"clamped_top_left", encodePNG, media.Word{X: 2, Y: 1, W: 10, H: 10}, 5, image.Rect(0, 0, 17, 16)},
		{"clamped_bottom_right", encodePNG, media.Word{X: 190, Y: 100, W: 30, H: 40}, 3, image.Rect(187, 97, 200, 120)},
		{"larger_than_the_image", encodePNG, media.Word{X: -10, Y: -10, W: 1000, H: 1000}, 0, image.Rect(0, 0, w, h)},
		{"huge_pad_no_overflow", encodePNG, media.Word{X: 1 << 62, Y: -1 << 62, W: 1, H: 1}, 1 << 62, image.Rect(0, 0, w, 1)},
		{"largest_box", encodePNG, media.Word{X: math.MinInt, Y: math.MinInt, W: math.MaxInt, H: math.MaxInt}, math.MaxInt, image.Rect(0, 0, w, h)},
		{"one_pixel", encodePNG, media.Word{X: 199, Y: 119, W: 1, H: 1}, 0, image.Rect(199, 119, 200, 120)},
		{"jpeg", encodeJPEG, media.Word{X: 20, Y: 30, W: 50, H: 10}, 4, image.Rect(16, 26, 74, 44)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := page(t, w, h, tc.enc)
			out, err := media.CropPNG(src, tc.box, tc.pad)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(out, []byte("\x89PNG")) {
				t.Fatalf("not a PNG: % x", out[:min(8, len(out))])
			}
			crop, err := png.Decode(bytes.NewReader(out))
			if err != nil {
				t.Fatal(err)
			}
			if got := crop.Bounds(); got != image.Rect(0, 0, tc.want.Dx(), tc.want.Dy()) {
				t.Fatalf("crop bounds %v, want %dx%d", got, tc.want.Dx(), tc.want.Dy())
			}
			whole, _, err := image.Decode(bytes.NewReader(src))
			if err != nil {
				t.Fatal(err)
			}
			for y := range tc.want.Dy() {
				for x := range tc.want.Dx() {
					if !sameColor(crop.At(x, y), whole.At(tc.want.Min.X+x, tc.want.Min.Y+y)) {
						t.Fatalf("crop (%d,%d) = %v, source (%d,%d) = %v", x, y, crop.At(x, y), tc.want.Min.X+x, tc.want.Min.Y+y, whole.At(tc.want.Min.X+x, tc.want.Min.Y+y))
					}
				}
			}
		})
	}
}

// sameColor compares at 8 bits, what a PNG of 8-bit samples keeps.
func sameColor(a, b color.Color) bool {
	r1, g1, b1, a1 := a.RGBA()
	r2, g2, b2, a2 := b.RGBA()
	return r1>>8 == r2>>8 && g1>>8 == g2>>8 && b1>>8 == b2>>8 && a1>>8 == a2>>8
}

func TestCropPNGErrors(t *testing.T) {
	src := page(t, 64, 48, encodePNG)
	var gifImage bytes.Buffer
	if err := gif.Encode(&gifImage, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		t.Fatal(err)
	}
	box := media.Word{X: 1, Y: 1, W: 10, H: 10}
	for _, tc := range []struct {
		name     string
		img      []byte
		box      media.Word
		pad      int
		tooLarge bool
	}{
		{"empty", nil, box, 0, false},
		{"text", []byte("not an image"), box, 0, false},
		{"gif", gifImage.Bytes(), box, 0, false},
		{"truncated_header", src[:20], box, 0, false},
		{"truncated_pixels", src[:len(src)/2], box, 0, false},
		{"zero_width", src, media.Word{X: 1, Y: 1, W: 0, H: 10}, 5, false},
		{"negative_height", src, media.Word{X: 1, Y: 1, W: 10, H: -3}, 5, false},
		{"pad_shrinks_to_nothing", src, box, -5, false},
		{"right_of_the_image", src, media.Word{X: 64, Y: 0, W: 10, H: 10}, 0, false},
		{"above_the_image", src, media.Word{X: 0, Y: -20, W: 10, H: 10}, 9, false},
		{"far_right_no_overflow", src, media.Word{X: math.MaxInt, Y: 0, W: math.MaxInt, H: 10}, 0, false},
		{"far_left_no_overflow", src, media.Word{X: math.MinInt, Y: 0, W: math.MaxInt, H: 10}, 0, false},
		{"huge_negative_pad", src, box, math.MinInt, false},
		{"decompression_bomb", withSize(t, src, 8000, 6000), box, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := media.CropPNG(tc.img, tc.box, tc.pad)
			if !errors.Is(err, media.ErrUnusable) || errors.Is(err, media.ErrTooLarge) != tc.tooLarge {
				t.Fatalf("%d bytes, err = %v; want ErrUnusable (and ErrTooLarge: %v)", len(out), err, tc.tooLarge)
			}
		})
	}
}

// withSize returns the PNG p claiming to be w×h in its header (and so a
// decompression bomb when large: its pixels are never there).
func withSize(tb testing.TB, p []byte, w, h int) []byte {
	tb.Helper()
	b := append([]byte{}, p...)
	if string(b[12:16]) != "IHDR" {
		tb.Fatal("IHDR is not the first chunk")
	}
	binary.BigEndian.PutUint32(b[16:], uint32(w))
	binary.BigEndian.PutUint32(b[20:], uint32(h))
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

// BenchmarkCropPNG crops a line out of a 2000×3000 grey page (a scan at
// 250 dpi) with 60 lines of text-like strokes:
//
//	go test -run '^$' -bench CropPNG ./domain/media/
func BenchmarkCropPNG(b *testing.B) {
	m := image.NewGray(image.Rect(0, 0, 2000, 3000))
	for i := range m.Pix {
		m.Pix[i] = 0xff
	}
	for line := range 60 {
		for y := 100 + line*45; y < 100+line*45+28; y++ {
			for x := 150; x < 1850; x++ {
				if (x/7+y/5+line)%3 == 0 {
					m.Pix[y*m.Stride+x] = 0x10
				}
			}
		}
	}
	var src bytes.Buffer
	if err := png.Encode(&src, m); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(src.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := media.CropPNG(src.Bytes(), media.Word{X: 150, Y: 1000, W: 1700, H: 28}, 8); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pages/s")
}

// CropsPNG decodes once and gives what CropPNG gives for each box, in
// order; one empty box fails the lot.
func TestCropsPNG(t *testing.T) {
	src := page(t, 200, 120, encodePNG)
	boxes := []media.Word{{X: 20, Y: 30, W: 50, H: 10}, {X: 190, Y: 100, W: 30, H: 40}, {X: 0, Y: 0, W: 1, H: 1}}
	crops, err := media.CropsPNG(src, boxes, 3)
	if err != nil || len(crops) != len(boxes) {
		t.Fatalf("%d crops, %v", len(crops), err)
	}
	for i, b := range boxes {
		one, err := media.CropPNG(src, b, 3)
		if err != nil || !bytes.Equal(one, crops[i]) {
			t.Fatalf("box %d: CropsPNG differs from CropPNG (%v)", i, err)
		}
	}
	if _, err := media.CropsPNG(src, append(boxes, media.Word{X: 500, Y: 500, W: 5, H: 5}), 0); !errors.Is(err, media.ErrUnusable) {
		t.Fatalf("a box off the image: %v, want ErrUnusable", err)
	}
}
