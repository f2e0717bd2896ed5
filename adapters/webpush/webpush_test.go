package webpush_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/webpush"
	"github.com/tideline/tideline/adapters/webpush/webpushtest"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

type payload struct {
	Title, Body, URL string
	Links            []struct{ Title, URL string }
}

func newNotifier(t *testing.T, ps *webpushtest.Server) (*webpush.Notifier, webpush.Keys) {
	t.Helper()
	keys, err := webpush.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	n, err := webpush.New(webpush.Config{Keys: keys, AllowPrivate: true, TLS: ps.TLS(), TTL: time.Hour, Urgency: "high"})
	if err != nil {
		t.Fatal(err)
	}
	return n, keys
}

func TestNotifierContract(t *testing.T) {
	mediatest.Notifier(t, func(t *testing.T) mediatest.NotifyChannel {
		ps := webpushtest.Start(t)
		n, _ := newNotifier(t, ps)
		sub := ps.Subscribe()
		return mediatest.NotifyChannel{
			Notifier: n,
			To:       media.Recipient{WebPush: &sub},
			Delivered: func() []string {
				var out []string
				for _, p := range ps.Pushes() {
					var m payload
					if err := json.Unmarshal(p.Payload, &m); err != nil {
						t.Fatalf("payload %q: %v", p.Payload, err)
					}
					s := m.Title + "\n" + m.Body
					for _, l := range m.Links {
						s += "\n" + l.Title + " " + l.URL
					}
					out = append(out, s)
				}
				return out
			},
			Refuse: func(permanent bool) {
				if permanent {
					ps.Answer(http.StatusBadRequest, "")
				} else {
					ps.Answer(http.StatusServiceUnavailable, "")
				}
			},
			Down: ps.Close,
		}
	})
}

func TestPushIsEncryptedSignedAndComplete(t *testing.T) {
	ps := webpushtest.Start(t)
	n, keys := newNotifier(t, ps)
	sub := ps.Subscribe()
	m := media.Message{To: media.Recipient{WebPush: &sub}, Subject: "Time to wake up", Text: "Label 10 images to stop the alarm",
		Links: []media.Link{{Title: "Open", URL: "https://tideline.example/missions/m1"}}, Tag: "alarm"}
	if err := n.Notify(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	got := ps.Pushes()
	if len(got) != 1 {
		t.Fatalf("%d pushes", len(got))
	}
	p := got[0]
	var pl payload
	if err := json.Unmarshal(p.Payload, &pl); err != nil {
		t.Fatal(err)
	}
	if pl.Title != m.Subject || pl.Body != m.Text || pl.URL != m.Links[0].URL {
		t.Errorf("payload %+v", pl)
	}
	if p.VAPIDKey != keys.Public || p.Subject != "mailto:admin@localhost" || p.TTL != "3600" || p.Urgency != "high" || p.Topic != "alarm" {
		t.Errorf("push %+v", p)
	}
}

func TestLongBodyIsShortenedToFit(t *testing.T) {
	ps := webpushtest.Start(t)
	n, _ := newNotifier(t, ps)
	sub := ps.Subscribe()
	body := strings.Repeat("가", 1000) // 3000 bytes
	links := []media.Link{{Title: "a", URL: "https://a.example/" + strings.Repeat("x", 1900)}}
	if err := n.Notify(t.Context(), media.Message{To: media.Recipient{WebPush: &sub}, Subject: strings.Repeat("제", 120), Text: body, Links: links}); err != nil {
		t.Fatal(err)
	}
	var pl payload
	if err := json.Unmarshal(ps.Pushes()[0].Payload, &pl); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(pl.Body, "…") || !strings.HasPrefix(body, strings.TrimSuffix(pl.Body, "…")) || pl.URL != links[0].URL {
		t.Errorf("body of %d bytes, url %q", len(pl.Body), pl.URL)
	}
}

func TestAnswers(t *testing.T) {
	for _, c := range []struct {
		name       string
		status     int
		retryAfter string
		want       error
		retry      time.Duration
	}{
		{"gone_is_not_found", http.StatusGone, "", media.ErrNotFound, 0},
		{"not_found_is_not_found", http.StatusNotFound, "", media.ErrNotFound, 0},
		{"too_many_is_unavailable_with_retry", http.StatusTooManyRequests, "30", media.ErrUnavailable, 30 * time.Second},
		{"server_error_is_unavailable", http.StatusBadGateway, "", media.ErrUnavailable, 0},
		{"payload_too_large_is_unusable", http.StatusRequestEntityTooLarge, "", media.ErrUnusable, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := webpushtest.Start(t)
			n, _ := newNotifier(t, ps)
			sub := ps.Subscribe()
			if c.status == http.StatusGone {
				ps.Unsubscribe(sub)
			} else if c.status == http.StatusNotFound {
				sub.Endpoint += "-unknown"
			} else {
				ps.Answer(c.status, c.retryAfter)
			}
			err := n.Notify(t.Context(), media.Message{To: media.Recipient{WebPush: &sub}, Subject: "s", Text: "t"})
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v; want %v", err, c.want)
			}
			var rl *media.RetryLater
			if c.retry != 0 && (!errors.As(err, &rl) || rl.After != c.retry) {
				t.Errorf("err %v; want a RetryLater of %s", err, c.retry)
			}
		})
	}
}

func TestBadSubscriptionKeysAreUnusable(t *testing.T) {
	ps := webpushtest.Start(t)
	n, _ := newNotifier(t, ps)
	sub := ps.Subscribe()
	sub.P256dh = "AAAA"
	if err := n.Notify(t.Context(), media.Message{To: media.Recipient{WebPush: &sub}, Subject: "s"}); !errors.Is(err, media.ErrUnusable) {
		t.Errorf("err %v; want ErrUnusable", err)
	}
}

func TestEndpointOnTheServersNetworkIsRefused(t *testing.T) {
	ps := webpushtest.Start(t)
	keys, err := webpush.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	// Trusting the service's certificate, so only the address can refuse it.
	n, err := webpush.New(webpush.Config{Keys: keys, TLS: ps.TLS()})
	if err != nil {
		t.Fatal(err)
	}
	sub := ps.Subscribe()
	port := ps.URL[strings.LastIndex(ps.URL, ":"):]
	for _, endpoint := range []string{sub.Endpoint, strings.Replace(sub.Endpoint, ps.URL, "https://localhost"+port, 1)} {
		s := sub
		s.Endpoint = endpoint
		err := n.Notify(t.Context(), media.Message{To: media.Recipient{WebPush: &s}, Subject: "s", Text: "t"})
		if !errors.Is(err, media.ErrUnusable) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("endpoint %s: %v; want ErrUnusable, a loopback address", endpoint, err)
		}
	}
	if got := ps.Pushes(); len(got) != 0 {
		t.Errorf("%d pushes reached the service", len(got))
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "vapid.json")
	k1, err := webpush.LoadOrCreateKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := webpush.LoadOrCreateKeys(path)
	if err != nil || k2 != k1 {
		t.Fatalf("second load %+v, %v; want %+v", k2, err, k1)
	}
	if err := k1.Check(); err != nil {
		t.Fatal(err)
	}
	other, _ := webpush.GenerateKeys()
	if err := (webpush.Keys{Public: other.Public, Private: k1.Private}).Check(); err == nil {
		t.Error("a mismatched pair passed Check")
	}
}
