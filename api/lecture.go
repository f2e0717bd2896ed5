package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	tr "github.com/tideline/tideline/domain/transcription"
	lecturemodel "github.com/tideline/tideline/projections/lecture"
	transcriptionv1 "github.com/tideline/tideline/schemas/gen/tideline/transcription/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/transcription/v1/transcriptionv1connect"
)

// Lectures is what TranscriptionService needs beyond the domain service.
type Lectures struct {
	// List is the lectures list and Feed its runner.
	List *lecturemodel.Model
	Feed ReadModel
	// Transcriber transcribes streamed speech; nil makes StreamLecture
	// Unavailable.
	Transcriber media.Transcriber
	// Decoder decodes Ogg Opus; nil: PCM and WAV only.
	Decoder media.Decoder
	// Engine names the restructuring engine configured, e.g. "textrank".
	Engine string
	Links  media.Links
	// UploadTTL is how long an upload URL works; default 15 minutes.
	UploadTTL time.Duration
}

// TranscriptionServices serves tideline.transcription.v1.TranscriptionService.
func TranscriptionServices(svc *tr.Service, l Lectures) []Service {
	if l.UploadTTL <= 0 {
		l.UploadTTL = 15 * time.Minute
	}
	return []Service{{Name: transcriptionv1connect.TranscriptionServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return transcriptionv1connect.NewTranscriptionServiceHandler(&lectureHandler{rt: rt, svc: svc, l: l}, opts)
	}}}
}

type lectureHandler struct {
	rt  *runtime
	svc *tr.Service
	l   Lectures
}

// partialEvery spaces the partial segments of an utterance in progress.
const partialEvery = 1500 * time.Millisecond

// The audio formats StreamLecture takes.
const (
	formatPCM  = "pcm"
	formatOpus = "ogg-opus"
)

// receiveOpus decodes the stream's Ogg Opus as it comes: the messages go
// to the decoder, its PCM to feed, and its end to flush.
func (h *lectureHandler) receiveOpus(ctx context.Context, s *connect.BidiStream[transcriptionv1.StreamLectureRequest, transcriptionv1.StreamLectureResponse], feed func([]byte) error, flush func()) error {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in, out, err := h.l.Decoder.Decode(dctx, "audio/ogg")
	if err != nil {
		return es.Wrap(es.Unavailable, "audio decoder", err)
	}
	decoded := make(chan error, 1)
	go func() {
		defer out.Close()
		buf := make([]byte, 16<<10)
		for {
			n, err := out.Read(buf[:len(buf)&^1])
			if n > 0 {
				if ferr := feed(buf[:n]); ferr != nil {
					decoded <- ferr
					return
				}
			}
			if errors.Is(err, io.EOF) {
				flush()
				decoded <- nil
				return
			}
			if err != nil {
				decoded <- es.Invalidf("audio", "%v", err)
				return
			}
		}
	}()
	for {
		msg, err := s.Receive()
		if errors.Is(err, io.EOF) {
			in.Close()
			return <-decoded
		}
		if err == nil && msg.GetStart() != nil {
			err = es.Invalidf("start", "is sent once, first")
		}
		if err == nil {
			_, err = in.Write(msg.GetAudio())
		}
		if err != nil {
			in.Close()
			cancel()
			if derr := <-decoded; derr != nil && es.KindOf(derr) == es.Invalid {
				return derr // the decoder's reason: the audio is not Ogg Opus
			}
			return err
		}
	}
}

// StreamLecture transcribes a lecture as it is streamed (see the proto).
// The receive loop cuts the audio into utterances at pauses; one worker
// transcribes them in order, appends each final segment and sends it,
// and, when idle, transcribes the utterance in progress as a partial. The
// queue between them is bounded, so a client faster than the engine is
// slowed by flow control rather than held in memory.
func (h *lectureHandler) StreamLecture(ctx context.Context, s *connect.BidiStream[transcriptionv1.StreamLectureRequest, transcriptionv1.StreamLectureResponse]) error {
	release, err := h.rt.liveSlot()
	if err != nil {
		return err
	}
	defer release()
	first, err := s.Receive()
	if err != nil {
		return es.Invalidf("start", "the first message must be start: %v", err)
	}
	start := first.GetStart()
	if start == nil {
		return es.Invalidf("start", "the first message must be start")
	}
	p := caller(ctx)
	lecture, _, err := h.svc.Open(ctx, p, start.LectureId, start.Title, start.Lang)
	if err != nil {
		return err
	}
	format := start.Format
	switch format {
	case "", formatPCM:
	case formatOpus:
		if h.l.Decoder == nil {
			return es.Errorf(es.Unavailable, "Ogg Opus is off: this server has no decoder (install opus-tools)")
		}
	default:
		return es.Invalidf("start.format", "must be %q or %q, got %q", formatPCM, formatOpus, format)
	}
	if h.l.Transcriber == nil {
		return es.Errorf(es.Unavailable, "live transcription is off: this server has no speech engine (install pocketsphinx)")
	}
	offset := lecture.Duration // a continued lecture's audio follows what it had
	type job struct {
		u       tr.Utterance
		partial bool
	}
	jobs := make(chan job, 4)
	var busy atomic.Bool
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var last es.AppendResult
	failed := make(chan error, 1)
	done := make(chan struct{})
	// A partial in progress is cancelled when a final is queued: the
	// final is what the client waits for.
	var partialMu sync.Mutex
	cancelPartial := func() {}
	go func() {
		defer close(done)
		for j := range jobs {
			busy.Store(true)
			jctx := ctx
			if j.partial {
				var cancel context.CancelFunc
				jctx, cancel = context.WithCancel(ctx)
				partialMu.Lock()
				cancelPartial = cancel
				partialMu.Unlock()
			}
			err := h.transcribe(jctx, s, lecture, offset, j.u, j.partial, &last)
			busy.Store(false)
			if j.partial && jctx.Err() != nil && ctx.Err() == nil {
				continue // overtaken by the final
			}
			if err != nil {
				failed <- err
				cancel()
				for range jobs { // drain, so the receive loop never blocks on us
				}
				return
			}
		}
	}()
	var split tr.Splitter
	var lastPartial time.Duration
	// feed cuts pcm into utterances and queues them, and a partial of the
	// utterance in progress when the worker is idle.
	feed := func(pcm []byte) error {
		for _, u := range split.Write(pcm) {
			partialMu.Lock()
			cancelPartial()
			partialMu.Unlock()
			select {
			case jobs <- job{u: u}:
			case <-ctx.Done():
				return ctx.Err()
			}
			lastPartial = 0
		}
		if u, ok := split.Pending(); ok && !busy.Load() && len(jobs) == 0 && u.End()-u.Start-lastPartial >= partialEvery {
			lastPartial = u.End() - u.Start
			select {
			case jobs <- job{u: u, partial: true}:
			default:
			}
		}
		return nil
	}
	flush := func() {
		partialMu.Lock()
		cancelPartial()
		partialMu.Unlock()
		for _, u := range split.Flush() {
			jobs <- job{u: u}
		}
	}
	recvErr := func() error {
		defer close(jobs)
		if format == formatOpus {
			return h.receiveOpus(ctx, s, feed, flush)
		}
		for {
			msg, err := s.Receive()
			if errors.Is(err, io.EOF) {
				flush()
				return nil
			}
			if err != nil {
				return err
			}
			if msg.GetStart() != nil {
				return es.Invalidf("start", "is sent once, first")
			}
			pcm := msg.GetAudio()
			if len(pcm)%2 != 0 {
				return es.Invalidf("audio", "must be 16-bit samples: %d bytes is odd", len(pcm))
			}
			if err := feed(pcm); err != nil {
				return err
			}
		}
	}()
	<-done
	select {
	case err := <-failed:
		return err
	default:
	}
	if recvErr != nil {
		return recvErr // the client broke off: the lecture stays open to be continued
	}
	res, err := h.svc.Record(ctx, p, start.LectureId, tr.End{Duration: offset + split.Written()})
	if err != nil {
		return err
	}
	l, _, err := h.svc.Get(ctx, p, start.LectureId)
	if err != nil {
		return err
	}
	return s.Send(&transcriptionv1.StreamLectureResponse{Msg: &transcriptionv1.StreamLectureResponse_Ended_{Ended: &transcriptionv1.StreamLectureResponse_Ended{
		DurationMs: l.Duration.Milliseconds(), Segments: int32(len(l.Segments)), Position: max(res.Position.Seq, last.Position.Seq)}}})
}

// transcribe transcribes one utterance: a partial is only sent; a final
// segment with words is appended, then sent.
func (h *lectureHandler) transcribe(ctx context.Context, s *connect.BidiStream[transcriptionv1.StreamLectureRequest, transcriptionv1.StreamLectureResponse],
	l tr.Lecture, offset time.Duration, u tr.Utterance, partial bool, last *es.AppendResult) error {
	t, err := h.l.Transcriber.Transcribe(ctx, u.PCM, l.Lang)
	switch {
	case errors.Is(err, media.ErrUnavailable):
		return es.Wrap(es.Unavailable, "speech engine", err)
	case errors.Is(err, media.ErrUnusable):
		return es.Invalidf("audio", "%v", err)
	case err != nil:
		return err
	}
	text := strings.TrimSpace(t.Text())
	if text == "" {
		return nil
	}
	conf := t.Confidence()
	seg := &transcriptionv1.Segment{StartMs: (offset + u.Start).Milliseconds(), EndMs: (offset + u.End()).Milliseconds(), Text: text, Confidence: conf}
	if partial {
		return s.Send(&transcriptionv1.StreamLectureResponse{Msg: &transcriptionv1.StreamLectureResponse_Partial{Partial: seg}})
	}
	res, err := h.svc.Record(ctx, caller(ctx), l.ID, tr.AddSegment{Start: offset + u.Start, End: offset + u.End(), Text: text, Confidence: conf})
	if err != nil {
		return err
	}
	*last = res
	cur, _, err := h.svc.Get(ctx, caller(ctx), l.ID)
	if err != nil {
		return err
	}
	seg.Index, seg.Position = int32(len(cur.Segments)-1), res.Position.Seq
	return s.Send(&transcriptionv1.StreamLectureResponse{Msg: &transcriptionv1.StreamLectureResponse_Final{Final: seg}})
}

func (h *lectureHandler) CreateUpload(ctx context.Context, _ *connect.Request[transcriptionv1.CreateUploadRequest]) (*connect.Response[transcriptionv1.CreateUploadResponse], error) {
	p := caller(ctx)
	if err := tr.MayUse(p); err != nil {
		return nil, err
	}
	name := uploadName(tr.UploadPrefix(p.Subject))
	url, exp, err := h.l.Links.UploadURL(media.Upload{Bucket: tr.Bucket, Name: name,
		ContentTypes: []string{"audio/wav", "audio/x-wav", "audio/wave", "audio/ogg"}, MaxBytes: tr.MaxRecordingBytes}, h.l.UploadTTL)
	if err != nil {
		return nil, es.Wrap(es.Unavailable, "upload link", err)
	}
	return connect.NewResponse(&transcriptionv1.CreateUploadResponse{Name: name, Url: url, ExpiresAt: timestamppb.New(exp), MaxBytes: tr.MaxRecordingBytes}), nil
}

func (h *lectureHandler) TranscribeRecording(ctx context.Context, req *connect.Request[transcriptionv1.TranscribeRecordingRequest]) (*connect.Response[transcriptionv1.TranscribeRecordingResponse], error) {
	m := req.Msg
	res, dup, err := h.svc.TranscribeRecording(ctx, caller(ctx), m.LectureId, m.Title, m.Lang, m.UploadName)
	if err != nil {
		return nil, err
	}
	return withPosition(&transcriptionv1.TranscribeRecordingResponse{Position: res.Position.Seq, Duplicate: dup}, res.Position.Seq), nil
}

func (h *lectureHandler) lecture(ctx context.Context, id string) (*transcriptionv1.Lecture, error) {
	l, version, err := h.svc.Get(ctx, caller(ctx), id)
	if err != nil {
		return nil, err
	}
	out := &transcriptionv1.Lecture{LectureId: l.ID, OwnerId: l.Owner, Title: l.Title, Lang: l.Lang,
		State: transcriptionv1.LectureState_LECTURE_STATE_LIVE, DurationMs: l.Duration.Milliseconds(), Failure: l.Failure,
		Restructuring: l.Restructuring(), RestructureFailure: l.RestructureFailure, StartedAt: timestamppb.New(l.StartedAt), Version: version}
	switch {
	case l.Failure != "":
		out.State = transcriptionv1.LectureState_LECTURE_STATE_FAILED
	case l.Ended:
		out.State = transcriptionv1.LectureState_LECTURE_STATE_ENDED
	}
	for _, s := range l.Segments {
		out.Segments = append(out.Segments, &transcriptionv1.Segment{Index: s.Index, StartMs: s.Start.Milliseconds(),
			EndMs: s.End.Milliseconds(), Text: s.Text, Confidence: s.Confidence})
	}
	if v := l.Latest; v != nil {
		out.ParagraphsVersion, out.ParagraphsEngine = v.Version, v.Engine
		for _, p := range v.Paragraphs {
			out.Paragraphs = append(out.Paragraphs, &transcriptionv1.Paragraph{Sentences: p.Sentences, Highlights: p.Highlights})
		}
	}
	return out, nil
}

func (h *lectureHandler) GetLecture(ctx context.Context, req *connect.Request[transcriptionv1.GetLectureRequest]) (*connect.Response[transcriptionv1.GetLectureResponse], error) {
	if err := h.rt.checkPosition(ctx, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	l, err := h.lecture(ctx, req.Msg.LectureId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&transcriptionv1.GetLectureResponse{Lecture: l}), nil
}

func (h *lectureHandler) WatchLecture(ctx context.Context, req *connect.Request[transcriptionv1.WatchLectureRequest], s *connect.ServerStream[transcriptionv1.WatchLectureResponse]) error {
	if _, err := h.lecture(ctx, req.Msg.LectureId); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sent uint64
	var failed error
	err := live(ctx, h.rt, h.l.Feed, 0, s, func(time.Time) []*transcriptionv1.WatchLectureResponse {
		l, err := h.lecture(ctx, req.Msg.LectureId)
		if err != nil {
			failed = err
			cancel()
			return nil
		}
		if l.Version == sent {
			return nil
		}
		sent = l.Version
		return []*transcriptionv1.WatchLectureResponse{{Lecture: l}}
	})
	if failed != nil && ctx.Err() == nil {
		return failed
	}
	return err
}

func (h *lectureHandler) RestructureLecture(ctx context.Context, req *connect.Request[transcriptionv1.RestructureLectureRequest]) (*connect.Response[transcriptionv1.RestructureLectureResponse], error) {
	v, already, res, err := h.svc.Restructure(ctx, caller(ctx), req.Msg.LectureId, h.l.Engine)
	if err != nil {
		return nil, err
	}
	return withPosition(&transcriptionv1.RestructureLectureResponse{Version: v, Already: already, Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *lectureHandler) ListLectures(ctx context.Context, req *connect.Request[transcriptionv1.ListLecturesRequest]) (*connect.Response[transcriptionv1.ListLecturesResponse], error) {
	p := caller(ctx)
	if err := tr.MayUse(p); err != nil {
		return nil, err
	}
	limit := int(req.Msg.Limit)
	if limit == 0 {
		limit = 20
	}
	if limit < 1 || limit > 100 {
		return nil, es.Invalidf("limit", "must be between 1 and 100, got %d", req.Msg.Limit)
	}
	if err := h.rt.waitFor(ctx, h.l.Feed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	pos := h.l.Feed.Position()
	list, total := h.l.List.List(p.Subject, limit)
	return connect.NewResponse(&transcriptionv1.ListLecturesResponse{Lectures: list, Total: int64(total), Position: pos}), nil
}
