// Package webpush implements media.Notifier with Web Push (RFC 8030):
// the message, encrypted for the browser's subscription (RFC 8291,
// aes128gcm), is POSTed to the subscription's push service endpoint with
// a VAPID (RFC 8292) Authorization signed by the server's key pair. It
// uses github.com/SherClockHolmes/webpush-go.
//
// The payload the service worker receives is JSON:
// {"title": subject, "body": text, "url": the first link's URL,
// "links": [{"title", "url"}, ...]}.
package webpush

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	webpushgo "github.com/SherClockHolmes/webpush-go"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/internal/egress"
)

// Keys is a VAPID key pair on P-256, base64url without padding: Public is
// the uncompressed point a browser's pushManager.subscribe takes as
// applicationServerKey, Private the 32-byte scalar.
type Keys struct {
	Public  string `json:"public_key"`
	Private string `json:"private_key"`
}

// GenerateKeys returns a new key pair.
func GenerateKeys() (Keys, error) {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return Keys{}, fmt.Errorf("webpush: generate VAPID keys: %w", err)
	}
	return Keys{Public: base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		Private: base64.RawURLEncoding.EncodeToString(k.Bytes())}, nil
}

// Check reports whether k is a P-256 key pair whose halves match.
func (k Keys) Check() error {
	priv, err := base64.RawURLEncoding.DecodeString(k.Private)
	if err != nil {
		return fmt.Errorf("webpush: VAPID private key: %w", err)
	}
	key, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil {
		return fmt.Errorf("webpush: VAPID private key: %w", err)
	}
	if base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()) != k.Public {
		return errors.New("webpush: VAPID public key does not match the private key")
	}
	return nil
}

// LoadOrCreateKeys reads the key pair in the JSON file at path, or,
// when there is none, generates one and writes it there (mode 0600,
// creating the directory). Browsers' subscriptions are bound to the
// public key: keep the file, or every subscription must be made again.
func LoadOrCreateKeys(path string) (Keys, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		k, err := GenerateKeys()
		if err != nil {
			return Keys{}, err
		}
		b, _ = json.MarshalIndent(k, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return Keys{}, fmt.Errorf("webpush: %w", err)
		}
		// O_EXCL: of two processes starting at once, one key wins.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return LoadOrCreateKeys(path)
		}
		if err != nil {
			return Keys{}, fmt.Errorf("webpush: create VAPID key file: %w", err)
		}
		_, err = f.Write(append(b, '\n'))
		if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
			return Keys{}, fmt.Errorf("webpush: write VAPID key file: %w", err)
		}
		return k, nil
	}
	if err != nil {
		return Keys{}, fmt.Errorf("webpush: read VAPID key file: %w", err)
	}
	var k Keys
	if err := json.Unmarshal(b, &k); err != nil {
		return Keys{}, fmt.Errorf("webpush: VAPID key file %s: %w", path, err)
	}
	if err := k.Check(); err != nil {
		return Keys{}, fmt.Errorf("%w (file %s)", err, path)
	}
	return k, nil
}

// Config configures a Notifier.
type Config struct {
	Keys Keys
	// Subject is the VAPID subject, how push services reach the sender: a
	// mailto: or https: URL; default "mailto:admin@localhost".
	Subject string
	// TTL is how long a push service keeps a message for a device that is
	// offline; default 24 hours.
	TTL time.Duration
	// Urgency is "very-low", "low", "normal" (default) or "high".
	Urgency string
	// AllowPrivate lets endpoints reach loopback, private and link-local
	// addresses (egress.Config.AllowPrivate): for a push service inside
	// the network, and tests. Else an endpoint there is media.ErrUnusable.
	AllowPrivate bool
	// TLS configures TLS (tests: trusting their server's certificate);
	// nil: the system's roots.
	TLS *tls.Config
	// Timeout bounds each POST; default 10s.
	Timeout time.Duration
}

// Notifier sends Web Push messages. Safe for concurrent use.
type Notifier struct {
	cfg Config
	c   *http.Client
}

var _ media.Notifier = (*Notifier)(nil)

// New returns a Notifier; an invalid key pair or urgency is an error.
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Keys.Check(); err != nil {
		return nil, err
	}
	cfg.Subject = cmp.Or(cfg.Subject, "mailto:admin@localhost")
	if !strings.HasPrefix(cfg.Subject, "mailto:") && !strings.HasPrefix(cfg.Subject, "https:") {
		return nil, fmt.Errorf("webpush: VAPID subject %q: want a mailto: or https: URL", cfg.Subject)
	}
	cfg.TTL = cmp.Or(cfg.TTL, 24*time.Hour)
	cfg.Urgency = cmp.Or(cfg.Urgency, "normal")
	switch cfg.Urgency {
	case "very-low", "low", "normal", "high":
	default:
		return nil, fmt.Errorf("webpush: urgency %q: want very-low, low, normal or high", cfg.Urgency)
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	// The client follows no redirect: an endpoint could send the server
	// anywhere.
	return &Notifier{cfg: cfg, c: egress.Client(egress.Config{AllowPrivate: cfg.AllowPrivate, TLS: cfg.TLS})}, nil
}

// PublicKey is the VAPID public key clients subscribe with.
func (n *Notifier) PublicKey() string { return n.cfg.Keys.Public }

// maxPayload is what fits one 4096-byte aes128gcm record (less its
// header, tag and padding delimiter), with room to spare.
const maxPayload = 3900

type link struct {
	Title string `json:"title"`
	URL   string `json:"url"`
}

type payload struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	URL   string `json:"url,omitempty"`
	Links []link `json:"links,omitempty"`
}

// encode returns m's payload, its body shortened (and its extra links
// dropped) to fit one record.
func encode(m media.Message) ([]byte, error) {
	p := payload{Title: m.Subject, Body: m.Text}
	for _, l := range m.Links {
		p.Links = append(p.Links, link(l))
	}
	if len(m.Links) > 0 {
		p.URL = m.Links[0].URL
	}
	for {
		b, err := json.Marshal(p)
		if err != nil || len(b) <= maxPayload {
			return b, err
		}
		switch {
		case len(p.Links) > 0:
			p.Links = nil
		case p.Body != "":
			cut := max(len(p.Body)-(len(b)-maxPayload)-len("…"), 0)
			for cut > 0 && !utf8.RuneStart(p.Body[cut]) {
				cut--
			}
			p.Body = p.Body[:cut] + "…"
			if cut == 0 {
				p.Body = ""
			}
		default:
			return nil, fmt.Errorf("%w: message does not fit a push message (%d bytes, at most %d)", media.ErrUnusable, len(b), maxPayload)
		}
	}
}

// transportError marks an error of the HTTP round trip itself.
type transportError struct{ err error }

func (e transportError) Error() string { return e.err.Error() }
func (e transportError) Unwrap() error { return e.err }

type doer struct{ c *http.Client }

func (d doer) Do(r *http.Request) (*http.Response, error) {
	resp, err := d.c.Do(r)
	if err != nil {
		return nil, transportError{err}
	}
	return resp, nil
}

// Notify implements media.Notifier: it sends m to m.To.WebPush, with
// m.Tag as the Topic (messages of one topic replace each other while
// pending). No subscription, one whose keys are not valid, or one whose
// endpoint is on the server's own networks (unless Config.AllowPrivate),
// is media.ErrUnusable; a 404 or 410 from the push service (the
// subscription is gone: stop sending to it) wraps media.ErrNotFound; a
// push service that cannot be reached, a 429 or a 5xx wrap
// media.ErrUnavailable (a *media.RetryLater when it says when to retry);
// any other answer but 2xx is media.ErrUnusable.
func (n *Notifier) Notify(ctx context.Context, m media.Message) error {
	s := m.To.WebPush
	if s == nil || s.Endpoint == "" {
		return fmt.Errorf("webpush: %w: no web push subscription", media.ErrUnusable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("webpush: %w", err)
	}
	body, err := encode(m)
	if err != nil {
		return fmt.Errorf("webpush: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	resp, err := webpushgo.SendNotificationWithContext(ctx, body,
		&webpushgo.Subscription{Endpoint: s.Endpoint, Keys: webpushgo.Keys{P256dh: s.P256dh, Auth: s.Auth}},
		&webpushgo.Options{
			HTTPClient: doer{n.c},
			// webpush-go adds "mailto:" to a subject that is not https.
			Subscriber:      strings.TrimPrefix(n.cfg.Subject, "mailto:"),
			Topic:           topic(m.Tag),
			TTL:             int(n.cfg.TTL / time.Second),
			Urgency:         webpushgo.Urgency(n.cfg.Urgency),
			VAPIDPublicKey:  n.cfg.Keys.Public,
			VAPIDPrivateKey: n.cfg.Keys.Private,
		})
	var te transportError
	switch {
	case errors.Is(err, egress.ErrRefused):
		return fmt.Errorf("webpush: %w: %w", media.ErrUnusable, err)
	case errors.As(err, &te):
		return fmt.Errorf("webpush: %w: %w", media.ErrUnavailable, te.err)
	case err != nil:
		return fmt.Errorf("webpush: %w: %w", media.ErrUnusable, err)
	}
	defer resp.Body.Close()
	said, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	reason := fmt.Errorf("push service answered %s: %s", resp.Status, strings.TrimSpace(string(bytes.ToValidUTF8(said, nil))))
	switch code := resp.StatusCode; {
	case code/100 == 2:
		return nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return fmt.Errorf("webpush: subscription gone: %w: %w", media.ErrNotFound, reason)
	case code == http.StatusTooManyRequests || code >= 500:
		if after, ok := egress.RetryAfter(resp.Header.Get("Retry-After")); ok {
			return fmt.Errorf("webpush: %w", &media.RetryLater{After: after, Err: reason})
		}
		return fmt.Errorf("webpush: %w: %w", media.ErrUnavailable, reason)
	}
	return fmt.Errorf("webpush: %w: %w", media.ErrUnusable, reason)
}

// topic returns tag as a Topic header may carry it (at most 32
// characters of the base64url alphabet), or "" when it cannot.
func topic(tag string) string {
	if len(tag) > 32 {
		return ""
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return ""
		}
	}
	return tag
}
