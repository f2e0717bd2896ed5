package smtp_test

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/adapters/smtp/smtptest"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

func newNotifier(t *testing.T, s *smtptest.Server, cfg smtp.Config) *smtp.Notifier {
	t.Helper()
	cfg.Host, cfg.Port = s.Host, s.Port
	if cfg.From == "" {
		cfg.From = "Tideline <noreply@tideline.example>"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	n, err := smtp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestContract(t *testing.T) {
	mediatest.Notifier(t, func(t *testing.T) mediatest.NotifyChannel {
		serverTLS, clientTLS := smtptest.TLS(t)
		s := smtptest.Start(t, serverTLS)
		return mediatest.NotifyChannel{
			Notifier: newNotifier(t, s, smtp.Config{TLSConfig: clientTLS, Username: smtptest.Username, Password: smtptest.Password}),
			To:       media.Recipient{Email: "reader@family.example"},
			Delivered: func() []string {
				var out []string
				for _, m := range s.Received() {
					_, subject, text := smtptest.Read(t, m.Data)
					out = append(out, subject+"\n"+text)
				}
				return out
			},
			Refuse: func(permanent bool) {
				if permanent {
					s.Refuse(550)
				} else {
					s.Refuse(451)
				}
			},
			Down: s.Down,
		}
	})
}

func TestMailHeadersAndBody(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLS(t)
	s := smtptest.Start(t, serverTLS)
	n := newNotifier(t, s, smtp.Config{TLSConfig: clientTLS, Username: smtptest.Username, Password: smtptest.Password})
	err := n.Notify(t.Context(), media.Message{
		To:      media.Recipient{Email: "reader@family.example"},
		Subject: "Ready\r\nBcc: attacker@evil.example",
		Text:    "Your story is ready.",
		Links:   []media.Link{{Title: "Listen", URL: "https://tideline.example/blobs/story/a.ogg?exp=1&sig=x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Received()
	if len(got) != 1 || got[0].From != "noreply@tideline.example" || len(got[0].To) != 1 || got[0].To[0] != "reader@family.example" {
		t.Fatalf("envelope %+v; want from noreply@tideline.example to reader@family.example", got)
	}
	h, subject, text := smtptest.Read(t, got[0].Data)
	if h.Get("Bcc") != "" || strings.Contains(string(got[0].Data), "\nBcc:") {
		t.Errorf("a subject injected a header:\n%s", got[0].Data)
	}
	if !strings.HasPrefix(subject, "Ready") || h.Get("To") != "<reader@family.example>" || h.Get("Message-Id") == "" || h.Get("Date") == "" {
		t.Errorf("headers %v, subject %q", h, subject)
	}
	if want := "Your story is ready.\n\nListen: https://tideline.example/blobs/story/a.ogg?exp=1&sig=x\n"; text != want {
		t.Errorf("body %q; want %q", text, want)
	}
}

func TestTLSPolicies(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLS(t)
	withTLS := smtptest.Start(t, serverTLS)
	plain := smtptest.Start(t, nil)
	to := media.Message{To: media.Recipient{Email: "a@b.example"}, Subject: "s", Text: "t"}
	for _, c := range []struct {
		name   string
		s      *smtptest.Server
		policy smtp.TLS
		want   error // nil: sent
	}{
		{"mandatory_with_starttls", withTLS, smtp.StartTLSMandatory, nil},
		{"mandatory_without_starttls", plain, smtp.StartTLSMandatory, media.ErrUnavailable},
		{"opportunistic_with_starttls", withTLS, smtp.StartTLSOpportunistic, nil},
		{"opportunistic_without_starttls", plain, smtp.StartTLSOpportunistic, nil},
		{"none", plain, smtp.NoTLS, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(c.s.Received())
			cfg := smtp.Config{TLS: c.policy, TLSConfig: clientTLS}
			if c.s == withTLS { // which asks for credentials, once TLS is on
				cfg.Username, cfg.Password = smtptest.Username, smtptest.Password
			}
			n := newNotifier(t, c.s, cfg)
			err := n.Notify(t.Context(), to)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Notify: %v; want %v", err, c.want)
			}
			if sent := len(c.s.Received()) - before; (c.want == nil) != (sent == 1) {
				t.Errorf("%d mails sent", sent)
			}
		})
	}
}

func TestUntrustedCertificateOrBadCredentialsAreUnavailable(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLS(t)
	s := smtptest.Start(t, serverTLS)
	to := media.Message{To: media.Recipient{Email: "a@b.example"}, Subject: "s", Text: "t"}
	if err := newNotifier(t, s, smtp.Config{Username: smtptest.Username, Password: smtptest.Password}).Notify(t.Context(), to); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("a certificate no CA vouches for: %v; want ErrUnavailable", err)
	}
	if err := newNotifier(t, s, smtp.Config{TLSConfig: clientTLS, Username: "tideline", Password: "wrong"}).Notify(t.Context(), to); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("bad credentials: %v; want ErrUnavailable (the message is fine, the setup is not)", err)
	}
	if len(s.Received()) != 0 {
		t.Error("a mail was sent")
	}
}

func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts, never greets
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	n, err := smtp.New(smtp.Config{Host: "127.0.0.1", Port: p, From: "a@b.example", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = n.Notify(t.Context(), media.Message{To: media.Recipient{Email: "c@d.example"}, Subject: "s"})
	if !errors.Is(err, media.ErrUnavailable) || time.Since(start) > 5*time.Second {
		t.Errorf("a silent server: %v after %s; want ErrUnavailable soon after the timeout", err, time.Since(start))
	}
}

func TestBadConfigAndAddresses(t *testing.T) {
	for _, c := range []smtp.Config{{From: "a@b.example"}, {Host: "mail.example"}, {Host: "mail.example", From: "not an address"}} {
		if _, err := smtp.New(c); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
	n, err := smtp.New(smtp.Config{Host: "127.0.0.1", Port: 1, From: "a@b.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"not an address", "a@b.example\r\nRCPT TO:<x@y>"} {
		if err := n.Notify(t.Context(), media.Message{To: media.Recipient{Email: addr}}); !errors.Is(err, media.ErrUnusable) {
			t.Errorf("address %q: %v; want ErrUnusable", addr, err)
		}
	}
	for _, s := range []string{"mandatory", "opportunistic", "none"} {
		if _, err := smtp.ParseTLS(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := smtp.ParseTLS("starttls"); err == nil {
		t.Error("ParseTLS(starttls): no error")
	}
}
