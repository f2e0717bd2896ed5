package transcription_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	tr "github.com/tideline/tideline/domain/transcription"
)

// audio is PCM: each part is (duration, amplitude) of a 300 Hz tone over
// faint noise; amplitude 0 is the noise alone.
func audio(parts ...[2]float64) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b []byte
	i := 0
	for _, p := range parts {
		n := int(p[0] * 16000)
		for range n {
			v := p[1]*math.Sin(2*math.Pi*300*float64(i)/16000) + rng.NormFloat64()*30
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(v)))
			i++
		}
	}
	return b
}

func split(pcm []byte, chunk int) []tr.Utterance {
	var s tr.Splitter
	var out []tr.Utterance
	for len(pcm) > 0 {
		n := min(chunk, len(pcm))
		out = append(out, s.Write(pcm[:n])...)
		pcm = pcm[n:]
	}
	return append(out, s.Flush()...)
}

func describe(us []tr.Utterance) string {
	s := ""
	for _, u := range us {
		s += fmt.Sprintf("[%v–%v] ", u.Start, u.End())
	}
	return s
}

func TestSplitterCutsAtPauses(t *testing.T) {
	pcm := audio([2]float64{1, 0}, [2]float64{1.2, 5000}, [2]float64{1, 0}, [2]float64{0.6, 3000}, [2]float64{0.3, 0}, [2]float64{0.5, 3000}, [2]float64{1, 0})
	us := split(pcm, len(pcm))
	if len(us) != 2 {
		t.Fatalf("got %d utterances %s, want 2 (a 0.3 s pause does not cut)", len(us), describe(us))
	}
	near := func(got, want time.Duration) bool {
		return got > want-250*time.Millisecond && got < want+250*time.Millisecond
	}
	if !near(us[0].Start, 800*time.Millisecond) || !near(us[0].End(), 2400*time.Millisecond) ||
		!near(us[1].Start, 3000*time.Millisecond) || !near(us[1].End(), 4600*time.Millisecond) {
		t.Fatalf("utterances %s", describe(us))
	}
	for _, chunk := range []int{1, 333, 3200, 8000} {
		if got := describe(split(pcm, chunk)); got != describe(us) {
			t.Errorf("chunks of %d bytes: %s, want %s", chunk, got, describe(us))
		}
	}
}

func TestSplitterCutsLongSpeech(t *testing.T) {
	us := split(audio([2]float64{0.5, 0}, [2]float64{40, 4000}), 3200)
	if len(us) != 3 || us[0].End()-us[0].Start != 15*time.Second {
		t.Fatalf("40 s of unbroken speech: %s, want cuts every 15 s", describe(us))
	}
}

func TestSplitterSilenceIsNothing(t *testing.T) {
	if us := split(audio([2]float64{5, 0}), 3200); len(us) != 0 {
		t.Fatalf("noise alone gave %s", describe(us))
	}
	if us := split(make([]byte, 64000), 3200); len(us) != 0 {
		t.Fatalf("digital silence gave %s", describe(us))
	}
}
