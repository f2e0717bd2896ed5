// Package espeak speaks text with the speech synthesisers Debian ships:
// espeak-ng (the only offline Korean voice; English too) and flite for
// English when it is installed, then encodes the WAV they write as Opus
// (opusenc, "audio/ogg"), else MP3 (lame, "audio/mpeg"), else leaves it
// WAV ("audio/wav"). Each step is a child process working in a temporary
// directory removed after.
//
// Why flite for English: espeak-ng is a formant synthesiser; flite's
// voices are recorded-speech models (the default here, rms, a CMU ARCTIC
// voice). Listening is impossible on these machines, so the choice was
// measured by a proxy: six English sentences synthesised and transcribed
// by pocketsphinx gave a word error rate of 90% for espeak-ng (175 wpm),
// 92% for flite's kal, 21% awb, 15% slt and 6% rms (a shell loop; the
// test TestFigureSynthesisedEnglish in adapters/pocketsphinx keeps
// espeak-ng against rms: README, Engines).
package espeak

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/wav"
	"github.com/tideline/tideline/internal/enginerun"
)

// Config tunes a Speaker; zero fields take the defaults.
type Config struct {
	// ESpeak, Flite, Opusenc and Lame are the programs: on PATH by
	// default. Flite "-" never uses flite; Opusenc or Lame "-" never
	// encodes with it.
	ESpeak, Flite, Opusenc, Lame string
	// FliteVoice is flite's English voice: "rms" by default.
	FliteVoice string
	// Rate is espeak-ng's speed in words a minute: 160 by default.
	Rate int
	// MaxChars bounds a text (ErrUnusable past it): 20,000 by default.
	MaxChars int
	// Concurrency bounds the processes at once: the number of CPUs by
	// default.
	Concurrency int
	// Timeout bounds each process: 2 minutes by default.
	Timeout time.Duration
}

// Speaker is a media.Speaker. Safe for concurrent use.
type Speaker struct {
	cfg  Config
	pool *enginerun.Pool
}

var _ media.Speaker = (*Speaker)(nil)

// New returns a Speaker; it looks for the programs at each Speak, so one
// installed later is used without a restart.
func New(cfg Config) *Speaker {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&cfg.ESpeak, "espeak-ng")
	def(&cfg.Flite, "flite")
	def(&cfg.Opusenc, "opusenc")
	def(&cfg.Lame, "lame")
	def(&cfg.FliteVoice, "rms")
	if cfg.Rate == 0 {
		cfg.Rate = 160
	}
	if cfg.MaxChars == 0 {
		cfg.MaxChars = 20000
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	return &Speaker{cfg: cfg, pool: enginerun.NewPool(cfg.Concurrency, cfg.Timeout)}
}

// Speak says text in lang ("en" or "ko"). Errors: ErrUnusable for empty
// text, text over MaxChars or another language; ErrUnavailable when
// espeak-ng is missing or a step times out.
func (s *Speaker) Speak(ctx context.Context, text, lang string) (media.Audio, error) {
	if strings.TrimSpace(text) == "" || !utf8.ValidString(text) {
		return media.Audio{}, fmt.Errorf("%w: no text to speak", media.ErrUnusable)
	}
	if n := utf8.RuneCountInString(text); n > s.cfg.MaxChars {
		return media.Audio{}, fmt.Errorf("%w: %d characters, more than %d", media.ErrUnusable, n, s.cfg.MaxChars)
	}
	var synth enginerun.Cmd
	switch {
	case lang == "en" && installed(s.cfg.Flite):
		synth = enginerun.Cmd{Name: s.cfg.Flite, Args: []string{"-voice", s.cfg.FliteVoice, "-f", "/dev/stdin", "-o", "speech.wav"}}
	case lang == "en" || lang == "ko":
		voice := map[string]string{"en": "en-us", "ko": "ko"}[lang]
		synth = enginerun.Cmd{Name: s.cfg.ESpeak, Args: []string{"-v", voice, "-s", strconv.Itoa(s.cfg.Rate), "-w", "speech.wav"}}
	default:
		return media.Audio{}, fmt.Errorf("%w: no voice for %q (en, ko)", media.ErrUnusable, lang)
	}
	dir, err := os.MkdirTemp("", "espeak-")
	if err != nil {
		return media.Audio{}, fmt.Errorf("speak: %w", err)
	}
	defer os.RemoveAll(dir)
	synth.Dir, synth.Stdin = dir, []byte(text)
	if _, err := s.pool.Run(ctx, synth); err != nil {
		return media.Audio{}, runError(err)
	}
	speech, err := os.ReadFile(filepath.Join(dir, "speech.wav"))
	if err != nil {
		return media.Audio{}, fmt.Errorf("speak: %w", err)
	}
	f, pcm, err := wav.Decode(speech)
	if err != nil {
		return media.Audio{}, fmt.Errorf("speak: %s wrote %w", synth.Name, err)
	}
	a := media.Audio{Data: speech, ContentType: "audio/wav", Duration: f.Duration(len(pcm))}
	for _, enc := range []struct{ name, file, contentType string }{
		{s.cfg.Opusenc, "speech.opus", "audio/ogg"},
		{s.cfg.Lame, "speech.mp3", "audio/mpeg"},
	} {
		if !installed(enc.name) {
			continue
		}
		if _, err := s.pool.Run(ctx, enginerun.Cmd{Name: enc.name, Args: []string{"--quiet", "speech.wav", enc.file}, Dir: dir}); err != nil {
			return media.Audio{}, runError(err)
		}
		if a.Data, err = os.ReadFile(filepath.Join(dir, enc.file)); err != nil {
			return media.Audio{}, fmt.Errorf("speak: %w", err)
		}
		a.ContentType = enc.contentType
		break
	}
	return a, nil
}

func installed(name string) bool {
	if name == "-" {
		return false
	}
	_, err := exec.LookPath(name)
	return err == nil
}

func runError(err error) error {
	var nf *exec.Error
	switch {
	case errors.As(err, &nf) && errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("%w: %s not found: install the Debian package espeak-ng", media.ErrUnavailable, nf.Name)
	case errors.Is(err, enginerun.ErrTimeout):
		return fmt.Errorf("%w: %v", media.ErrUnavailable, err)
	}
	return fmt.Errorf("speak: %w", err)
}
