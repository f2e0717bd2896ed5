package opusdec_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os/exec"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/opusdec"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

// encode returns a 440 Hz tone of d at 48 kHz stereo as Ogg Opus.
func encode(t *testing.T, d time.Duration) []byte {
	t.Helper()
	mediatest.Need(t, "opusenc", "opus-tools")
	n := int(d.Seconds() * 48000)
	var pcm []byte
	for i := range n {
		v := uint16(int16(12000 * math.Sin(2*math.Pi*440*float64(i)/48000)))
		pcm = binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(pcm, v), v)
	}
	cmd := exec.Command("opusenc", "--quiet", "--raw", "--raw-rate", "48000", "--raw-chan", "2", "-", "-")
	cmd.Stdin = bytes.NewReader(pcm)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decode feeds data to a decoder in chunks of size and returns the PCM.
func decode(t *testing.T, data []byte, size int) ([]byte, error) {
	t.Helper()
	mediatest.Need(t, "opusdec", "opus-tools")
	in, out, err := opusdec.Decoder{}.Decode(context.Background(), "audio/ogg")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for len(data) > 0 {
			k := min(size, len(data))
			if _, err := in.Write(data[:k]); err != nil {
				break
			}
			data = data[k:]
		}
		in.Close()
	}()
	defer out.Close()
	return io.ReadAll(out)
}

func TestDecodesOggOpusInChunks(t *testing.T) {
	ogg := encode(t, 2*time.Second)
	for _, size := range []int{100, 4096, len(ogg)} {
		pcm, err := decode(t, ogg, size)
		if err != nil {
			t.Fatal(err)
		}
		if d := media.PCMDuration(pcm); d < 1950*time.Millisecond || d > 2100*time.Millisecond {
			t.Fatalf("chunks of %d: %v of PCM, want 2 s at %d Hz mono", size, d, media.SampleRate)
		}
		var peak int16
		for i := 0; i+1 < len(pcm); i += 2 {
			peak = max(peak, int16(binary.LittleEndian.Uint16(pcm[i:])))
		}
		if peak < 10000 || peak > 14000 {
			t.Fatalf("peak %d, want the tone's ~12000", peak)
		}
	}
}

func TestRefusesWhatIsNotOggOpus(t *testing.T) {
	if _, err := decode(t, []byte("RIFF....WAVEfmt this is not opus at all"), 10); !errors.Is(err, media.ErrUnusable) {
		t.Fatalf("garbage: %v, want ErrUnusable", err)
	}
	if _, _, err := (opusdec.Decoder{}).Decode(context.Background(), "audio/wav"); !errors.Is(err, media.ErrUnusable) {
		t.Fatalf("audio/wav: %v, want ErrUnusable", err)
	}
	if _, _, err := (opusdec.Decoder{Binary: "no-such-opusdec"}).Decode(context.Background(), "audio/ogg"); !errors.Is(err, media.ErrUnavailable) {
		t.Fatalf("no program: %v, want ErrUnavailable", err)
	}
}
