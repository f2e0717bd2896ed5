package api_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/domain/media/wav"
	"github.com/tideline/tideline/internal/poll"
	transcriptionv1 "github.com/tideline/tideline/schemas/gen/tideline/transcription/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/transcription/v1/transcriptionv1connect"
)

const librivox = "/usr/share/pocketsphinx/test/data/librivox"

// lectureAudio is the LibriVox recordings Debian's pocketsphinx-testdata
// ships (29 s in all), one after another with a second of silence
// between, as 16 kHz PCM, and their reference text: the first n of them,
// or all five for n = 0. Each second decoded costs about a second of CPU
// under -race: tests of other paths than the decoder's take fewer.
func lectureAudio(tb testing.TB, n int) (pcm []byte, reference string) {
	tb.Helper()
	mediatest.Need(tb, "pocketsphinx_continuous", "pocketsphinx")
	mediatest.NeedFile(tb, filepath.Join(librivox, "transcription"), "pocketsphinx-testdata")
	f, err := os.Open(filepath.Join(librivox, "transcription"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var ref []string
	taken := 0
	for sc := bufio.NewScanner(f); sc.Scan() && (n == 0 || taken < n); {
		line := sc.Text()
		open, close := strings.LastIndexByte(line, '('), strings.LastIndexByte(line, ')')
		if open < 0 || close < open {
			continue
		}
		wav, err := os.ReadFile(filepath.Join(librivox, line[open+1:close]+".wav"))
		if err != nil {
			tb.Fatal(err)
		}
		p, err := media.PCMFromWAV(wav)
		if err != nil {
			tb.Fatal(err)
		}
		pcm = append(append(pcm, p...), make([]byte, 2*media.SampleRate)...)
		words := strings.Fields(line[:open])
		ref = append(ref, slices.DeleteFunc(words, func(w string) bool { return w == "<s>" || w == "</s>" })...)
		taken++
	}
	return pcm, strings.Join(ref, " ")
}

// streamLecture streams pcm in chunks of 200 ms, paced at speed times
// real time (0: as fast as the stream takes it), and returns the final
// segments, each with how long after its audio was sent it arrived.
func streamLecture(tb testing.TB, c transcriptionv1connect.TranscriptionServiceClient, tok, id string, pcm []byte, speed float64) (finals []*transcriptionv1.Segment, partials int, lags []time.Duration, ended *transcriptionv1.StreamLectureResponse_Ended) {
	return streamAudio(tb, c, tok, id, "", pcm, speed)
}

// streamAudio is streamLecture for audio in format.
func streamAudio(tb testing.TB, c transcriptionv1connect.TranscriptionServiceClient, tok, id, format string, pcm []byte, speed float64) (finals []*transcriptionv1.Segment, partials int, lags []time.Duration, ended *transcriptionv1.StreamLectureResponse_Ended) {
	tb.Helper()
	s := c.StreamLecture(context.Background())
	s.RequestHeader().Set("Authorization", "Bearer "+tok)
	if err := s.Send(&transcriptionv1.StreamLectureRequest{Msg: &transcriptionv1.StreamLectureRequest_Start_{Start: &transcriptionv1.StreamLectureRequest_Start{LectureId: id, Title: "Sense and Sensibility, chapter 1", Format: format}}}); err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		const chunk = media.SampleRate * 2 / 5 // 200 ms
		for i := 0; i < len(pcm); i += chunk {
			if speed > 0 {
				if d := time.Until(start.Add(time.Duration(float64(media.PCMDuration(pcm[:i])) / speed))); d > 0 {
					time.Sleep(d) // pacing the audio as a microphone would
				}
			}
			if err := s.Send(&transcriptionv1.StreamLectureRequest{Msg: &transcriptionv1.StreamLectureRequest_Audio{Audio: pcm[i:min(i+chunk, len(pcm))]}}); err != nil {
				sent <- err
				return
			}
		}
		sent <- s.CloseRequest()
	}()
	for {
		msg, err := s.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		switch m := msg.Msg.(type) {
		case *transcriptionv1.StreamLectureResponse_Final:
			finals = append(finals, m.Final)
			if speed > 0 { // the lag from when the utterance's last audio went
				lags = append(lags, time.Since(start.Add(time.Duration(float64(time.Duration(m.Final.EndMs)*time.Millisecond)/speed))))
			}
		case *transcriptionv1.StreamLectureResponse_Partial:
			partials++
		case *transcriptionv1.StreamLectureResponse_Ended_:
			ended = m.Ended
		}
	}
	if err := <-sent; err != nil {
		tb.Fatal(err)
	}
	if err := s.CloseResponse(); err != nil {
		tb.Fatal(err)
	}
	return finals, partials, lags, ended
}

func transcript(segs []*transcriptionv1.Segment) string {
	var ws []string
	for _, s := range segs {
		ws = append(ws, s.Text)
	}
	return strings.Join(ws, " ")
}

// A lecture streamed as it is spoken comes back as final segments, each
// stored as an event, then restructured into paragraphs.
func TestLectureStreamEndToEnd(t *testing.T) {
	pcm, reference := lectureAudio(t, 2) // 2 of the 5 recordings: CI's time (the decoder's own tests take all 5)
	t.Parallel()
	f := start(t)
	c := transcriptionv1connect.NewTranscriptionServiceClient(h2c, f.URL)
	kim := f.Token(t, "kim", auth.Walker)
	finals, _, _, ended := streamLecture(t, c, kim, "austen-1", pcm, 0)
	if ended == nil || int(ended.Segments) != len(finals) || len(finals) < 2 { // one a recording at least
		t.Fatalf("ended %v after %d finals", ended, len(finals))
	}
	for i, s := range finals {
		if s.Index != int32(i) || s.EndMs <= s.StartMs || i > 0 && s.StartMs < finals[i-1].EndMs {
			t.Fatalf("segment %d: %+v", i, s)
		}
	}
	wer := mediatest.WordErrorRate(reference, transcript(finals))
	t.Logf("word error rate %.2f over %d words: %q", wer, len(strings.Fields(reference)), transcript(finals))
	if wer > 0.5 {
		t.Errorf("word error rate %.2f, want at most 0.5", wer)
	}
	ctx := context.Background()
	got, err := c.GetLecture(ctx, withToken(&transcriptionv1.GetLectureRequest{LectureId: "austen-1"}, kim))
	if err != nil || got.Msg.Lecture.State != transcriptionv1.LectureState_LECTURE_STATE_ENDED || transcript(got.Msg.Lecture.Segments) != transcript(finals) {
		t.Fatalf("GetLecture: %v, %v", got, err)
	}
	// Streaming to an ended lecture is refused.
	s := c.StreamLecture(ctx)
	s.RequestHeader().Set("Authorization", "Bearer "+kim)
	s.Send(&transcriptionv1.StreamLectureRequest{Msg: &transcriptionv1.StreamLectureRequest_Start_{Start: &transcriptionv1.StreamLectureRequest_Start{LectureId: "austen-1"}}})
	s.CloseRequest()
	if _, err := s.Receive(); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("streaming to an ended lecture: %v, want FailedPrecondition", err)
	}

	r, err := c.RestructureLecture(ctx, withToken(&transcriptionv1.RestructureLectureRequest{LectureId: "austen-1"}, kim))
	if err != nil || r.Msg.Version != 1 || r.Msg.Already {
		t.Fatalf("RestructureLecture: %v, %v", r, err)
	}
	var l *transcriptionv1.Lecture
	poll.Until(t, 2*time.Minute, "paragraphs", func() bool {
		got, err := c.GetLecture(ctx, withToken(&transcriptionv1.GetLectureRequest{LectureId: "austen-1"}, kim))
		if err != nil {
			t.Fatal(err)
		}
		l = got.Msg.Lecture
		return l.ParagraphsVersion == 1 || l.RestructureFailure != ""
	})
	var sentences []string
	for _, p := range l.Paragraphs {
		sentences = append(sentences, p.Sentences...)
		for _, h := range p.Highlights {
			if !strings.Contains(strings.Join(p.Sentences, " "), h) {
				t.Errorf("highlight %q is not in its paragraph %q", h, p.Sentences)
			}
		}
	}
	if l.ParagraphsEngine != "textrank" || strings.Join(sentences, " ") != transcript(finals) {
		t.Fatalf("paragraphs by %q: %q; failure %q", l.ParagraphsEngine, sentences, l.RestructureFailure)
	}
	again, err := c.RestructureLecture(ctx, withToken(&transcriptionv1.RestructureLectureRequest{LectureId: "austen-1"}, kim))
	if err != nil || !again.Msg.Already || again.Msg.Version != 1 {
		t.Fatalf("restructuring again with nothing new: %v, %v", again, err)
	}
	list, err := c.ListLectures(ctx, withToken(&transcriptionv1.ListLecturesRequest{MinPosition: again.Msg.Position}, kim))
	if err != nil || list.Msg.Total != 1 || int(list.Msg.Lectures[0].Segments) != len(finals) {
		t.Fatalf("ListLectures: %v, %v", list, err)
	}
	// Another user's lecture of the same id is another lecture.
	lee := f.Token(t, "lee", auth.Walker)
	if _, err := c.GetLecture(ctx, withToken(&transcriptionv1.GetLectureRequest{LectureId: "austen-1"}, lee)); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("another user's lecture: %v, want NotFound", err)
	}
}

// BenchmarkLectureStream streams the LibriVox lecture: once as fast as
// the server takes it, for the real-time factor (wall time over audio
// time, everything included), then b.N times at real time, as a
// microphone sends, for how long after an utterance's last audio its
// final segment arrives (p50, p99). It reports the word error rate too.
func BenchmarkLectureStream(b *testing.B) {
	pcm, reference := lectureAudio(b, 0)
	f := start(b)
	c := transcriptionv1connect.NewTranscriptionServiceClient(h2c, f.URL)
	kim := f.Token(b, "kim", auth.Walker)
	t0 := time.Now()
	finals, _, _, _ := streamLecture(b, c, kim, "bench-fast", pcm, 0)
	rtf := time.Since(t0).Seconds() / media.PCMDuration(pcm).Seconds()
	wer := mediatest.WordErrorRate(reference, transcript(finals))
	var lags []time.Duration
	b.ResetTimer()
	for i := range b.N {
		_, _, l, _ := streamLecture(b, c, kim, fmt.Sprintf("bench-%d", i), pcm, 1)
		lags = append(lags, l...)
	}
	slices.Sort(lags)
	b.ReportMetric(rtf, "RTF")
	b.ReportMetric(float64(lags[len(lags)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lags[len(lags)*99/100].Milliseconds()), "p99-ms")
	b.ReportMetric(wer, "WER")
}

// A whole recording uploaded through a signed URL is transcribed in the
// background; a watcher sees the lecture grow and end.
func TestLectureRecordingEndToEnd(t *testing.T) {
	pcm, reference := lectureAudio(t, 2) // CI's time, as above
	t.Parallel()
	f := start(t)
	c := transcriptionv1connect.NewTranscriptionServiceClient(h2c, f.URL)
	kim := f.Token(t, "kim", auth.Walker)
	ctx := context.Background()
	up, err := c.CreateUpload(ctx, withToken(&transcriptionv1.CreateUploadRequest{}, kim))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, up.Msg.Url, bytes.NewReader(wav.Encode(pcm, media.PCM)))
	req.Header.Set("Content-Type", "audio/wav")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT recording: %v, %v", resp, err)
	}
	resp.Body.Close()
	if _, err := c.TranscribeRecording(ctx, withToken(&transcriptionv1.TranscribeRecordingRequest{LectureId: "rec-1", UploadName: up.Msg.Name}, kim)); err != nil {
		t.Fatal(err)
	}
	again, err := c.TranscribeRecording(ctx, withToken(&transcriptionv1.TranscribeRecordingRequest{LectureId: "rec-1", UploadName: up.Msg.Name}, kim))
	if err != nil || !again.Msg.Duplicate {
		t.Fatalf("the same request again: %v, %v", again, err)
	}
	// Generous: under -race, with every test of the package in parallel
	// on 2 cores, a recording of 29 s has taken 2 minutes.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	w, err := c.WatchLecture(wctx, withToken(&transcriptionv1.WatchLectureRequest{LectureId: "rec-1"}, kim))
	if err != nil {
		t.Fatal(err)
	}
	var updates int
	var l *transcriptionv1.Lecture
	for w.Receive() {
		updates++
		l = w.Msg().Lecture
		if l.State != transcriptionv1.LectureState_LECTURE_STATE_LIVE {
			break
		}
	}
	cancel()
	if l == nil || l.State != transcriptionv1.LectureState_LECTURE_STATE_ENDED || updates < 2 {
		// Seen twice in CI (ci39, ci78), never here: two segments, then
		// nothing for 5 minutes and no warning. Where the pipeline waits
		// says why, next time.
		t.Logf("goroutines of the lecture pipelines and engines:\n%s", stacksWith("lecturePipeline", "enginerun", "pocketsphinx", "Repository"))
		t.Fatalf("watch: %d updates, last %v (err %v)", updates, l, w.Err())
	}
	if wer := mediatest.WordErrorRate(reference, transcript(l.Segments)); wer > 0.5 {
		t.Errorf("word error rate %.2f", wer)
	}
	if l.DurationMs < media.PCMDuration(pcm).Milliseconds()-100 {
		t.Errorf("duration %d ms, the recording is %v", l.DurationMs, media.PCMDuration(pcm))
	}
}

// stacksWith returns the stacks of the process's goroutines that mention
// any of names.
func stacksWith(names ...string) string {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if slices.ContainsFunc(names, func(n string) bool { return strings.Contains(g, n) }) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// opus encodes PCM as Ogg Opus, as a phone would send it.
func opus(tb testing.TB, pcm []byte) []byte {
	tb.Helper()
	mediatest.Need(tb, "opusenc", "opus-tools")
	mediatest.Need(tb, "opusdec", "opus-tools")
	cmd := exec.Command("opusenc", "--quiet", "--raw", "--raw-rate", fmt.Sprint(media.SampleRate), "--raw-chan", "1", "--bitrate", "24", "-", "-")
	cmd.Stdin = bytes.NewReader(pcm)
	out, err := cmd.Output()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// A lecture streamed as Ogg Opus, cut into arbitrary messages, and one
// uploaded as an Ogg Opus file, read as well as the PCM does; bytes that
// are not Opus end the stream with InvalidArgument.
func TestLectureInOggOpus(t *testing.T) {
	pcm, reference := lectureAudio(t, 1) // one recording, decoded twice: CI's time
	ogg := opus(t, pcm)
	t.Parallel()
	f := start(t)
	c := transcriptionv1connect.NewTranscriptionServiceClient(h2c, f.URL)
	kim := f.Token(t, "kim", auth.Walker)
	finals, _, _, ended := streamAudio(t, c, kim, "opus-1", "ogg-opus", ogg, 0)
	if ended == nil || len(finals) < 1 {
		t.Fatalf("ended %v after %d finals", ended, len(finals))
	}
	if wer := mediatest.WordErrorRate(reference, transcript(finals)); wer > 0.5 {
		t.Errorf("streamed Opus: word error rate %.2f: %q", wer, transcript(finals))
	} else {
		t.Logf("streamed Opus: word error rate %.2f", wer)
	}
	ctx := context.Background()
	up, err := c.CreateUpload(ctx, withToken(&transcriptionv1.CreateUploadRequest{}, kim))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, up.Msg.Url, bytes.NewReader(ogg))
	req.Header.Set("Content-Type", "audio/ogg")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT recording: %v, %v", resp, err)
	}
	resp.Body.Close()
	if _, err := c.TranscribeRecording(ctx, withToken(&transcriptionv1.TranscribeRecordingRequest{LectureId: "opus-2", UploadName: up.Msg.Name}, kim)); err != nil {
		t.Fatal(err)
	}
	var l *transcriptionv1.Lecture
	poll.Until(t, 5*time.Minute, "the Opus recording transcribed", func() bool {
		got, err := c.GetLecture(ctx, withToken(&transcriptionv1.GetLectureRequest{LectureId: "opus-2"}, kim))
		if err != nil {
			t.Fatal(err)
		}
		l = got.Msg.Lecture
		return l.State != transcriptionv1.LectureState_LECTURE_STATE_LIVE
	})
	if wer := mediatest.WordErrorRate(reference, transcript(l.Segments)); l.State != transcriptionv1.LectureState_LECTURE_STATE_ENDED || wer > 0.5 {
		t.Errorf("uploaded Opus: %v (%s), word error rate %.2f", l.State, l.Failure, wer)
	} else {
		t.Logf("uploaded Opus: word error rate %.2f", wer)
	}

	s := c.StreamLecture(ctx)
	s.RequestHeader().Set("Authorization", "Bearer "+kim)
	s.Send(&transcriptionv1.StreamLectureRequest{Msg: &transcriptionv1.StreamLectureRequest_Start_{Start: &transcriptionv1.StreamLectureRequest_Start{LectureId: "opus-3", Format: "ogg-opus"}}})
	s.Send(&transcriptionv1.StreamLectureRequest{Msg: &transcriptionv1.StreamLectureRequest_Audio{Audio: pcm[:64000]}}) // PCM, not Opus
	s.CloseRequest()
	for {
		if _, err = s.Receive(); err != nil {
			break
		}
	}
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "audio") {
		t.Errorf("PCM sent as Opus: %v, want InvalidArgument naming audio", err)
	}
	s = c.StreamLecture(ctx)
	s.RequestHeader().Set("Authorization", "Bearer "+kim)
	s.Send(&transcriptionv1.StreamLectureRequest{Msg: &transcriptionv1.StreamLectureRequest_Start_{Start: &transcriptionv1.StreamLectureRequest_Start{LectureId: "opus-4", Format: "mp3"}}})
	s.CloseRequest()
	if _, err := s.Receive(); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "start.format") {
		t.Errorf("format mp3: %v, want InvalidArgument naming start.format", err)
	}
}
