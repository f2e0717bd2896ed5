// Package wav reads and writes the RIFF WAVE container around PCM: the
// form in which engines hand over speech (espeak-ng, flite) and in which
// the media ports' PCM (media.SampleRate, mono, s16le) travels over HTTP.
// Only integer PCM is read; anything else is an error, never a guess.
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Format is how the samples in a WAV file are laid out.
type Format struct {
	SampleRate    int
	Channels      int
	BitsPerSample int
}

// BytesPerSecond is the data rate of the format.
func (f Format) BytesPerSecond() int { return f.SampleRate * f.Channels * f.BitsPerSample / 8 }

// Duration is how long n bytes of PCM in this format last.
func (f Format) Duration(n int) time.Duration {
	bps := f.BytesPerSecond()
	if bps <= 0 {
		return 0
	}
	return time.Duration(int64(n) * int64(time.Second) / int64(bps))
}

// Encode wraps pcm in a canonical 44-byte WAV header.
func Encode(pcm []byte, f Format) []byte {
	b := make([]byte, 44, 44+len(pcm))
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+len(pcm)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1) // integer PCM
	binary.LittleEndian.PutUint16(b[22:], uint16(f.Channels))
	binary.LittleEndian.PutUint32(b[24:], uint32(f.SampleRate))
	binary.LittleEndian.PutUint32(b[28:], uint32(f.BytesPerSecond()))
	binary.LittleEndian.PutUint16(b[32:], uint16(f.Channels*f.BitsPerSample/8))
	binary.LittleEndian.PutUint16(b[34:], uint16(f.BitsPerSample))
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(len(pcm)))
	return append(b, pcm...)
}

// ErrNotWAV says the bytes are not a WAV file of integer PCM.
var ErrNotWAV = errors.New("not a PCM WAV file")

// Decode returns the format and the PCM of a WAV file. A data chunk whose
// size runs past the end (what a writer to a pipe leaves, e.g. espeak-ng
// --stdout) is taken to end at the end of the file.
func Decode(b []byte) (Format, []byte, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return Format{}, nil, ErrNotWAV
	}
	var f Format
	haveFmt := false
	for p := 12; p+8 <= len(b); {
		id, size := string(b[p:p+4]), int(binary.LittleEndian.Uint32(b[p+4:]))
		body := b[p+8:]
		switch id {
		case "fmt ":
			if size < 16 || len(body) < 16 {
				return Format{}, nil, fmt.Errorf("%w: short fmt chunk", ErrNotWAV)
			}
			tag := binary.LittleEndian.Uint16(body[0:])
			if tag != 1 && tag != 0xFFFE { // PCM, WAVE_FORMAT_EXTENSIBLE
				return Format{}, nil, fmt.Errorf("%w: format tag %#x", ErrNotWAV, tag)
			}
			f = Format{
				Channels:      int(binary.LittleEndian.Uint16(body[2:])),
				SampleRate:    int(binary.LittleEndian.Uint32(body[4:])),
				BitsPerSample: int(binary.LittleEndian.Uint16(body[14:])),
			}
			if f.Channels < 1 || f.SampleRate < 1 || f.BitsPerSample%8 != 0 || f.BitsPerSample == 0 {
				return Format{}, nil, fmt.Errorf("%w: format %+v", ErrNotWAV, f)
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return Format{}, nil, fmt.Errorf("%w: data before fmt", ErrNotWAV)
			}
			if size > len(body) || size < 0 {
				size = len(body)
			}
			frame := f.Channels * f.BitsPerSample / 8
			return f, body[:size-size%frame], nil
		}
		if size > len(body) || size < 0 {
			break
		}
		p += 8 + size + size%2
	}
	return Format{}, nil, fmt.Errorf("%w: no data chunk", ErrNotWAV)
}
