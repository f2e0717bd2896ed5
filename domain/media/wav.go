package media

import (
	"encoding/binary"
	"fmt"
	"time"
)

// MaxWAVSeconds bounds the audio PCMFromWAV takes.
const MaxWAVSeconds = 4 * 60 * 60

// PCMFromWAV returns the samples of a WAV file (RIFF, PCM, 8/16/24/32-bit
// integer, any channels and rate) as every Transcriber takes them:
// SampleRate mono s16le, channels averaged, resampled linearly. Anything
// else is ErrUnusable with the reason.
func PCMFromWAV(wav []byte) ([]byte, error) {
	if len(wav) < 12 || string(wav[:4]) != "RIFF" || string(wav[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: not a WAV file (RIFF/WAVE header missing)", ErrUnusable)
	}
	var (
		format, channels, bits uint16
		rate                   uint32
		data                   []byte
		haveFmt                bool
	)
	for rest := wav[12:]; len(rest) >= 8; {
		id, size := string(rest[:4]), binary.LittleEndian.Uint32(rest[4:8])
		rest = rest[8:]
		if uint64(size) > uint64(len(rest)) {
			if id != "data" {
				return nil, fmt.Errorf("%w: WAV chunk %q is truncated", ErrUnusable, id)
			}
			size = uint32(len(rest)) // a streamed WAV's data size may be unset
		}
		body := rest[:size]
		switch id {
		case "fmt ":
			if len(body) < 16 {
				return nil, fmt.Errorf("%w: WAV fmt chunk too short", ErrUnusable)
			}
			format, channels = binary.LittleEndian.Uint16(body[0:2]), binary.LittleEndian.Uint16(body[2:4])
			rate, bits = binary.LittleEndian.Uint32(body[4:8]), binary.LittleEndian.Uint16(body[14:16])
			if format == 0xFFFE && len(body) >= 26 { // WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
				format = binary.LittleEndian.Uint16(body[24:26])
			}
			haveFmt = true
		case "data":
			data = body
		}
		rest = rest[size:]
		if size%2 == 1 && len(rest) > 0 {
			rest = rest[1:] // chunks are word-aligned
		}
	}
	switch {
	case !haveFmt:
		return nil, fmt.Errorf("%w: WAV has no fmt chunk", ErrUnusable)
	case format != 1:
		return nil, fmt.Errorf("%w: WAV format %d is not integer PCM", ErrUnusable, format)
	case channels == 0 || channels > 8:
		return nil, fmt.Errorf("%w: WAV has %d channels", ErrUnusable, channels)
	case bits != 8 && bits != 16 && bits != 24 && bits != 32:
		return nil, fmt.Errorf("%w: WAV has %d-bit samples", ErrUnusable, bits)
	case rate < 4000 || rate > 192000:
		return nil, fmt.Errorf("%w: WAV sample rate %d Hz is out of range", ErrUnusable, rate)
	case len(data) == 0:
		return nil, fmt.Errorf("%w: WAV has no samples", ErrUnusable)
	}
	width := int(bits / 8)
	frames := len(data) / (width * int(channels))
	if frames/int(rate) > MaxWAVSeconds {
		return nil, fmt.Errorf("%w: WAV is longer than %s", ErrUnusable, time.Duration(MaxWAVSeconds)*time.Second)
	}
	mono := make([]float64, frames)
	for i := range frames {
		var sum float64
		for c := range int(channels) {
			sum += sample(data[(i*int(channels)+c)*width:], width)
		}
		mono[i] = sum / float64(channels)
	}
	n := int(int64(frames) * SampleRate / int64(rate))
	out := make([]byte, 2*n)
	step := float64(rate) / SampleRate
	for i := range n {
		x := float64(i) * step
		j := int(x)
		v := mono[min(j, frames-1)]
		if j+1 < frames {
			v += (mono[j+1] - v) * (x - float64(j))
		}
		binary.LittleEndian.PutUint16(out[2*i:], uint16(int16(max(-32768, min(32767, v*32768)))))
	}
	return out, nil
}

// sample returns the first sample of b, width bytes, as -1..1.
func sample(b []byte, width int) float64 {
	switch width {
	case 1:
		return (float64(b[0]) - 128) / 128
	case 2:
		return float64(int16(binary.LittleEndian.Uint16(b))) / 32768
	case 3:
		return float64(int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24)>>8) / 8388608
	}
	return float64(int32(binary.LittleEndian.Uint32(b))) / 2147483648
}

// WAV wraps SampleRate mono s16le PCM in a WAV header.
func WAV(pcm []byte) []byte {
	b := make([]byte, 44, 44+len(pcm))
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+len(pcm)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], SampleRate)
	binary.LittleEndian.PutUint32(b[28:], SampleRate*2)
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(len(pcm)))
	return append(b, pcm...)
}

// PCMDuration is how long SampleRate mono s16le pcm plays.
func PCMDuration(pcm []byte) time.Duration {
	return time.Duration(len(pcm)/2) * time.Second / SampleRate
}
