package slack_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/slack"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

// hooks emulates Slack's incoming webhooks, on TLS as Slack is: POST
// JSON {"text": ...} to /services/T…/B…/secret; "ok" on success, else
// Slack's status codes and reasons.
type hooks struct {
	srv *httptest.Server

	mu     sync.Mutex
	posted []string
	answer func(w http.ResponseWriter) bool // set: answers instead of posting
}

const hookPath = "/services/T000/B000/XXXXXXXX"

func startHooks(t *testing.T) *hooks {
	t.Helper()
	h := &hooks{}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != hookPath {
			http.Error(w, "no_service", http.StatusNotFound)
			return
		}
		var p struct {
			Text *string `json:"text"`
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&p) != nil || p.Text == nil || *p.Text == "" {
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.answer != nil && h.answer(w) {
			return
		}
		h.posted = append(h.posted, *p.Text)
		w.Write([]byte("ok"))
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hooks) set(answer func(w http.ResponseWriter) bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.answer = answer
}

func (h *hooks) texts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.posted...)
}

// notifier returns a Notifier that trusts the fake's certificate and may
// reach it on loopback.
func (h *hooks) notifier() *slack.Notifier {
	return slack.New(slack.Config{AllowPrivate: true, TLS: trust(h.srv), Timeout: 2 * time.Second})
}

func trust(srv *httptest.Server) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: roots}
}

func (h *hooks) to() media.Recipient { return media.Recipient{SlackWebhook: h.srv.URL + hookPath} }

// shown renders Slack text as a person reads it: links as "title: url",
// entities unescaped.
var link = regexp.MustCompile(`<([^|>]*)\|([^>]*)>`)

func shown(text string) string {
	text = link.ReplaceAllString(text, "$2: $1")
	return strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">").Replace(text)
}

func TestContract(t *testing.T) {
	mediatest.Notifier(t, func(t *testing.T) mediatest.NotifyChannel {
		h := startHooks(t)
		return mediatest.NotifyChannel{
			Notifier: h.notifier(),
			To:       h.to(),
			Delivered: func() []string {
				var out []string
				for _, s := range h.texts() {
					out = append(out, shown(s))
				}
				return out
			},
			Refuse: func(permanent bool) {
				h.set(func(w http.ResponseWriter) bool {
					if permanent {
						http.Error(w, "channel_is_archived", http.StatusGone)
					} else {
						http.Error(w, "service_unavailable", http.StatusServiceUnavailable)
					}
					return true
				})
			},
			Down: h.srv.Close,
		}
	})
}

func TestSlackText(t *testing.T) {
	h := startHooks(t)
	err := h.notifier().Notify(t.Context(), media.Message{
		To:      h.to(),
		Subject: "Story <ready>",
		Text:    "Tom & Jerry",
		Links:   []media.Link{{Title: "Listen", URL: "https://tideline.example/blobs/story/a.ogg?exp=1&sig=x|y"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "*Story &lt;ready&gt;*\nTom &amp; Jerry\n<https://tideline.example/blobs/story/a.ogg?exp=1&amp;sig=x%7Cy|Listen>"
	if got := h.texts(); len(got) != 1 || got[0] != want {
		t.Errorf("posted %q; want %q", got, want)
	}
}

func TestSlackAnswers(t *testing.T) {
	h := startHooks(t)
	msg := media.Message{To: h.to(), Text: "hi"}
	for _, c := range []struct {
		name   string
		status int
		body   string
		header string // Retry-After
		want   error
		after  time.Duration // a *media.RetryLater's
	}{
		{"no_service", http.StatusNotFound, "no_service", "", media.ErrUnusable, 0},
		{"invalid_token", http.StatusForbidden, "invalid_token", "", media.ErrUnusable, 0},
		{"rate_limited", http.StatusTooManyRequests, "rate_limited", "7", media.ErrUnavailable, 7 * time.Second},
		{"rate_limited_until_a_date", http.StatusTooManyRequests, "rate_limited", time.Now().Add(time.Minute).UTC().Format(http.TimeFormat), media.ErrUnavailable, time.Minute},
		{"server_error", http.StatusInternalServerError, "internal_error", "", media.ErrUnavailable, 0},
		{"redirect", http.StatusFound, "", "", media.ErrUnusable, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			h.set(func(w http.ResponseWriter) bool {
				if c.header != "" {
					w.Header().Set("Retry-After", c.header)
				}
				if c.status == http.StatusFound {
					w.Header().Set("Location", "https://127.0.0.1:1/elsewhere")
				}
				w.WriteHeader(c.status)
				w.Write([]byte(c.body))
				return true
			})
			err := h.notifier().Notify(t.Context(), msg)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.body) {
				t.Fatalf("Notify: %v; want %v with %q", err, c.want, c.body)
			}
			var rl *media.RetryLater
			if got := errors.As(err, &rl); got != (c.after != 0) || got && (rl.After > c.after || rl.After < c.after-2*time.Second) {
				t.Errorf("Notify: %v; want retry after %s", err, c.after)
			}
		})
	}
}

func TestWebhookMustBeHTTPS(t *testing.T) {
	h := startHooks(t)
	n := h.notifier()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	for _, hook := range []string{"", "not a url", "hooks.slack.com/services/x", "http://hooks.slack.com/services/x", plain.URL + hookPath, "ftp://hooks.slack.com/x", "https://"} {
		if err := n.Notify(t.Context(), media.Message{To: media.Recipient{SlackWebhook: hook}, Text: "x"}); !errors.Is(err, media.ErrUnusable) {
			t.Errorf("webhook %q: %v; want ErrUnusable", hook, err)
		}
	}
	if len(h.texts()) != 0 {
		t.Error("something was posted")
	}
}

func TestSilentWebhookTimesOut(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	n := slack.New(slack.Config{AllowPrivate: true, TLS: trust(srv), Timeout: 200 * time.Millisecond})
	start := time.Now()
	err := n.Notify(t.Context(), media.Message{To: media.Recipient{SlackWebhook: srv.URL + hookPath}, Text: "x"})
	if !errors.Is(err, media.ErrUnavailable) || time.Since(start) > 3*time.Second {
		t.Errorf("a silent webhook: %v after %s; want ErrUnavailable soon after the timeout", err, time.Since(start))
	}
}

func TestWebhookOnTheServersNetworkIsRefused(t *testing.T) {
	h := startHooks(t)
	// Trusting the fake's certificate, so only the address can refuse it.
	n := slack.New(slack.Config{TLS: trust(h.srv), Timeout: 2 * time.Second})
	port := h.srv.URL[strings.LastIndex(h.srv.URL, ":"):]
	for _, hook := range []string{h.srv.URL + hookPath, "https://localhost" + port + hookPath, "https://[::ffff:127.0.0.1]" + port + hookPath} {
		err := n.Notify(t.Context(), media.Message{To: media.Recipient{SlackWebhook: hook}, Text: "x"})
		if !errors.Is(err, media.ErrUnusable) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("webhook %s: %v; want ErrUnusable, a loopback address", hook, err)
		}
	}
	if got := h.texts(); len(got) != 0 {
		t.Errorf("posted %q", got)
	}
}
