package media

import (
	"encoding/binary"
	"math"
	"slices"
	"time"

	"github.com/tideline/tideline/domain/media/wav"
)

// Span is a stretch of audio, from its start.
type Span struct {
	Start, End time.Duration
}

// SplitOptions tunes SplitSilences; zero fields take the defaults.
type SplitOptions struct {
	// MinSilence is the shortest pause that ends a clip: 300 ms by default.
	MinSilence time.Duration
	// MinClip is the least sound a clip holds: 400 ms by default. A
	// shorter sound joins its nearer neighbour (if at most a second away
	// and the two fit in MaxClip), else it is dropped.
	MinClip time.Duration
	// MaxClip is the longest clip: 15 s by default. A longer stretch of
	// sound is cut at its quietest point. MinClip is lowered to a
	// quarter of it when it is more.
	MaxClip time.Duration
	// Threshold is how far (dB) below the audio's loud frames (its 95th
	// percentile) a frame is silence: 30 dB by default.
	Threshold float64
}

// SilenceFloor is the loudness (dBFS: a frame's RMS against full scale)
// below which SplitSilences takes a frame for silence, however quiet the
// rest of the audio.
const SilenceFloor = -60.0

const (
	splitFrame    = 320 // samples a frame: 20 ms of SampleRate
	splitFrameDur = splitFrame * time.Second / SampleRate
	splitMergeGap = time.Second
)

func (o SplitOptions) withDefaults() SplitOptions {
	if o.MinSilence <= 0 {
		o.MinSilence = 300 * time.Millisecond
	}
	if o.MinClip <= 0 {
		o.MinClip = 400 * time.Millisecond
	}
	if o.MaxClip <= 0 {
		o.MaxClip = 15 * time.Second
	}
	o.MaxClip = max(o.MaxClip, 4*splitFrameDur)
	o.MinClip = min(o.MinClip, o.MaxClip/4)
	if o.Threshold <= 0 {
		o.Threshold = 30
	}
	return o
}

// SplitSilences returns the stretches of sound in pcm (SampleRate mono
// s16le, as every Transcriber takes it), in order and not overlapping,
// for transcribing one at a time. It measures the loudness of 20 ms
// frames. A frame is silence when it is more than opt.Threshold below the
// audio's loud frames, or below SilenceFloor, or less than 6 dB over the
// audio's noise (its 10th percentile frame) while 20 dB or more under its
// loud frames: so a noisy recording's pauses are pauses, and steady sound
// is never silence. A pause of at least opt.MinSilence ends a clip, and
// each clip keeps up to opt.MinSilence/2 of the silence on either side of
// its sound; silence before the first clip and after the last is left
// out. Sounds shorter than opt.MinClip are joined to a neighbour or
// dropped (see SplitOptions), and clips longer than opt.MaxClip are cut
// at their quietest point, so no clip lasts more than opt.MaxClip. Audio
// without sound gives no spans. It allocates in proportion to the number
// of frames, not of samples; an odd last byte is ignored. Safe for
// concurrent use.
func SplitSilences(pcm []byte, opt SplitOptions) []Span {
	opt = opt.withDefaults()
	samples := len(pcm) / 2
	db := make([]float64, (samples+splitFrame-1)/splitFrame)
	for f := range db {
		lo, hi := f*splitFrame, min((f+1)*splitFrame, samples)
		var sum int64
		for i := lo; i < hi; i++ {
			v := int64(int16(binary.LittleEndian.Uint16(pcm[2*i:])))
			sum += v * v
		}
		db[f] = dBFS(float64(sum) / float64(hi-lo))
	}
	if len(db) == 0 {
		return nil
	}
	sorted := slices.Clone(db)
	slices.Sort(sorted)
	loud, noise := sorted[len(sorted)*95/100], sorted[len(sorted)/10]
	silence := max(loud-opt.Threshold, SilenceFloor, min(noise+6, loud-20))

	// Sounds: frames [a, b) that are not silence, with no pause of
	// MinSilence in them.
	minSilence := int((opt.MinSilence + splitFrameDur - 1) / splitFrameDur)
	var sounds []sound
	for f, e := range db {
		switch {
		case e < silence:
		case len(sounds) > 0 && f-sounds[len(sounds)-1].b < minSilence:
			sounds[len(sounds)-1].b = f + 1
		default:
			sounds = append(sounds, sound{f, f + 1})
		}
	}

	margin := opt.MinSilence / 2
	total := PCMDuration(pcm)
	span := func(s sound) Span {
		return Span{max(0, time.Duration(s.a)*splitFrameDur-margin), min(total, time.Duration(s.b)*splitFrameDur+margin)}
	}
	short := func(s sound) bool { return time.Duration(s.b-s.a)*splitFrameDur < opt.MinClip }
	mergeGap := int(splitMergeGap / splitFrameDur)
	joined := sounds[:0]
	for i, s := range sounds {
		if len(joined) > 0 {
			p := &joined[len(joined)-1]
			gap := s.a - p.b
			fits := gap <= mergeGap && span(sound{p.a, s.b}).duration() <= opt.MaxClip
			nearer := i+1 == len(sounds) || gap <= sounds[i+1].a-s.b // s is nearer p than its next
			if fits && (short(*p) || short(s) && nearer) {
				p.b = s.b
				continue
			}
		}
		joined = append(joined, s)
	}

	var spans []Span
	for _, s := range joined {
		if !short(s) {
			spans = cutLong(spans, span(s), db, opt)
		}
	}
	return spans
}

// sound is frames [a, b) of a SplitSilences analysis.
type sound struct{ a, b int }

func (s Span) duration() time.Duration { return s.End - s.Start }

// dBFS is the loudness of a mean square of s16 samples against full
// scale; -120 for digital silence.
func dBFS(meanSquare float64) float64 {
	if meanSquare <= 0 {
		return -120
	}
	return max(10*math.Log10(meanSquare/(32768*32768)), -120)
}

// cutLong appends s to spans, cut while longer than opt.MaxClip at the
// quietest 100 ms at least opt.MinClip from either end (of the nearly
// quietest, the one nearest the middle, so that steady sound is halved).
func cutLong(spans []Span, s Span, db []float64, opt SplitOptions) []Span {
	if s.duration() <= opt.MaxClip {
		return append(spans, s)
	}
	const window = 5 // frames: 100 ms
	lo := int((s.Start+opt.MinClip)/splitFrameDur) + window/2
	hi := int((s.End-opt.MinClip)/splitFrameDur) - window/2
	level := func(f int) float64 {
		var sum float64
		for _, e := range db[max(f-window/2, 0):min(f+window/2+1, len(db))] {
			sum += e
		}
		return sum / window
	}
	quietest := math.Inf(1)
	for f := lo; f < hi; f++ {
		quietest = min(quietest, level(f))
	}
	mid := int((s.Start + s.End) / 2 / splitFrameDur)
	cut := -1
	for f := lo; f < hi; f++ {
		if level(f) <= quietest+1 && (cut < 0 || abs(f-mid) < abs(cut-mid)) {
			cut = f
		}
	}
	if cut < 0 { // MaxClip is too short for a MinClip on either side
		cut = mid
	}
	at := time.Duration(cut) * splitFrameDur
	spans = cutLong(spans, Span{s.Start, at}, db, opt)
	return cutLong(spans, Span{at, s.End}, db, opt)
}

func abs(n int) int { return max(n, -n) }

// ClipWAV returns the part s of pcm (SampleRate mono s16le) as a WAV file
// of format PCM; s is clamped to the audio, and a span outside it gives a
// WAV without samples.
func ClipWAV(pcm []byte, s Span) []byte {
	total := PCMDuration(pcm)
	sample := func(d time.Duration) int { return int(min(max(d, 0), total) / (time.Second / SampleRate)) }
	a, b := sample(s.Start), sample(s.End)
	return wav.Encode(pcm[2*a:2*max(a, b)], PCM)
}
