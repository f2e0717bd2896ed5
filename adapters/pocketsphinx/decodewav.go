package pocketsphinx

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/wav"
	"github.com/tideline/tideline/internal/enginerun"
)

var soxPool = enginerun.NewPool(0, 0)

// DecodeWAV returns the PCM that Transcribe and Recognize take
// (media.SampleRate, mono, s16le) from a WAV file: as it is when it is
// already so, else converted by sox (Debian: sox). Errors: ErrUnusable
// for bytes that are not a PCM WAV file, ErrUnavailable when a conversion
// needs sox and it is missing.
func DecodeWAV(ctx context.Context, b []byte) ([]byte, error) {
	f, pcm, err := wav.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", media.ErrUnusable, err)
	}
	if f == (wav.Format{SampleRate: media.SampleRate, Channels: 1, BitsPerSample: 16}) {
		return pcm, nil
	}
	// sox cannot read a WAV header whose sizes run past the end (a writer
	// to a pipe): it reads the samples raw, told their format.
	out, err := soxPool.Run(ctx, enginerun.Cmd{Name: "sox", Args: []string{
		"-t", "raw", "-r", strconv.Itoa(f.SampleRate), "-c", strconv.Itoa(f.Channels), "-b", strconv.Itoa(f.BitsPerSample), "-e", encoding(f), "-L", "-",
		"-t", "raw", "-r", strconv.Itoa(media.SampleRate), "-c", "1", "-b", "16", "-e", "signed-integer", "-L", "-",
	}, Stdin: pcm})
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return nil, fmt.Errorf("%w: sox not found: install the Debian package sox", media.ErrUnavailable)
	case err != nil:
		return nil, fmt.Errorf("resample with sox: %w", err)
	}
	return out, nil
}

func encoding(f wav.Format) string {
	if f.BitsPerSample == 8 {
		return "unsigned-integer" // 8-bit WAV is unsigned
	}
	return "signed-integer"
}
