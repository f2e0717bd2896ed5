package openai_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/openai"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/domain/media/wav"
)

// server emulates an OpenAI-compatible server: transcriptions hear
// mediatest.FakeSpeech through FakeTranscriber; chat completions group
// the sentences three by three, in the form answer gives (a function of
// the request's number, from 1, and the well-formed JSON).
type server struct {
	*httptest.Server
	requests atomic.Int32
	status   func(n int) int                 // nil: 200
	answer   func(n int, good string) string // nil: good
	delay    time.Duration
}

func newServer(t *testing.T) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *server) client(t *testing.T, cfg openai.Config) *openai.Client {
	t.Helper()
	cfg.BaseURL = s.URL + "/v1"
	cfg.APIKey = "sk-test"
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Millisecond
	}
	c, err := openai.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":%q,"type":"invalid_request_error"}}`, msg)
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	n := int(s.requests.Add(1))
	time.Sleep(s.delay)
	if r.Header.Get("Authorization") != "Bearer sk-test" {
		fail(w, http.StatusUnauthorized, "Incorrect API key provided")
		return
	}
	if s.status != nil {
		if code := s.status(n); code != http.StatusOK {
			fail(w, code, "the server says no")
			return
		}
	}
	switch r.URL.Path {
	case "/v1/audio/transcriptions":
		s.transcribe(w, r)
	case "/v1/chat/completions":
		s.chat(w, r, n)
	default:
		fail(w, http.StatusNotFound, "no route "+r.URL.Path)
	}
}

func (s *server) transcribe(w http.ResponseWriter, r *http.Request) {
	f, _, err := r.FormFile("file")
	if err != nil || r.FormValue("model") != "whisper-1" || r.FormValue("response_format") != "verbose_json" {
		fail(w, http.StatusBadRequest, "file, model and response_format are required")
		return
	}
	b, _ := io.ReadAll(f)
	format, pcm, err := wav.Decode(b)
	if err != nil || format.SampleRate != media.SampleRate {
		fail(w, http.StatusBadRequest, "could not decode the audio file")
		return
	}
	lang := r.FormValue("language")
	if lang != "en" && lang != "ko" && lang != "" {
		fail(w, http.StatusBadRequest, "unsupported language "+lang)
		return
	}
	tr, _ := mediatest.FakeTranscriber{}.Transcribe(r.Context(), pcm, "en")
	type seg struct {
		Start, End float64
		Text       string
		AvgLogprob float64 `json:"avg_logprob"`
	}
	out := struct {
		Text     string `json:"text"`
		Segments []seg  `json:"segments"`
	}{Text: tr.Text(), Segments: []seg{}}
	for _, sg := range tr.Segments {
		out.Segments = append(out.Segments, seg{sg.Start.Seconds(), sg.End.Seconds() + 0.5, " " + sg.Text, -0.2}) // whisper's end may overshoot
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (s *server) chat(w http.ResponseWriter, r *http.Request, n int) {
	var req struct {
		Model    string
		Messages []struct{ Role, Content string }
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) != 2 {
		fail(w, http.StatusBadRequest, "bad request")
		return
	}
	content := req.Messages[1].Content
	var sentences []string
	if err := json.Unmarshal([]byte(content[strings.Index(content, "\n[")+1:]), &sentences); err != nil {
		fail(w, http.StatusBadRequest, "no sentences")
		return
	}
	type para struct {
		Sentences  []int    `json:"sentences"`
		Highlights []string `json:"highlights"`
	}
	var a struct {
		Paragraphs []para `json:"paragraphs"`
	}
	for i := 0; i < len(sentences); i += 3 {
		p := para{Highlights: []string{"quantum chromodynamics"}} // not in the text: dropped
		for j := i; j < min(i+3, len(sentences)); j++ {
			p.Sentences = append(p.Sentences, j)
		}
		p.Highlights = append(p.Highlights, "**"+strings.Fields(sentences[i])[1]+"**")
		a.Paragraphs = append(a.Paragraphs, p)
	}
	good, _ := json.Marshal(a)
	answer := string(good)
	if s.answer != nil {
		answer = s.answer(n, answer)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "model": req.Model,
		"choices": []map[string]any{{"index": 0, "finish_reason": "stop", "message": map[string]string{"role": "assistant", "content": answer}}},
	})
}

func TestTranscriberContract(t *testing.T) {
	s := newServer(t)
	text := "Pick up the order. Then ride to the customer."
	mediatest.Transcriber(t, s.client(t, openai.Config{}), mediatest.Speech{PCM: mediatest.FakeSpeech(text), Lang: "en", Text: text})
}

func TestRestructurerContract(t *testing.T) {
	mediatest.Restructurer(t, newServer(t).client(t, openai.Config{}))
}

// fallback restructures a slice as one paragraph and counts its calls.
type fallback struct{ calls atomic.Int32 }

func (f *fallback) Restructure(_ context.Context, s []string, _ string) ([]media.Paragraph, error) {
	f.calls.Add(1)
	return []media.Paragraph{{Sentences: s}}, nil
}

func TestRestructureReadsAnswersDefensively(t *testing.T) {
	sentences := mediatest.Lecture["en"][:6]
	for _, tc := range []struct {
		name       string
		answer     func(n int, good string) string
		requests   int
		highlights bool // the well-formed highlight survives
		fallback   bool // the slice went to the fallback
	}{
		{"well_formed", nil, 1, true, false},
		{"fenced_with_prose", func(_ int, g string) string {
			return "Sure! Here is the JSON:\n```json\n" + g + "\n```\nLet me know {if} you need more."
		}, 1, true, false},
		{"indexes_from_one_as_strings", func(int, string) string {
			return `{"paragraphs": [{"sentences": ["1", "2", "3"], "highlights": ["delivery"]}, {"sentences": [4, 5, 6]}]}`
		}, 1, true, false},
		{"missing_highlights", func(int, string) string {
			return `{"paragraphs": [{"sentences": [0, 1, 2, 3, 4, 5]}]}`
		}, 1, false, false},
		{"garbage_then_well_formed", func(n int, g string) string {
			if n < 3 {
				return "I cannot help with that."
			}
			return g
		}, 3, true, false},
		{"a_sentence_left_out", func(int, string) string {
			return `{"paragraphs": [{"sentences": [0, 1, 2]}, {"sentences": [4, 5]}]}`
		}, 4, false, true},
		{"truncated_json", func(_ int, g string) string { return g[:len(g)/2] }, 4, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			s.answer = tc.answer
			fb := &fallback{}
			ps, err := s.client(t, openai.Config{Fallback: fb}).Restructure(context.Background(), sentences, "en")
			if err != nil {
				t.Fatal(err)
			}
			mediatest.CheckParagraphs(t, sentences, ps)
			if int(s.requests.Load()) != tc.requests || (fb.calls.Load() > 0) != tc.fallback {
				t.Fatalf("%d requests, fallback called %d times", s.requests.Load(), fb.calls.Load())
			}
			var hs []string
			for _, p := range ps {
				hs = append(hs, p.Highlights...)
			}
			if (len(hs) > 0) != tc.highlights || strings.Contains(strings.Join(hs, " "), "quantum") {
				t.Fatalf("highlights %q", hs)
			}
		})
	}
}

// Slices of six go one by one; only the slice the model keeps failing
// goes to the fallback.
func TestRestructureSlices(t *testing.T) {
	s := newServer(t)
	sentences := append(append([]string{}, mediatest.Lecture["en"]...), mediatest.Lecture["en"][:3]...) // 15: 6 + 6 + 3
	s.answer = func(n int, g string) string {
		if n >= 2 && n <= 5 { // every try of the second slice
			return "{}"
		}
		return g
	}
	fb := &fallback{}
	ps, err := s.client(t, openai.Config{Fallback: fb}).Restructure(context.Background(), sentences, "en")
	if err != nil {
		t.Fatal(err)
	}
	mediatest.CheckParagraphs(t, sentences, ps)
	if s.requests.Load() != 6 || fb.calls.Load() != 1 || len(ps) != 2+1+1 {
		t.Fatalf("%d requests, %d fallbacks, %d paragraphs", s.requests.Load(), fb.calls.Load(), len(ps))
	}
	// Without a fallback the slice's failure is the call's.
	s.requests.Store(0)
	_, err = s.client(t, openai.Config{}).Restructure(context.Background(), sentences, "en")
	if !errors.Is(err, media.ErrUnavailable) {
		t.Fatalf("no fallback: %v", err)
	}
}

func TestServerFailures(t *testing.T) {
	pcm := mediatest.FakeSpeech("hello there")
	t.Run("5xx_then_ok_is_retried", func(t *testing.T) {
		s := newServer(t)
		s.status = func(n int) int {
			return map[bool]int{true: http.StatusServiceUnavailable, false: http.StatusOK}[n <= 2]
		}
		tr, err := s.client(t, openai.Config{}).Transcribe(context.Background(), pcm, "en")
		if err != nil || tr.Text() != "hello there" || s.requests.Load() != 3 {
			t.Fatalf("%q, %v after %d requests", tr.Text(), err, s.requests.Load())
		}
	})
	t.Run("5xx_always_is_unavailable", func(t *testing.T) {
		s := newServer(t)
		s.status = func(int) int { return http.StatusBadGateway }
		_, err := s.client(t, openai.Config{Retries: 2}).Transcribe(context.Background(), pcm, "en")
		if !errors.Is(err, media.ErrUnavailable) || s.requests.Load() != 3 {
			t.Fatalf("%v after %d requests", err, s.requests.Load())
		}
	})
	t.Run("timeout_is_unavailable", func(t *testing.T) {
		s := newServer(t)
		s.delay = 300 * time.Millisecond
		_, err := s.client(t, openai.Config{Timeout: 50 * time.Millisecond, Retries: 1}).Transcribe(context.Background(), pcm, "en")
		if !errors.Is(err, media.ErrUnavailable) || s.requests.Load() != 2 {
			t.Fatalf("%v after %d requests", err, s.requests.Load())
		}
	})
	t.Run("4xx_is_not_retried_and_says_why", func(t *testing.T) {
		s := newServer(t)
		c, _ := openai.New(openai.Config{BaseURL: s.URL + "/v1", APIKey: "wrong"})
		_, err := c.Restructure(context.Background(), []string{"One.", "Two."}, "en")
		var api *openai.APIError
		if !errors.As(err, &api) || api.Status != 401 || api.Message != "Incorrect API key provided" || s.requests.Load() != 1 {
			t.Fatalf("%v after %d requests", err, s.requests.Load())
		}
		_, err = s.client(t, openai.Config{}).Transcribe(context.Background(), pcm, "tlh")
		if !errors.Is(err, media.ErrUnusable) || !strings.Contains(err.Error(), "unsupported language tlh") {
			t.Fatalf("bad language: %v", err)
		}
	})
	t.Run("rate_limit_is_retried", func(t *testing.T) {
		s := newServer(t)
		s.status = func(n int) int { return map[bool]int{true: http.StatusTooManyRequests, false: http.StatusOK}[n == 1] }
		if _, err := s.client(t, openai.Config{}).Transcribe(context.Background(), pcm, "en"); err != nil || s.requests.Load() != 2 {
			t.Fatalf("%v after %d requests", err, s.requests.Load())
		}
	})
	if _, err := openai.New(openai.Config{}); err == nil {
		t.Fatal("a client without BaseURL")
	}
}
