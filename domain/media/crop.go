package media

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"image/png"
	"math/big"
)

// MaxCropPixels bounds the images CropPNG decodes: 40 million pixels, what
// a page scanned at 600 dpi holds with room to spare, and about 160 MB
// decoded.
const MaxCropPixels = 40_000_000

// CropPNG returns, as a PNG, the part of img (a PNG or JPEG image) inside
// box (its X, Y, W and H, in pixels; its Text and Confidence are not used)
// grown by pad pixels on every side and clamped to the image. Bytes that
// are not a PNG or JPEG image, and a box that holds no pixel of the image
// once clamped, fail with an error wrapping ErrUnusable; an image of more
// than MaxCropPixels pixels fails before it is decoded with one wrapping
// both ErrUnusable and ErrTooLarge. Safe for concurrent use.
func CropPNG(img []byte, box Word, pad int) ([]byte, error) {
	crops, err := CropsPNG(img, []Word{box}, pad)
	if err != nil {
		return nil, err
	}
	return crops[0], nil
}

// CropsPNG is CropPNG of every box, decoding the image once: the crops
// in the order of boxes. Any box that holds nothing fails it whole.
func CropsPNG(img []byte, boxes []Word, pad int) ([][]byte, error) {
	decodeConfig, decode := png.DecodeConfig, png.Decode
	switch {
	case bytes.HasPrefix(img, []byte("\x89PNG\r\n\x1a\n")):
	case bytes.HasPrefix(img, []byte{0xff, 0xd8, 0xff}):
		decodeConfig, decode = jpeg.DecodeConfig, jpeg.Decode
	default:
		return nil, fmt.Errorf("%w: crop: not a PNG or JPEG image", ErrUnusable)
	}
	cfg, err := decodeConfig(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("%w: crop: %v", ErrUnusable, err)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxCropPixels {
		return nil, fmt.Errorf("%w: %w: crop: a %dx%d image is over %d pixels", ErrUnusable, ErrTooLarge, cfg.Width, cfg.Height, MaxCropPixels)
	}
	rects := make([]image.Rectangle, len(boxes))
	for i, box := range boxes {
		r := image.Rect(0, 0, 0, 0)
		if box.W > 0 && box.H > 0 {
			r = image.Rectangle{
				Min: image.Pt(clampSum(cfg.Width, box.X, -1, pad), clampSum(cfg.Height, box.Y, -1, pad)),
				Max: image.Pt(clampSum(cfg.Width, box.X, 1, pad, box.W), clampSum(cfg.Height, box.Y, 1, pad, box.H)),
			}
		}
		if r.Empty() {
			return nil, fmt.Errorf("%w: crop: box %dx%d%+d%+d padded by %d holds nothing of the %dx%d image", ErrUnusable, box.W, box.H, box.X, box.Y, pad, cfg.Width, cfg.Height)
		}
		rects[i] = r
	}
	if len(boxes) == 0 {
		return nil, nil
	}
	m, err := decode(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("%w: crop: %v", ErrUnusable, err)
	}
	crops := make([][]byte, len(rects))
	for i, r := range rects {
		r = r.Add(m.Bounds().Min).Intersect(m.Bounds())
		var part image.Image
		if s, ok := m.(interface {
			SubImage(image.Rectangle) image.Image
		}); ok {
			part = s.SubImage(r)
		} else {
			c := image.NewNRGBA(image.Rectangle{Max: r.Size()})
			draw.Draw(c, c.Bounds(), m, r.Min, draw.Src)
			part = c
		}
		var out bytes.Buffer
		if err := png.Encode(&out, part); err != nil {
			return nil, fmt.Errorf("crop: %w", err)
		}
		crops[i] = out.Bytes()
	}
	return crops, nil
}

// clampSum is a + sign*pad + more..., exactly (no int overflows), clamped
// to [0, hi].
func clampSum(hi, a, sign, pad int, more ...int) int {
	var s, t big.Int
	s.SetInt64(int64(a))
	s.Add(&s, t.Mul(t.SetInt64(int64(sign)), big.NewInt(int64(pad))))
	for _, m := range more {
		s.Add(&s, t.SetInt64(int64(m)))
	}
	switch {
	case s.Sign() < 0:
		return 0
	case s.Cmp(big.NewInt(int64(hi))) > 0:
		return hi
	}
	return int(s.Int64())
}
