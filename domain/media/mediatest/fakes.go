// Package mediatest holds the contract tests of the media engine ports,
// run by every implementation's tests (the real engine and the fakes
// here), and deterministic fakes for tests whose subject is not an
// engine: a pipeline's test speaks text with FakeSpeaker and hears it
// back, exactly, with FakeTranscriber, and reads an image made by TextPNG
// with FakeOCR.
//
// The fakes carry text through the media instead of recognising it: an
// image carries its text in a PNG iTXt chunk, and speech carries its text
// coded in the samples themselves (FakeSpeech), so it survives being
// passed on as PCM. They are safe for concurrent use.
package mediatest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	_ "image/jpeg" // FakeOCR takes JPEG too
	"image/png"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/wav"
)

// PCM is the format of the ports' PCM.
var PCM = media.PCM

const textKeyword = "Text"

var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// TextPNG returns a small white PNG whose iTXt chunk "Text" holds text,
// for FakeOCR to read.
func TextPNG(text string) []byte {
	img := image.NewGray(image.Rect(0, 0, 320, 40))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img) // in memory: cannot fail
	// iTXt: keyword, 0, compression flag 0, method 0, language "", 0, translated keyword "", 0, UTF-8 text.
	data := append([]byte(textKeyword+"\x00\x00\x00\x00\x00"), text...)
	chunk := make([]byte, 8, 12+len(data))
	binary.BigEndian.PutUint32(chunk, uint32(len(data)))
	copy(chunk[4:], "iTXt")
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
	out := b.Bytes()
	return append(append(append([]byte{}, out[:33]...), chunk...), out[33:]...) // after the signature and IHDR
}

// FakeOCR reads the text that TextPNG put in an image; a PNG or JPEG
// without it reads as a page without words.
type FakeOCR struct{}

var _ media.OCR = FakeOCR{}

func (FakeOCR) Read(ctx context.Context, img []byte, langs []string) (media.Page, error) {
	if err := ctx.Err(); err != nil {
		return media.Page{}, err
	}
	lang, err := fakeLangs(langs)
	if err != nil {
		return media.Page{}, err
	}
	decoded, _, err := image.Decode(bytes.NewReader(img))
	if err != nil || !(bytes.HasPrefix(img, pngMagic) || bytes.HasPrefix(img, []byte{0xff, 0xd8, 0xff})) {
		return media.Page{}, fmt.Errorf("%w: not a PNG or JPEG image", media.ErrUnusable)
	}
	text := pngText(img)
	page := media.Page{Text: text, Lang: lang}
	var lines [][]string
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines = append(lines, f)
		}
	}
	size := decoded.Bounds().Size()
	for i, fields := range lines { // lines share the image's height, words their line's width
		height, width := size.Y/len(lines), size.X/len(fields)
		page.Lines = append(page.Lines, media.Word{Text: strings.Join(fields, " "), X: 0, Y: i * height, W: width * len(fields), H: height, Confidence: 1})
		for j, w := range fields {
			page.Words = append(page.Words, media.Word{Text: w, X: j * width, Y: i * height, W: width, H: height, Confidence: 1})
		}
	}
	return page, nil
}

func pngText(b []byte) string {
	if !bytes.HasPrefix(b, pngMagic) {
		return ""
	}
	for p := len(pngMagic); p+12 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[p:]))
		if n < 0 || p+12+n > len(b) {
			return ""
		}
		typ, data := string(b[p+4:p+8]), b[p+8:p+8+n]
		if typ == "iTXt" && bytes.HasPrefix(data, []byte(textKeyword+"\x00\x00\x00")) {
			rest := data[len(textKeyword)+3:]
			if i := bytes.IndexByte(rest, 0); i >= 0 { // language tag
				rest = rest[i+1:]
				if j := bytes.IndexByte(rest, 0); j >= 0 { // translated keyword
					return string(rest[j+1:])
				}
			}
		}
		p += 12 + n
	}
	return ""
}

func fakeLangs(langs []string) (string, error) {
	if len(langs) == 0 {
		return "en+ko", nil
	}
	for _, l := range langs {
		if l != "en" && l != "ko" {
			return "", fmt.Errorf("%w: no language %q", media.ErrUnusable, l)
		}
	}
	return strings.Join(langs, "+"), nil
}

// The fake speech: a short silence, a marker of samples no recording
// holds by chance, the text's length, one sample per byte of it, and
// silence up to a quarter of a second per word, so that durations look
// like speech.
var marker = []int16{12345, -12345, 23456, -23456, 1111, -1111, 4321, -4321}

const (
	lead    = media.SampleRate / 10
	perWord = media.SampleRate / 4
)

// FakeSpeech returns PCM (media.SampleRate, mono, s16le) that carries
// text for FakeTranscriber and FakeCommandRecognizer to hear.
func FakeSpeech(text string) []byte {
	samples := make([]int16, lead, lead+len(marker)+2+len(text))
	samples = append(samples, marker...)
	samples = append(samples, int16(len(text)>>15), int16(len(text)&0x7fff))
	for _, c := range []byte(text) {
		samples = append(samples, int16(c)*64)
	}
	if want := lead + perWord*max(1, len(strings.Fields(text))); len(samples) < want {
		samples = append(samples, make([]int16, want-len(samples))...)
	}
	b := make([]byte, 2*len(samples))
	for i, s := range samples {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	return b
}

// heard returns the text FakeSpeech put in pcm, and where its samples
// begin; ok is false for PCM without it (silence, a real recording).
func heard(pcm []byte) (text string, ok bool) {
	n := len(pcm) / 2
	at := func(i int) int16 { return int16(binary.LittleEndian.Uint16(pcm[2*i:])) }
next:
	for i := 0; i+len(marker)+2 <= n; i++ {
		for j, m := range marker {
			if at(i+j) != m {
				continue next
			}
		}
		p := i + len(marker)
		size := int(at(p))<<15 | int(at(p+1))
		p += 2
		if size < 0 || p+size > n {
			return "", false
		}
		b := make([]byte, size)
		for k := range b {
			b[k] = byte(at(p+k) / 64)
		}
		return string(b), true
	}
	return "", false
}

func checkPCM(pcm []byte) error {
	if len(pcm) == 0 || len(pcm)%2 != 0 {
		return fmt.Errorf("%w: PCM of %d bytes is not 16-bit samples", media.ErrUnusable, len(pcm))
	}
	return nil
}

// FakeSpeaker speaks text as FakeSpeech in a WAV file ("audio/wav").
type FakeSpeaker struct{}

var _ media.Speaker = FakeSpeaker{}

// FakeMaxChars is FakeSpeaker's bound on a text.
const FakeMaxChars = 20000

func (FakeSpeaker) Speak(ctx context.Context, text, lang string) (media.Audio, error) {
	if err := ctx.Err(); err != nil {
		return media.Audio{}, err
	}
	if lang != "en" && lang != "ko" {
		return media.Audio{}, fmt.Errorf("%w: no voice for %q", media.ErrUnusable, lang)
	}
	if strings.TrimSpace(text) == "" || !utf8.ValidString(text) || utf8.RuneCountInString(text) > FakeMaxChars {
		return media.Audio{}, fmt.Errorf("%w: text must be 1 to %d characters of UTF-8", media.ErrUnusable, FakeMaxChars)
	}
	pcm := FakeSpeech(text)
	return media.Audio{Data: wav.Encode(pcm, PCM), ContentType: "audio/wav", Duration: PCM.Duration(len(pcm))}, nil
}

// FakeTranscriber hears the text of FakeSpeech, one segment per sentence,
// with times spread over the audio; other sound is silence to it.
type FakeTranscriber struct{}

var _ media.Transcriber = FakeTranscriber{}

func (FakeTranscriber) Transcribe(ctx context.Context, pcm []byte, lang string) (media.Transcript, error) {
	if err := ctx.Err(); err != nil {
		return media.Transcript{}, err
	}
	if err := checkPCM(pcm); err != nil {
		return media.Transcript{}, err
	}
	if lang != "en" && lang != "ko" {
		return media.Transcript{}, fmt.Errorf("%w: no model for %q", media.ErrUnusable, lang)
	}
	text, ok := heard(pcm)
	if !ok || strings.TrimSpace(text) == "" {
		return media.Transcript{}, nil
	}
	total := PCM.Duration(len(pcm))
	var tr media.Transcript
	start := 0
	for _, s := range Sentences(text) {
		i := strings.Index(text[start:], s) + start
		end := i + len(s)
		tr.Segments = append(tr.Segments, media.Segment{
			Start:      total * time.Duration(i) / time.Duration(len(text)),
			End:        total * time.Duration(end) / time.Duration(len(text)),
			Text:       s,
			Confidence: 1,
		})
		start = end
	}
	return tr, nil
}

// Sentences splits text after '.', '!', '?' and line breaks, trimmed.
func Sentences(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		for line != "" {
			i := strings.IndexAny(line, ".!?")
			if i < 0 {
				i = len(line) - 1
			}
			if s := strings.TrimSpace(line[:i+1]); s != "" {
				out = append(out, s)
			}
			line = line[i+1:]
		}
	}
	return out
}

// FakeCommandRecognizer hears the text of FakeSpeech and finds it in the
// grammar (case, punctuation and spacing aside); any other text, and
// other sound, is rejected.
type FakeCommandRecognizer struct{}

var _ media.CommandRecognizer = FakeCommandRecognizer{}

func (FakeCommandRecognizer) Recognize(ctx context.Context, pcm []byte, g media.Grammar) (media.Command, error) {
	if err := ctx.Err(); err != nil {
		return media.Command{}, err
	}
	if err := checkPCM(pcm); err != nil {
		return media.Command{}, err
	}
	if len(g.Phrases) == 0 {
		return media.Command{}, fmt.Errorf("%w: empty grammar", media.ErrUnusable)
	}
	text, _ := heard(pcm)
	for phrase, intent := range g.Phrases {
		if normalise(phrase) == normalise(text) && normalise(text) != "" {
			return media.Command{Heard: phrase, Intent: intent, Confidence: 1}, nil
		}
	}
	return media.Command{Heard: text}, nil
}

func normalise(s string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}), " ")
}

// FakeSpeakerWAV wraps PCM in the WAV file FakeSpeaker would return.
func FakeSpeakerWAV(pcm []byte) []byte { return wav.Encode(pcm, PCM) }
