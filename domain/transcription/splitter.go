package transcription

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/tideline/tideline/domain/media"
)

// Utterance is a stretch of speech between pauses.
type Utterance struct {
	Start time.Duration // from the start of the audio written
	PCM   []byte        // media.SampleRate mono s16le
}

// End is when the utterance ends.
func (u Utterance) End() time.Duration { return u.Start + media.PCMDuration(u.PCM) }

// Splitter cuts a stream of PCM (media.SampleRate mono s16le) into
// utterances at pauses, so each can be transcribed as soon as it ends:
// frames of 20 ms are speech when their energy stands out of the noise
// floor (tracked as the audio goes), an utterance starts at the first
// speech frame (with 200 ms before it) and ends after MinPause of
// non-speech, or at MaxUtterance. It holds at most one utterance of
// audio. Deterministic: the same audio, in any chunking, gives the same
// utterances. Not safe for concurrent use.
type Splitter struct {
	MinPause     time.Duration // default 500 ms
	MaxUtterance time.Duration // default 15 s

	carry   []byte  // an incomplete frame
	frames  int64   // frames seen
	floor   float64 // noise floor, RMS
	pre     [][]byte
	cur     []byte
	start   int64 // frame the current utterance starts at
	silent  int   // consecutive non-speech frames in cur
	inSpeak bool
}

const (
	frameSamples = media.SampleRate / 50 // 20 ms
	frameBytes   = 2 * frameSamples
	preFrames    = 10 // 200 ms kept before speech starts
	minSpeechRMS = 200.0
)

func (s *Splitter) defaults() {
	if s.MinPause <= 0 {
		s.MinPause = 500 * time.Millisecond
	}
	if s.MaxUtterance <= 0 {
		s.MaxUtterance = 15 * time.Second
	}
}

// Write adds pcm and returns the utterances it completed.
func (s *Splitter) Write(pcm []byte) []Utterance {
	s.defaults()
	var out []Utterance
	if len(s.carry) > 0 {
		need := frameBytes - len(s.carry)
		if len(pcm) < need {
			s.carry = append(s.carry, pcm...)
			return nil
		}
		s.carry = append(s.carry, pcm[:need]...)
		pcm = pcm[need:]
		if u, ok := s.frame(s.carry); ok {
			out = append(out, u)
		}
		s.carry = s.carry[:0]
	}
	for len(pcm) >= frameBytes {
		if u, ok := s.frame(pcm[:frameBytes]); ok {
			out = append(out, u)
		}
		pcm = pcm[frameBytes:]
	}
	s.carry = append(s.carry, pcm...)
	return out
}

// Pending returns the utterance in progress, if any (a copy).
func (s *Splitter) Pending() (Utterance, bool) {
	if !s.inSpeak {
		return Utterance{}, false
	}
	return Utterance{Start: frameTime(s.start), PCM: append([]byte(nil), s.cur...)}, true
}

// Flush ends the audio: it returns the utterance in progress, if any.
func (s *Splitter) Flush() []Utterance {
	s.defaults()
	if len(s.carry) > 0 {
		s.carry = append(s.carry, make([]byte, frameBytes-len(s.carry))...)
		s.frame(s.carry)
		s.carry = s.carry[:0]
	}
	if !s.inSpeak {
		return nil
	}
	return []Utterance{s.cut()}
}

// Written is how much audio was written.
func (s *Splitter) Written() time.Duration {
	return frameTime(s.frames) + media.PCMDuration(s.carry)
}

func frameTime(n int64) time.Duration { return time.Duration(n) * 20 * time.Millisecond }

func (s *Splitter) frame(f []byte) (Utterance, bool) {
	var sum float64
	for i := 0; i < frameBytes; i += 2 {
		v := float64(int16(binary.LittleEndian.Uint16(f[i:])))
		sum += v * v
	}
	rms := math.Sqrt(sum / frameSamples)
	// The floor follows the quietest frames at once and rises by 2.5 % a
	// second, so a pause resets it and ten seconds of unbroken speech
	// lift it by a quarter.
	if s.frames == 0 || rms < s.floor {
		s.floor = max(rms, 1)
	} else {
		s.floor *= 1.0005
	}
	speech := rms > max(minSpeechRMS, 3*s.floor)
	n := s.frames
	s.frames++
	if !s.inSpeak {
		if !speech {
			s.pre = append(s.pre, append([]byte(nil), f...))
			if len(s.pre) > preFrames {
				s.pre = s.pre[1:]
			}
			return Utterance{}, false
		}
		s.inSpeak, s.start, s.silent = true, n-int64(len(s.pre)), 0
		s.cur = s.cur[:0]
		for _, p := range s.pre {
			s.cur = append(s.cur, p...)
		}
		s.pre = s.pre[:0]
	}
	s.cur = append(s.cur, f...)
	if speech {
		s.silent = 0
	} else {
		s.silent++
	}
	if frameTime(int64(s.silent)) >= s.MinPause || media.PCMDuration(s.cur) >= s.MaxUtterance {
		return s.cut(), true
	}
	return Utterance{}, false
}

// cut ends the current utterance, dropping its trailing pause beyond
// 200 ms.
func (s *Splitter) cut() Utterance {
	keep := len(s.cur) - max(0, s.silent-preFrames)*frameBytes
	u := Utterance{Start: frameTime(s.start), PCM: append([]byte(nil), s.cur[:keep]...)}
	s.inSpeak, s.silent, s.cur = false, 0, s.cur[:0]
	return u
}
