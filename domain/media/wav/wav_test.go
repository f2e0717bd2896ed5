package wav_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/media/wav"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	f := wav.Format{SampleRate: 16000, Channels: 1, BitsPerSample: 16}
	pcm := make([]byte, 32000)
	for i := range pcm {
		pcm[i] = byte(i)
	}
	got, data, err := wav.Decode(wav.Encode(pcm, f))
	if err != nil || got != f || !bytes.Equal(data, pcm) {
		t.Fatalf("Decode(Encode) = %+v, %d bytes, %v", got, len(data), err)
	}
	if d := f.Duration(len(data)); d != time.Second {
		t.Fatalf("Duration = %v, want 1s", d)
	}
}

func TestDecode(t *testing.T) {
	f := wav.Format{SampleRate: 22050, Channels: 1, BitsPerSample: 16}
	streamed := wav.Encode(make([]byte, 100), f)
	binary.LittleEndian.PutUint32(streamed[40:], 0x7ffff000) // espeak-ng --stdout
	withList := wav.Encode(make([]byte, 10), f)
	withList = append(append(append([]byte{}, withList[:36]...), "LIST\x03\x00\x00\x00abc\x00"...), withList[36:]...)
	float := wav.Encode(make([]byte, 8), wav.Format{SampleRate: 8000, Channels: 1, BitsPerSample: 32})
	binary.LittleEndian.PutUint16(float[20:], 3)
	for _, tc := range []struct {
		name string
		in   []byte
		n    int
		err  bool
	}{
		{"streamed_size_runs_to_the_end", streamed, 100, false},
		{"odd_chunk_before_data_is_skipped", withList, 10, false},
		{"float_samples_are_refused", float, 0, true},
		{"not_riff", []byte("OggS........"), 0, true},
		{"empty", nil, 0, true},
		{"header_only", wav.Encode(nil, f)[:36], 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, data, err := wav.Decode(tc.in)
			if tc.err {
				if !errors.Is(err, wav.ErrNotWAV) {
					t.Fatalf("err = %v, want ErrNotWAV", err)
				}
				return
			}
			if err != nil || len(data) != tc.n {
				t.Fatalf("got %d bytes, %v; want %d", len(data), err, tc.n)
			}
		})
	}
}
