package media_test

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/domain/media/wav"
)

const frame = 20 * time.Millisecond

// signal is PCM being built: media.SampleRate samples a second.
type signal []float64

func newSignal(d time.Duration) signal { return make(signal, samplesIn(d)) }

func samplesIn(d time.Duration) int { return int(d / (time.Second / media.SampleRate)) }

// tone adds a sine of hz at amplitude (of full scale) over [from, to).
func (s signal) tone(from, to time.Duration, hz, amplitude float64) {
	for i := samplesIn(from); i < samplesIn(to); i++ {
		s[i] += amplitude * math.Sin(2*math.Pi*hz*float64(i)/media.SampleRate)
	}
}

// noise adds white noise of RMS db dBFS throughout.
func (s signal) noise(db float64, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 1))
	sigma := math.Pow(10, db/20)
	for i := range s {
		s[i] += sigma * r.NormFloat64()
	}
}

func (s signal) pcm() []byte {
	b := make([]byte, 2*len(s))
	for i, v := range s {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(int16(max(-32768, min(32767, math.Round(v*32768))))))
	}
	return b
}

// checkSpans fails unless spans are in order, not overlapping, not empty,
// within the audio and at most maxClip long.
func checkSpans(tb testing.TB, spans []media.Span, pcm []byte, maxClip time.Duration) {
	tb.Helper()
	var last time.Duration
	for i, s := range spans {
		if s.Start < last || s.End <= s.Start || s.End > media.PCMDuration(pcm) || s.End-s.Start > maxClip {
			tb.Fatalf("span %d %+v: previous ends at %v, audio of %v, clips at most %v; all: %v", i, s, last, media.PCMDuration(pcm), maxClip, spans)
		}
		last = s.End
	}
}

func near(a, b time.Duration) bool { return max(a-b, b-a) <= frame }

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// Tones in noise at -50 dBFS: each pause of MinSilence or more (300 ms)
// splits, a shorter one does not; each clip keeps 150 ms of the pause on
// either side; boundaries off the 20 ms frames are found within a frame.
func TestSplitSilencesTones(t *testing.T) {
	s := newSignal(ms(6500))
	tones := [][2]time.Duration{{ms(510), ms(1500)}, {ms(2100), ms(4100)}, {ms(4453), ms(5250)}, {ms(5450), ms(6000)}}
	for _, tn := range tones {
		s.tone(tn[0], tn[1], 300, 0.3)
	}
	s.noise(-50, 1)
	pcm := s.pcm()
	spans := media.SplitSilences(pcm, media.SplitOptions{})
	checkSpans(t, spans, pcm, 15*time.Second)
	want := []media.Span{
		{ms(510 - 150), ms(1500 + 150)},
		{ms(2100 - 150), ms(4100 + 150)},
		{ms(4453 - 150), ms(6000 + 150)}, // the 200 ms pause at 5250 does not split
	}
	if len(spans) != len(want) {
		t.Fatalf("spans %v, want %v", spans, want)
	}
	for i := range want {
		if !near(spans[i].Start, want[i].Start) || !near(spans[i].End, want[i].End) {
			t.Errorf("span %d %v, want %v within %v", i, spans[i], want[i], frame)
		}
	}
}

func TestSplitSilencesOptions(t *testing.T) {
	s := newSignal(ms(4000))
	s.tone(ms(500), ms(1500), 300, 0.3)
	s.tone(ms(2000), ms(3500), 300, 0.3)
	s.noise(-50, 2)
	pcm := s.pcm()
	for _, tc := range []struct {
		name string
		opt  media.SplitOptions
		want []media.Span
	}{
		{"defaults", media.SplitOptions{}, []media.Span{{ms(350), ms(1650)}, {ms(1850), ms(3650)}}},
		{"longer_min_silence_joins", media.SplitOptions{MinSilence: 600 * time.Millisecond}, []media.Span{{ms(200), ms(3800)}}},
		{"min_clip_joins_the_nearer", media.SplitOptions{MinClip: 1200 * time.Millisecond}, []media.Span{{ms(350), ms(3650)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spans := media.SplitSilences(pcm, tc.opt)
			if len(spans) != len(tc.want) {
				t.Fatalf("spans %v, want %v", spans, tc.want)
			}
			for i := range tc.want {
				if !near(spans[i].Start, tc.want[i].Start) || !near(spans[i].End, tc.want[i].End) {
					t.Errorf("span %d %v, want %v", i, spans[i], tc.want[i])
				}
			}
		})
	}
}

// Threshold is how far below the loud frames silence is: a tone 35 dB
// below the others is silence by default, sound at 40 dB.
func TestSplitSilencesThreshold(t *testing.T) {
	s := newSignal(ms(4000))
	s.tone(ms(500), ms(1500), 300, 0.3)
	s.tone(ms(2000), ms(3500), 300, 0.3*math.Pow(10, -35.0/20))
	pcm := s.pcm()
	if spans := media.SplitSilences(pcm, media.SplitOptions{}); len(spans) != 1 || !near(spans[0].End, ms(1650)) {
		t.Errorf("by default: spans %v, want the loud tone only", spans)
	}
	if spans := media.SplitSilences(pcm, media.SplitOptions{Threshold: 40}); len(spans) != 2 || !near(spans[1].Start, ms(1850)) {
		t.Errorf("at 40 dB: spans %v, want both tones", spans)
	}
}

// In a noisy recording (noise 25 dB below the sound) the pauses are the
// noise: 6 dB over it is silence.
func TestSplitSilencesNoisy(t *testing.T) {
	s := newSignal(ms(4000))
	s.tone(ms(500), ms(1500), 300, 0.1*math.Sqrt2) // -20 dBFS
	s.tone(ms(2000), ms(3500), 300, 0.1*math.Sqrt2)
	s.noise(-45, 6)
	spans := media.SplitSilences(s.pcm(), media.SplitOptions{})
	if len(spans) != 2 || !near(spans[0].End, ms(1650)) || !near(spans[1].Start, ms(1850)) {
		t.Fatalf("spans %v, want one a tone", spans)
	}
}

// A click near a sound joins it; a click alone is dropped.
func TestSplitSilencesShortSounds(t *testing.T) {
	s := newSignal(ms(6000))
	s.tone(ms(1000), ms(1100), 1000, 0.5) // 500 ms before the tone
	s.tone(ms(1600), ms(3000), 300, 0.3)
	s.tone(ms(5000), ms(5080), 1000, 0.5) // 2 s after it
	s.noise(-50, 3)
	spans := media.SplitSilences(s.pcm(), media.SplitOptions{})
	if len(spans) != 1 || !near(spans[0].Start, ms(850)) || !near(spans[0].End, ms(3150)) {
		t.Fatalf("spans %v, want one from 850ms to 3.15s", spans)
	}
}

func TestSplitSilencesNoSound(t *testing.T) {
	quiet := newSignal(3 * time.Second)
	quiet.noise(-70, 4) // below media.SilenceFloor
	for name, pcm := range map[string][]byte{
		"empty":         nil,
		"one_byte":      {1},
		"zeros":         mediatest.Silence(3),
		"quiet_noise":   quiet.pcm(),
		"half_a_frame":  mediatest.Silence(0.01),
		"one_loud_tick": func() []byte { s := newSignal(time.Second); s[8000] = 0.9; return s.pcm() }(),
	} {
		if spans := media.SplitSilences(pcm, media.SplitOptions{}); len(spans) != 0 {
			t.Errorf("%s: spans %v", name, spans)
		}
	}
}

// A minute of steady tone is cut into four chunks of 15 s, end to end.
func TestSplitSilencesLongTone(t *testing.T) {
	s := newSignal(time.Minute)
	s.tone(0, time.Minute, 440, 0.3)
	s.noise(-50, 5)
	pcm := s.pcm()
	spans := media.SplitSilences(pcm, media.SplitOptions{})
	checkSpans(t, spans, pcm, 15*time.Second)
	if len(spans) != 4 || spans[0].Start != 0 || spans[3].End != time.Minute {
		t.Fatalf("spans %v, want 4 over the whole minute", spans)
	}
	for i := 1; i < len(spans); i++ {
		if spans[i].Start != spans[i-1].End {
			t.Fatalf("spans %v leave a gap at %d", spans, i)
		}
	}
	spans = media.SplitSilences(pcm, media.SplitOptions{MaxClip: 7 * time.Second})
	checkSpans(t, spans, pcm, 7*time.Second)
	if len(spans) < 9 || spans[0].Start != 0 || spans[len(spans)-1].End != time.Minute {
		t.Fatalf("spans %v, want at least 9 over the whole minute", spans)
	}
}

// espeakPCM synthesises text with espeak-ng as media.PCM.
func espeakPCM(tb testing.TB, text string) []byte {
	tb.Helper()
	mediatest.Need(tb, "espeak-ng", "espeak-ng")
	out, err := exec.Command("espeak-ng", "-v", "en-us", "--stdout", text).Output()
	if err != nil {
		tb.Fatal(err)
	}
	pcm, err := media.PCMFromWAV(out)
	if err != nil {
		tb.Fatal(err)
	}
	return pcm
}

// loud returns the first and last sample of pcm whose magnitude is over
// 1000 (-30 dBFS), as times.
func loud(pcm []byte) (first, last time.Duration) {
	first = -1
	for i := 0; i+1 < len(pcm); i += 2 {
		if v := int16(binary.LittleEndian.Uint16(pcm[i:])); v > 1000 || v < -1000 {
			if first < 0 {
				first = media.PCMDuration(pcm[:i])
			}
			last = media.PCMDuration(pcm[:i+2])
		}
	}
	return first, last
}

// Four synthesised sentences 0.8 s apart are four clips, each holding its
// sentence, their boundaries in the pauses.
func TestSplitSilencesSpeech(t *testing.T) {
	sentences := []string{
		"The rider accepts the order and rides to the shop.",
		"After the pickup the rider heads to the customer.",
		"A fall detected on the road alerts the dispatcher.",
		"Every step counted today appears on the leaderboard.",
	}
	var pcm []byte
	var voiced [][2]time.Duration // where each sentence's sound is
	for _, s := range sentences {
		if len(pcm) > 0 {
			pcm = append(pcm, mediatest.Silence(0.8)...)
		}
		p := espeakPCM(t, s)
		first, last := loud(p)
		at := media.PCMDuration(pcm)
		voiced = append(voiced, [2]time.Duration{at + first, at + last})
		pcm = append(pcm, p...)
	}
	spans := media.SplitSilences(pcm, media.SplitOptions{})
	t.Logf("sentences at %v; spans %v", voiced, spans)
	checkSpans(t, spans, pcm, 15*time.Second)
	if len(spans) != len(sentences) {
		t.Fatalf("%d spans %v, want %d: sentences at %v", len(spans), spans, len(sentences), voiced)
	}
	for i, s := range spans {
		if s.Start > voiced[i][0] || s.End < voiced[i][1] {
			t.Errorf("span %d %v does not hold its sentence %v", i, s, voiced[i])
		}
		if i > 0 && s.Start < voiced[i-1][1] {
			t.Errorf("span %d %v starts in sentence %d %v", i, s, i-1, voiced[i-1])
		}
		if i+1 < len(spans) && s.End > voiced[i+1][0] {
			t.Errorf("span %d %v ends in sentence %d %v", i, s, i+1, voiced[i+1])
		}
	}
}

// librivox returns pocketsphinx-testdata's LibriVox recordings, one after
// the other, as media.PCM, and where each but the first starts.
func librivox(tb testing.TB) (pcm []byte, joins []time.Duration) {
	tb.Helper()
	dir := "/usr/share/pocketsphinx/test/data/librivox"
	mediatest.NeedFile(tb, filepath.Join(dir, "transcription"), "pocketsphinx-testdata")
	files, err := filepath.Glob(filepath.Join(dir, "*.wav"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no recordings in %s: %v", dir, err)
	}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		p, err := media.PCMFromWAV(b)
		if err != nil {
			tb.Fatal(err)
		}
		if i > 0 {
			joins = append(joins, media.PCMDuration(pcm))
		}
		pcm = append(pcm, p...)
	}
	return pcm, joins
}

// voicedWindows returns the 10 ms windows of pcm within 20 dB of its
// loudest one: what a listener hears as speech in a clean recording,
// measured otherwise than SplitSilences does.
func voicedWindows(pcm []byte) []time.Duration {
	const n = media.SampleRate / 100
	var rms []float64
	for i := 0; i+2*n <= len(pcm); i += 2 * n {
		var sum float64
		for j := 0; j < n; j++ {
			v := float64(int16(binary.LittleEndian.Uint16(pcm[i+2*j:])))
			sum += v * v
		}
		rms = append(rms, math.Sqrt(sum/n))
	}
	top := 0.0
	for _, r := range rms {
		top = max(top, r)
	}
	var out []time.Duration
	for i, r := range rms {
		if r >= top/10 {
			out = append(out, time.Duration(i)*10*time.Millisecond)
		}
	}
	return out
}

// Read speech (25 s of LibriVox, five utterances with the room's noise
// 25 dB under the voice): the clips hold at least 90% of what is voiced,
// however short the clips must be, and no clip runs from one utterance
// into the next.
func TestSplitSilencesRecording(t *testing.T) {
	pcm, joins := librivox(t)
	voiced := voicedWindows(pcm)
	for _, maxClip := range []time.Duration{0, 10 * time.Second, 3 * time.Second} {
		spans := media.SplitSilences(pcm, media.SplitOptions{MaxClip: maxClip})
		limit := maxClip
		if limit == 0 {
			limit = 15 * time.Second
		}
		checkSpans(t, spans, pcm, limit)
		in := 0
		for _, w := range voiced {
			for _, s := range spans {
				if s.Start <= w && w+10*time.Millisecond <= s.End {
					in++
					break
				}
			}
		}
		share := float64(in) / float64(len(voiced))
		t.Logf("MaxClip %v: %d spans hold %.1f%% of %d voiced 10 ms windows: %v", maxClip, len(spans), 100*share, len(voiced), spans)
		if share < 0.9 {
			t.Errorf("MaxClip %v: the spans hold %.1f%% of the voiced windows: %v", maxClip, 100*share, spans)
		}
		for _, j := range joins {
			for _, s := range spans {
				if s.Start < j && j < s.End {
					t.Errorf("MaxClip %v: span %v runs over the join of two recordings at %v", maxClip, s, j)
				}
			}
		}
	}
}

func TestClipWAV(t *testing.T) {
	pcm := make([]byte, 2*media.SampleRate*2) // 2 s
	for i := range pcm {
		pcm[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		name   string
		span   media.Span
		lo, hi int // bytes of pcm
	}{
		{"inside", media.Span{time.Second, 1500 * time.Millisecond}, 32000, 48000},
		{"whole", media.Span{0, 2 * time.Second}, 0, 64000},
		{"clamped", media.Span{-time.Second, 3 * time.Second}, 0, 64000},
		{"off_a_sample", media.Span{time.Second + 30*time.Microsecond, time.Second + 100*time.Microsecond}, 32000, 32002},
		{"after_the_end", media.Span{3 * time.Second, 4 * time.Second}, 64000, 64000},
		{"inverted", media.Span{time.Second, 0}, 32000, 32000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, data, err := wav.Decode(media.ClipWAV(pcm, tc.span))
			if err != nil {
				t.Fatal(err)
			}
			if f != media.PCM || !bytes.Equal(data, pcm[tc.lo:tc.hi]) {
				t.Fatalf("%+v, %d bytes, want %d bytes of pcm from %d", f, len(data), tc.hi-tc.lo, tc.lo)
			}
		})
	}
}

// speechLike returns d of syllable-like bursts (a voiced tone under
// noise, 100 to 300 ms, loudness varying) in words of two to five,
// separated by pauses of 50 ms to 1 s, over noise at -50 dBFS.
func speechLike(d time.Duration) []byte {
	s := newSignal(d)
	r := rand.New(rand.NewPCG(7, 7))
	for at := 200 * time.Millisecond; ; {
		for range 2 + r.IntN(4) {
			n := time.Duration(100+r.IntN(200)) * time.Millisecond
			if at+n > d {
				s.noise(-50, 8)
				return s.pcm()
			}
			s.tone(at, at+n, 100+r.Float64()*150, 0.05+0.25*r.Float64())
			at += n + time.Duration(20+r.IntN(60))*time.Millisecond
		}
		at += time.Duration(50+r.IntN(950)) * time.Millisecond
	}
}

// BenchmarkSplitSilences splits a minute of speech-like audio:
//
//	go test -run '^$' -bench SplitSilences ./domain/media/
func BenchmarkSplitSilences(b *testing.B) {
	pcm := speechLike(time.Minute)
	b.SetBytes(int64(len(pcm)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n = len(media.SplitSilences(pcm, media.SplitOptions{}))
	}
	b.ReportMetric(float64(b.N)*time.Minute.Seconds()/b.Elapsed().Seconds(), "x-realtime")
	b.ReportMetric(float64(n), "clips")
}
