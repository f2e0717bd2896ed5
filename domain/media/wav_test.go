package media_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/wav"
)

// tone returns a WAV of a 440 Hz tone: rate Hz, channels, 16-bit.
func tone(rate, channels int, d time.Duration) []byte {
	n := int(d.Seconds() * float64(rate))
	var data bytes.Buffer
	for i := range n {
		v := int16(16000 * math.Sin(2*math.Pi*440*float64(i)/float64(rate)))
		for range channels {
			binary.Write(&data, binary.LittleEndian, v)
		}
	}
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(36+data.Len()))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(channels), uint32(rate), uint32(rate * channels * 2), uint16(channels * 2), uint16(16)} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	binary.Write(&b, binary.LittleEndian, uint32(data.Len()))
	b.Write(data.Bytes())
	return b.Bytes()
}

func TestPCMFromWAV(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rate, ch int
	}{{"16k_mono", 16000, 1}, {"44k1_stereo", 44100, 2}, {"8k_mono", 8000, 1}, {"48k_stereo", 48000, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			pcm, err := media.PCMFromWAV(tone(tc.rate, tc.ch, time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if d := media.PCMDuration(pcm); d < 990*time.Millisecond || d > time.Second {
				t.Fatalf("duration %v, want 1s", d)
			}
			// the tone survives: peak near 16000/32768 of full scale
			var peak int16
			for i := 0; i+1 < len(pcm); i += 2 {
				peak = max(peak, int16(binary.LittleEndian.Uint16(pcm[i:])))
			}
			if peak < 15000 || peak > 16100 {
				t.Fatalf("peak %d, want ~16000", peak)
			}
			again, err := media.PCMFromWAV(wav.Encode(pcm, media.PCM))
			if err != nil || !bytes.Equal(again, pcm) {
				t.Fatalf("WAV round trip: %v, equal %v", err, bytes.Equal(again, pcm))
			}
		})
	}
}

func TestPCMFromWAVRefusesWhatItCannotUse(t *testing.T) {
	good := tone(16000, 1, 100*time.Millisecond)
	float := bytes.Clone(good)
	binary.LittleEndian.PutUint16(float[20:], 3)
	noData := bytes.Clone(good[:36])
	for name, b := range map[string][]byte{
		"empty": nil, "png": []byte("\x89PNG\r\n\x1a\n...."), "float": float, "no_data": noData,
		"truncated_fmt": good[:30],
	} {
		if _, err := media.PCMFromWAV(b); !errors.Is(err, media.ErrUnusable) {
			t.Errorf("%s: err = %v, want ErrUnusable", name, err)
		}
	}
}
