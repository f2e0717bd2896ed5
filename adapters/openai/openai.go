// Package openai reaches the production engines over HTTP with the
// OpenAI-compatible API that whisper servers, vLLM, llama.cpp's server and
// Ollama speak: speech to text with POST /audio/transcriptions (the PCM
// sent as a WAV file, verbose_json for segments), and the restructuring
// of a transcript with POST /chat/completions.
//
// Restructuring follows HEARUS's lecture pipeline: the transcript goes to
// the model in slices of six sentences, each slice retried on failure,
// and a slice the model keeps failing is restructured by the fallback
// (the offline one) instead. The model answers with the indexes of the
// sentences of each paragraph, not with rewritten text, so the sentences
// come back unchanged; its JSON is read defensively (code fences, text
// around it, missing fields, indexes from 1) and highlights not in their
// paragraph are dropped.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/wav"
)

// Config says where the server is and how to use it; zero fields but
// BaseURL take the defaults.
type Config struct {
	// BaseURL is the API's root, "/v1" included, e.g.
	// "http://localhost:8000/v1" or "https://api.openai.com/v1".
	BaseURL string
	// APIKey is sent as a bearer token when set.
	APIKey string
	// TranscriptionModel is the speech model: "whisper-1" by default.
	TranscriptionModel string
	// ChatModel is the language model: "gpt-4o-mini" by default.
	ChatModel string
	// HTTPClient sends the requests: http.DefaultClient by default.
	HTTPClient *http.Client
	// Timeout bounds one request: 2 minutes by default.
	Timeout time.Duration
	// Retries is how many times a failed request (or, for restructuring,
	// an unusable answer) is tried again: 3 by default; Backoff the first
	// wait between tries, doubled each time: 500 ms by default.
	Retries int
	Backoff time.Duration
	// SliceSize is how many sentences go to the model at once: 6.
	SliceSize int
	// Fallback restructures a slice the model keeps failing; nil makes
	// that slice's failure Restructure's.
	Fallback media.Restructurer
}

// Client is a media.Transcriber and a media.Restructurer. Safe for
// concurrent use.
type Client struct{ cfg Config }

var (
	_ media.Transcriber  = (*Client)(nil)
	_ media.Restructurer = (*Client)(nil)
)

// New returns a Client; it fails when BaseURL is missing.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		return nil, errors.New("openai: BaseURL is required")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.TranscriptionModel == "" {
		cfg.TranscriptionModel = "whisper-1"
	}
	if cfg.ChatModel == "" {
		cfg.ChatModel = "gpt-4o-mini"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Retries == 0 {
		cfg.Retries = 3
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	if cfg.SliceSize == 0 {
		cfg.SliceSize = 6
	}
	return &Client{cfg: cfg}, nil
}

// APIError is a 4xx answer: the server's status and message. 400, 413,
// 415 and 422 (the request's content) also wrap media.ErrUnusable.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("openai: %d: %s", e.Status, e.Message) }

func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return media.ErrUnusable
	}
	return nil
}

// post sends a request built by body (again at each try) to path and
// decodes the JSON answer into out. 5xx, 429, timeouts and network
// errors are tried again after a backoff, then fail with ErrUnavailable;
// other 4xx fail at once with an *APIError; ctx's end at once with its
// error.
func (c *Client) post(ctx context.Context, path string, body func() (io.Reader, string, error), out any) error {
	var last error
	for try := 0; try <= c.cfg.Retries; try++ {
		if err := c.pause(ctx, try); err != nil {
			return fmt.Errorf("openai %s: %w", path, err)
		}
		err := c.postOnce(ctx, path, body, out)
		var api *APIError
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("openai %s: %w", path, ctx.Err())
		case errors.As(err, &api) && api.Status != http.StatusTooManyRequests:
			return err
		}
		last = err
	}
	return fmt.Errorf("%w: openai %s after %d tries: %v", media.ErrUnavailable, path, c.cfg.Retries+1, last)
}

// pause waits before a try but the first: Backoff, doubled at each try.
func (c *Client) pause(ctx context.Context, try int) error {
	if try == 0 {
		return nil
	}
	t := time.NewTimer(c.cfg.Backoff << (try - 1))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) postOnce(ctx context.Context, path string, body func() (io.Reader, string, error), out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	r, contentType, err := body()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	if c.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 500 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, serverMessage(b))
	}
	if resp.StatusCode >= 400 {
		return &APIError{Status: resp.StatusCode, Message: serverMessage(b)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("answer is not JSON: %w", err)
	}
	return nil
}

// serverMessage is the error's message in an OpenAI error body
// ({"error": {"message": ...}}), else the body's start.
func serverMessage(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// Transcribe sends pcm as a WAV file with lang (empty: the server
// guesses). Confidence is exp of a segment's average log probability.
func (c *Client) Transcribe(ctx context.Context, pcm []byte, lang string) (media.Transcript, error) {
	if len(pcm) == 0 || len(pcm)%2 != 0 {
		return media.Transcript{}, fmt.Errorf("%w: PCM of %d bytes is not 16-bit samples", media.ErrUnusable, len(pcm))
	}
	format := wav.Format{SampleRate: media.SampleRate, Channels: 1, BitsPerSample: 16}
	file := wav.Encode(pcm, format)
	body := func() (io.Reader, string, error) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename="speech.wav"`)
		h.Set("Content-Type", "audio/wav")
		part, err := w.CreatePart(h)
		if err != nil {
			return nil, "", err
		}
		if _, err := part.Write(file); err != nil {
			return nil, "", err
		}
		fields := [][2]string{{"model", c.cfg.TranscriptionModel}, {"response_format", "verbose_json"}, {"temperature", "0"}}
		if lang != "" {
			fields = append(fields, [2]string{"language", lang})
		}
		for _, f := range fields {
			if err := w.WriteField(f[0], f[1]); err != nil {
				return nil, "", err
			}
		}
		return &b, w.FormDataContentType(), w.Close()
	}
	var out struct {
		Text     string `json:"text"`
		Segments []struct {
			Start      float64  `json:"start"`
			End        float64  `json:"end"`
			Text       string   `json:"text"`
			AvgLogprob *float64 `json:"avg_logprob"`
		} `json:"segments"`
	}
	if err := c.post(ctx, "/audio/transcriptions", body, &out); err != nil {
		return media.Transcript{}, err
	}
	length := format.Duration(len(pcm))
	clamp := func(s float64) time.Duration {
		return min(max(time.Duration(s*float64(time.Second)), 0), length)
	}
	var tr media.Transcript
	for _, s := range out.Segments {
		text := strings.TrimSpace(s.Text)
		if text == "" {
			continue
		}
		conf := 1.0
		if s.AvgLogprob != nil {
			conf = math.Min(1, math.Exp(*s.AvgLogprob))
		}
		seg := media.Segment{Start: clamp(s.Start), End: clamp(s.End), Text: text, Confidence: conf}
		if n := len(tr.Segments); n > 0 && seg.Start < tr.Segments[n-1].End {
			seg.Start = tr.Segments[n-1].End
		}
		seg.End = max(seg.End, seg.Start)
		tr.Segments = append(tr.Segments, seg)
	}
	if text := strings.TrimSpace(out.Text); len(tr.Segments) == 0 && text != "" {
		tr.Segments = []media.Segment{{End: length, Text: text, Confidence: 1}}
	}
	return tr, nil
}

// The instructions for restructuring: HEARUS's (paragraphs of related
// sentences, key words marked), asking for indexes instead of text.
const instructions = `You are a university lecturer editing a lecture transcript.
Group consecutive related sentences into paragraphs and pick the key words of each paragraph.
The sentences come as a JSON array; sentence i is at index i, counting from 0.
Answer with JSON only, in exactly this form:
{"paragraphs": [{"sentences": [0, 1, 2], "highlights": ["key word", "key phrase"]}]}
Every index appears once, in order; a paragraph is a run of consecutive indexes.
Highlights are one to three words or short phrases copied exactly from that paragraph's sentences.`

// Restructure sends the sentences in slices of SliceSize; see the package
// doc. It fails with ctx's error, an *APIError for 401, 403 and 404 (a
// configuration to fix), or, for a slice the model keeps failing without
// a Fallback, an error wrapping ErrUnavailable.
func (c *Client) Restructure(ctx context.Context, sentences []string, lang string) ([]media.Paragraph, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []media.Paragraph
	for start := 0; start < len(sentences); start += c.cfg.SliceSize {
		slice := sentences[start:min(start+c.cfg.SliceSize, len(sentences))]
		ps, err := c.restructureSlice(ctx, slice, lang)
		var api *APIError
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil, fmt.Errorf("restructure: %w", ctx.Err())
		case errors.As(err, &api) && (api.Status == http.StatusUnauthorized || api.Status == http.StatusForbidden || api.Status == http.StatusNotFound):
			return nil, err
		case c.cfg.Fallback != nil:
			if ps, err = c.cfg.Fallback.Restructure(ctx, slice, lang); err != nil {
				return nil, fmt.Errorf("restructure sentences %d to %d with the fallback: %w", start, start+len(slice)-1, err)
			}
		default:
			return nil, fmt.Errorf("restructure sentences %d to %d: %w", start, start+len(slice)-1, err)
		}
		out = append(out, ps...)
	}
	return out, nil
}

// restructureSlice asks the model about one slice, asking again (with the
// backoff) while its answer cannot be used.
func (c *Client) restructureSlice(ctx context.Context, slice []string, lang string) ([]media.Paragraph, error) {
	numbered, err := json.Marshal(slice)
	if err != nil {
		return nil, err
	}
	req, err := json.Marshal(map[string]any{
		"model":       c.cfg.ChatModel,
		"temperature": 0,
		"messages": []map[string]string{
			{"role": "system", "content": instructions},
			{"role": "user", "content": "Language: " + lang + "\nSentences:\n" + string(numbered)},
		},
	})
	if err != nil {
		return nil, err
	}
	body := func() (io.Reader, string, error) { return bytes.NewReader(req), "application/json", nil }
	var last error
	for try := 0; try <= c.cfg.Retries; try++ {
		if err := c.pause(ctx, try); err != nil {
			return nil, err
		}
		var out struct {
			Choices []struct {
				Message struct {
					Content string `json:"content"`
				} `json:"message"`
			} `json:"choices"`
		}
		if err := c.post(ctx, "/chat/completions", body, &out); err != nil {
			return nil, err // post has tried again already
		}
		if len(out.Choices) == 0 {
			last = errors.New("an answer without choices")
			continue
		}
		ps, err := parseParagraphs(out.Choices[0].Message.Content, slice)
		if err == nil {
			return ps, nil
		}
		last = err
	}
	return nil, fmt.Errorf("%w: the model's answers could not be used after %d tries: %v", media.ErrUnavailable, c.cfg.Retries+1, last)
}
