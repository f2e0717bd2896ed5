package reactions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	tr "github.com/tideline/tideline/domain/transcription"
	transcriptionv1 "github.com/tideline/tideline/schemas/gen/tideline/transcription/v1"
)

// Lecture reactions' names: stable (each is a durable consumer).
const (
	LectureRecordingName   = "lecture-recording"
	LectureRestructureName = "lecture-restructure"
)

// LectureEngines are what the lecture reactions use.
type LectureEngines struct {
	Blobs       media.Blobs
	Transcriber media.Transcriber
	// Decoder decodes recordings uploaded as Ogg Opus; nil: WAV only.
	Decoder      media.Decoder
	Restructurer media.Restructurer
	// Fallback restructures when Restructurer keeps failing (the local
	// engine behind an LLM); nil: none.
	Fallback media.Restructurer
	Logger   *slog.Logger
}

// LectureReactions transcribe uploaded recordings and restructure
// transcripts.
//
// A recording is cut into utterances at pauses and each transcribed and
// appended as a segment in order; a redelivered commit resumes after the
// last segment stored, so nothing is appended twice. An engine that is
// unavailable holds the lecture (redelivered until it is back); a
// recording the engine cannot use fails the lecture with the reason.
func LectureReactions(svc *tr.Service, e LectureEngines) []Reaction {
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
	if e.Transcriber == nil {
		e.Transcriber = noTranscriber{}
	}
	if e.Restructurer == nil {
		e.Restructurer = noRestructurer{}
	}
	l := &lecturePipeline{svc: svc, e: e}
	return []Reaction{
		{Name: LectureRecordingName, Subjects: []string{"ev.transcription.lecture.>"}, Handle: l.recording},
		{Name: LectureRestructureName, Subjects: []string{"ev.transcription.lecture.>"}, Handle: l.restructure},
	}
}

type lecturePipeline struct {
	svc *tr.Service
	e   LectureEngines
}

func engineErr(what string, err error) error {
	if errors.Is(err, media.ErrUnavailable) {
		return es.Wrap(es.Unavailable, what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (p *lecturePipeline) recording(ctx context.Context, c es.Commit) error {
	var started bool
	for _, ev := range c.Events {
		if s, ok := ev.Data.(*transcriptionv1.LectureStarted); ok && s.Recording != nil {
			started = true
		}
	}
	if !started {
		return nil
	}
	l, _, err := p.svc.Lecture(ctx, c.Stream)
	if err != nil {
		return err
	}
	if l.Ended || l.Failure != "" {
		return nil
	}
	fail := func(reason string) error {
		_, err := p.svc.Advance(ctx, c.Stream, tr.Fail{Reason: reason})
		return err
	}
	r, _, err := p.e.Blobs.Open(ctx, l.Recording.Bucket, l.Recording.Name)
	if errors.Is(err, media.ErrNotFound) {
		return fail("the recording is gone from storage")
	}
	if err != nil {
		return engineErr("open recording", errors.Join(media.ErrUnavailable, err))
	}
	pcm, err := p.pcm(ctx, r, l.Recording.ContentType)
	r.Close()
	if errors.Is(err, media.ErrUnusable) {
		return fail(err.Error())
	}
	if err != nil {
		return engineErr("read recording", err)
	}
	var done = l.Duration // segments already stored end here: resume after them
	var split tr.Splitter
	us := split.Write(pcm)
	us = append(us, split.Flush()...)
	for _, u := range us {
		if len(l.Segments) > 0 && u.Start < done {
			continue
		}
		t, err := p.e.Transcriber.Transcribe(ctx, u.PCM, l.Lang)
		if errors.Is(err, media.ErrUnusable) {
			return fail(err.Error())
		}
		if err != nil {
			return engineErr("transcribe", err)
		}
		text := strings.TrimSpace(t.Text())
		if text == "" {
			continue
		}
		if _, err := p.svc.Advance(ctx, c.Stream, tr.AddSegment{Start: u.Start, End: u.End(), Text: text, Confidence: t.Confidence()}); err != nil {
			return err
		}
	}
	_, err = p.svc.Advance(ctx, c.Stream, tr.End{Duration: media.PCMDuration(pcm)})
	return err
}

func (p *lecturePipeline) restructure(ctx context.Context, c es.Commit) error {
	var asked *transcriptionv1.RestructureRequested
	for _, ev := range c.Events {
		if r, ok := ev.Data.(*transcriptionv1.RestructureRequested); ok {
			asked = r
		}
	}
	if asked == nil {
		return nil
	}
	l, _, err := p.svc.Lecture(ctx, c.Stream)
	if err != nil {
		return err
	}
	if l.Requested != asked.Version || l.Latest != nil && l.Latest.Version >= asked.Version {
		return nil // superseded, or made already
	}
	n := min(int(asked.Segments), len(l.Segments))
	sentences := tr.Lecture{Segments: l.Segments[:n]}.Sentences()
	engine := asked.Engine
	paras, err := p.e.Restructurer.Restructure(ctx, sentences, l.Lang)
	if err != nil && p.e.Fallback != nil && !errors.Is(err, media.ErrUnusable) {
		p.e.Logger.Warn("restructuring engine failed; using the local one", "engine", engine, "err", err)
		paras, err = p.e.Fallback.Restructure(ctx, sentences, l.Lang)
		engine += "+fallback"
	}
	switch {
	case errors.Is(err, media.ErrUnavailable):
		return engineErr("restructure", err)
	case err != nil:
		_, err = p.svc.Advance(ctx, c.Stream, tr.FailRestructure{Version: asked.Version, Reason: err.Error()})
		return err
	}
	_, err = p.svc.Advance(ctx, c.Stream, tr.RecordRestructured{Version: asked.Version, Engine: engine, Paragraphs: paras})
	return err
}

// noTranscriber and noRestructurer stand for engines the server was not
// given: their lectures wait.
type (
	noTranscriber  struct{}
	noRestructurer struct{}
)

func (noTranscriber) Transcribe(context.Context, []byte, string) (media.Transcript, error) {
	return media.Transcript{}, fmt.Errorf("%w: no speech-to-text engine configured", media.ErrUnavailable)
}

func (noRestructurer) Restructure(context.Context, []string, string) ([]media.Paragraph, error) {
	return nil, fmt.Errorf("%w: no restructuring engine configured", media.ErrUnavailable)
}

// pcm reads a recording of contentType (WAV, or Ogg Opus through the
// Decoder) as the ports' PCM.
func (p *lecturePipeline) pcm(ctx context.Context, r io.Reader, contentType string) ([]byte, error) {
	r = io.LimitReader(r, tr.MaxRecordingBytes+1)
	if contentType != "audio/ogg" {
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, errors.Join(media.ErrUnavailable, err)
		}
		return media.PCMFromWAV(b)
	}
	if p.e.Decoder == nil {
		return nil, fmt.Errorf("%w: no Ogg Opus decoder configured", media.ErrUnavailable)
	}
	in, out, err := p.e.Decoder.Decode(ctx, contentType)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(in, r)
		in.Close()
		copied <- err
	}()
	pcm, err := io.ReadAll(out)
	if cerr := <-copied; err == nil && cerr != nil {
		err = errors.Join(media.ErrUnavailable, cerr)
	}
	return pcm, err
}
