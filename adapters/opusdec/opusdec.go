// Package opusdec decodes Ogg Opus audio into the ports' PCM with the
// opusdec program (Debian opus-tools), as it arrives: a media.Decoder.
package opusdec

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/tideline/tideline/domain/media"
)

// ContentType is the type Decode takes.
const ContentType = "audio/ogg"

// Decoder is a media.Decoder running opusdec, one process a stream.
type Decoder struct {
	// Binary is the program; default "opusdec".
	Binary string
}

var _ media.Decoder = Decoder{}

// Decode implements media.Decoder: opusdec resamples to media.SampleRate
// and writes a WAV to its stdout, whose channels are averaged here.
func (d Decoder) Decode(ctx context.Context, contentType string) (io.WriteCloser, io.ReadCloser, error) {
	if ct, _, _ := strings.Cut(contentType, ";"); strings.TrimSpace(ct) != ContentType {
		return nil, nil, fmt.Errorf("%w: opusdec decodes %s (Ogg Opus), not %q", media.ErrUnusable, ContentType, contentType)
	}
	bin := d.Binary
	if bin == "" {
		bin = "opusdec"
	}
	if _, err := exec.LookPath(bin); err != nil {
		return nil, nil, fmt.Errorf("%w: %s not found: install the Debian package opus-tools", media.ErrUnavailable, bin)
	}
	cmd := exec.CommandContext(ctx, bin, "--quiet", "--rate", fmt.Sprint(media.SampleRate), "--force-wav", "-", "-")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", media.ErrUnavailable, err)
	}
	pr, pw := io.Pipe()
	go func() {
		err := mono(bufio.NewReaderSize(stdout, 64<<10), pw)
		werr := cmd.Wait()
		if err == nil && werr != nil {
			err = fmt.Errorf("%w: opusdec: %v: %s", media.ErrUnusable, werr, strings.TrimSpace(stderr.String()))
		}
		pw.CloseWithError(err)
	}()
	return in, pr, nil
}

// mono reads opusdec's WAV (a header whose sizes may be unset, then
// s16le frames) and writes its frames as mono.
func mono(r *bufio.Reader, w io.Writer) error {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: not Ogg Opus: opusdec wrote no audio", media.ErrUnusable)
		}
		return err
	}
	if string(hdr[:4]) != "RIFF" || string(hdr[8:]) != "WAVE" {
		return fmt.Errorf("%w: opusdec wrote no WAV header", media.ErrUnusable)
	}
	channels := 0
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			return fmt.Errorf("%w: opusdec's WAV ends in its header", media.ErrUnusable)
		}
		id, size := string(ch[:4]), binary.LittleEndian.Uint32(ch[4:])
		if id == "data" {
			break
		}
		body := make([]byte, min(size, 1<<16))
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("%w: opusdec's WAV ends in its header", media.ErrUnusable)
		}
		if id == "fmt " && len(body) >= 16 {
			channels = int(binary.LittleEndian.Uint16(body[2:4]))
			if bits := binary.LittleEndian.Uint16(body[14:16]); bits != 16 {
				return fmt.Errorf("opusdec wrote %d-bit samples", bits)
			}
		}
	}
	if channels < 1 {
		return fmt.Errorf("%w: opusdec's WAV has no format", media.ErrUnusable)
	}
	frame := make([]byte, 2*channels)
	out := make([]byte, 0, 8192)
	for {
		if _, err := io.ReadFull(r, frame); err != nil {
			if len(out) > 0 {
				if _, werr := w.Write(out); werr != nil {
					return werr
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		sum := 0
		for c := range channels {
			sum += int(int16(binary.LittleEndian.Uint16(frame[2*c:])))
		}
		out = binary.LittleEndian.AppendUint16(out, uint16(int16(sum/channels)))
		if len(out) >= 8192 {
			if _, err := w.Write(out); err != nil {
				return err
			}
			out = out[:0]
		}
	}
}
