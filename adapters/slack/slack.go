// Package slack implements media.Notifier with Slack incoming webhooks:
// a POST of {"text": ...} to the recipient's webhook URL.
package slack

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/internal/egress"
)

// Config tunes the Notifier.
type Config struct {
	// AllowPrivate lets webhooks reach loopback, private and link-local
	// addresses (egress.Config.AllowPrivate): for a Slack proxy inside
	// the network, and tests. Else a webhook there is media.ErrUnusable.
	AllowPrivate bool
	// TLS configures TLS (tests: trusting their server's certificate);
	// nil: the system's roots.
	TLS *tls.Config
	// Timeout bounds each POST; default 10s.
	Timeout time.Duration
}

// Notifier posts messages to Slack incoming webhooks. Safe for
// concurrent use.
type Notifier struct {
	c       *http.Client
	timeout time.Duration
}

var _ media.Notifier = (*Notifier)(nil)

// New returns a Notifier.
func New(cfg Config) *Notifier {
	// The client follows no redirect: a webhook does not redirect, and
	// following one would let a URL point the server elsewhere.
	return &Notifier{
		c:       egress.Client(egress.Config{AllowPrivate: cfg.AllowPrivate, TLS: cfg.TLS}),
		timeout: cmp.Or(cfg.Timeout, 10*time.Second),
	}
}

// Notify implements media.Notifier: it posts m (subject in bold, text,
// then a line per link, <url|title>) to m.To.SlackWebhook, which must be
// an https URL. No webhook or a bad one (one on the server's own
// networks, unless Config.AllowPrivate), and a 4xx answer (Slack's reason,
// e.g. no_service or channel_is_archived, is in the error), are
// media.ErrUnusable; a webhook that cannot be reached and a 429 or 5xx
// answer are media.ErrUnavailable, a *media.RetryLater when the answer
// says when to retry (Retry-After).
func (n *Notifier) Notify(ctx context.Context, m media.Message) error {
	hook := m.To.SlackWebhook
	if u, err := url.Parse(hook); hook == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("slack: %w: webhook %q: want an https URL", media.ErrUnusable, hook)
	}
	body, err := json.Marshal(map[string]string{"text": text(m)})
	if err != nil {
		return fmt.Errorf("slack: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("slack: %w: %w", media.ErrUnusable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.c.Do(req)
	if errors.Is(err, egress.ErrRefused) {
		return fmt.Errorf("slack: %w: %w", media.ErrUnusable, err)
	}
	if err != nil {
		return fmt.Errorf("slack: %w: %w", media.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	said, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	reason := fmt.Errorf("webhook answered %s: %s", resp.Status, strings.TrimSpace(string(said)))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		if after, ok := egress.RetryAfter(resp.Header.Get("Retry-After")); ok {
			return fmt.Errorf("slack: %w", &media.RetryLater{After: after, Err: reason})
		}
		return fmt.Errorf("slack: %w: %w", media.ErrUnavailable, reason)
	}
	return fmt.Errorf("slack: %w: %w", media.ErrUnusable, reason)
}

// escape escapes what Slack reads as markup: &, < and >.
var escape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

func text(m media.Message) string {
	var b strings.Builder
	if m.Subject != "" {
		fmt.Fprintf(&b, "*%s*\n", escape(m.Subject))
	}
	b.WriteString(escape(m.Text))
	for _, l := range m.Links {
		// In <url|title> a '|' in the URL would end it.
		fmt.Fprintf(&b, "\n<%s|%s>", escape(strings.ReplaceAll(l.URL, "|", "%7C")), escape(l.Title))
	}
	return b.String()
}
