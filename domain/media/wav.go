package media

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/tideline/tideline/domain/media/wav"
)

// MaxWAVSeconds bounds the audio PCMFromWAV takes.
const MaxWAVSeconds = 4 * 60 * 60

// PCMFromWAV returns the samples of a WAV file (RIFF, PCM, 8/16/24/32-bit
// integer, any channels and rate) as every Transcriber takes them:
// SampleRate mono s16le, channels averaged, resampled linearly. Anything
// else is ErrUnusable with the reason.
func PCMFromWAV(b []byte) ([]byte, error) {
	f, data, err := wav.Decode(b)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrUnusable, err)
	case f.Channels > 8:
		return nil, fmt.Errorf("%w: WAV has %d channels", ErrUnusable, f.Channels)
	case f.BitsPerSample > 32:
		return nil, fmt.Errorf("%w: WAV has %d-bit samples", ErrUnusable, f.BitsPerSample)
	case f.SampleRate < 4000 || f.SampleRate > 192000:
		return nil, fmt.Errorf("%w: WAV sample rate %d Hz is out of range", ErrUnusable, f.SampleRate)
	case len(data) == 0:
		return nil, fmt.Errorf("%w: WAV has no samples", ErrUnusable)
	case f.Duration(len(data)) > MaxWAVSeconds*time.Second:
		return nil, fmt.Errorf("%w: WAV is longer than %s", ErrUnusable, time.Duration(MaxWAVSeconds)*time.Second)
	}
	if f == PCM {
		return data, nil
	}
	width, channels := f.BitsPerSample/8, f.Channels
	frames := len(data) / (width * channels)
	mono := make([]float64, frames)
	for i := range frames {
		var sum float64
		for c := range channels {
			sum += sample(data[(i*channels+c)*width:], width)
		}
		mono[i] = sum / float64(channels)
	}
	n := int(int64(frames) * SampleRate / int64(f.SampleRate))
	out := make([]byte, 2*n)
	step := float64(f.SampleRate) / SampleRate
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

// PCM is the format of the ports' PCM: SampleRate, mono, 16-bit.
var PCM = wav.Format{SampleRate: SampleRate, Channels: 1, BitsPerSample: 16}

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

// PCMDuration is how long SampleRate mono s16le pcm plays.
func PCMDuration(pcm []byte) time.Duration { return PCM.Duration(len(pcm)) }
