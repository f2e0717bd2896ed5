package smtp_test

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	netmail "net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

// mailServer is a real SMTP server (go-smtp) on a loopback port that
// records the messages it accepts.
type mailServer struct {
	srv  *gosmtp.Server
	ln   net.Listener
	host string
	port int

	mu     sync.Mutex
	mails  []mailed
	refuse int // the code RCPT is answered with; 0: accepted
}

type mailed struct {
	from string
	to   []string
	data []byte
}

// testTLS returns a server certificate for 127.0.0.1 and a client
// config that trusts it (httptest's).
func testTLS(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	s := httptest.NewUnstartedServer(nil)
	s.StartTLS()
	defer s.Close()
	return &tls.Config{Certificates: s.TLS.Certificates},
		&tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
}

// startMailServer starts a server offering STARTTLS (with serverTLS) and,
// then, PLAIN auth for tideline/secret, which it requires.
func startMailServer(t *testing.T, serverTLS *tls.Config) *mailServer {
	t.Helper()
	s := &mailServer{}
	s.srv = gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
		return &session{s: s, needAuth: serverTLS != nil}, nil
	}))
	s.srv.Domain = "mail.test"
	s.srv.TLSConfig = serverTLS
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	s.host = host
	s.port, _ = strconv.Atoi(port)
	return s
}

func (s *mailServer) received() []mailed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mailed(nil), s.mails...)
}

type session struct {
	s        *mailServer
	needAuth bool
	authed   bool
	from     string
	to       []string
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "tideline" || pass != "secret" {
			return &gosmtp.SMTPError{Code: 535, EnhancedCode: gosmtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		x.authed = true
		return nil
	}), nil
}

func (x *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if x.needAuth && !x.authed {
		return &gosmtp.SMTPError{Code: 530, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	x.from = from
	return nil
}

func (x *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	x.s.mu.Lock()
	code := x.s.refuse
	x.s.mu.Unlock()
	if code != 0 {
		return &gosmtp.SMTPError{Code: code, EnhancedCode: gosmtp.EnhancedCode{code / 100, 1, 1}, Message: "mailbox unavailable"}
	}
	x.to = append(x.to, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.s.mu.Lock()
	x.s.mails = append(x.s.mails, mailed{from: x.from, to: x.to, data: b})
	x.s.mu.Unlock()
	return nil
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

// read parses a mail as a person's client shows it: its decoded subject
// and text.
func read(t *testing.T, data []byte) (netmail.Header, string, string) {
	t.Helper()
	m, err := netmail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("mail %q: %v", data, err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	body := m.Body
	switch strings.ToLower(m.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	text, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return m.Header, subject, strings.ReplaceAll(string(text), "\r\n", "\n")
}

func newNotifier(t *testing.T, s *mailServer, cfg smtp.Config) *smtp.Notifier {
	t.Helper()
	cfg.Host, cfg.Port = s.host, s.port
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
		serverTLS, clientTLS := testTLS(t)
		s := startMailServer(t, serverTLS)
		return mediatest.NotifyChannel{
			Notifier: newNotifier(t, s, smtp.Config{TLSConfig: clientTLS, Username: "tideline", Password: "secret"}),
			To:       media.Recipient{Email: "reader@family.example"},
			Delivered: func() []string {
				var out []string
				for _, m := range s.received() {
					_, subject, text := read(t, m.data)
					out = append(out, subject+"\n"+text)
				}
				return out
			},
			Refuse: func(permanent bool) {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.refuse = 451
				if permanent {
					s.refuse = 550
				}
			},
			Down: func() { s.ln.Close() },
		}
	})
}

func TestMailHeadersAndBody(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	s := startMailServer(t, serverTLS)
	n := newNotifier(t, s, smtp.Config{TLSConfig: clientTLS, Username: "tideline", Password: "secret"})
	err := n.Notify(t.Context(), media.Message{
		To:      media.Recipient{Email: "reader@family.example"},
		Subject: "Ready\r\nBcc: attacker@evil.example",
		Text:    "Your story is ready.",
		Links:   []media.Link{{Title: "Listen", URL: "https://tideline.example/blobs/story/a.ogg?exp=1&sig=x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := s.received()
	if len(got) != 1 || got[0].from != "noreply@tideline.example" || len(got[0].to) != 1 || got[0].to[0] != "reader@family.example" {
		t.Fatalf("envelope %+v; want from noreply@tideline.example to reader@family.example", got)
	}
	h, subject, text := read(t, got[0].data)
	if h.Get("Bcc") != "" || strings.Contains(string(got[0].data), "\nBcc:") {
		t.Errorf("a subject injected a header:\n%s", got[0].data)
	}
	if !strings.HasPrefix(subject, "Ready") || h.Get("To") != "<reader@family.example>" || h.Get("Message-Id") == "" || h.Get("Date") == "" {
		t.Errorf("headers %v, subject %q", h, subject)
	}
	if want := "Your story is ready.\n\nListen: https://tideline.example/blobs/story/a.ogg?exp=1&sig=x\n"; text != want {
		t.Errorf("body %q; want %q", text, want)
	}
}

func TestTLSPolicies(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	withTLS := startMailServer(t, serverTLS)
	plain := startMailServer(t, nil)
	to := media.Message{To: media.Recipient{Email: "a@b.example"}, Subject: "s", Text: "t"}
	for _, c := range []struct {
		name   string
		s      *mailServer
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
			before := len(c.s.received())
			cfg := smtp.Config{TLS: c.policy, TLSConfig: clientTLS}
			if c.s == withTLS { // which asks for credentials, once TLS is on
				cfg.Username, cfg.Password = "tideline", "secret"
			}
			n := newNotifier(t, c.s, cfg)
			err := n.Notify(t.Context(), to)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Notify: %v; want %v", err, c.want)
			}
			if sent := len(c.s.received()) - before; (c.want == nil) != (sent == 1) {
				t.Errorf("%d mails sent", sent)
			}
		})
	}
}

func TestUntrustedCertificateOrBadCredentialsAreUnavailable(t *testing.T) {
	serverTLS, clientTLS := testTLS(t)
	s := startMailServer(t, serverTLS)
	to := media.Message{To: media.Recipient{Email: "a@b.example"}, Subject: "s", Text: "t"}
	if err := newNotifier(t, s, smtp.Config{Username: "tideline", Password: "secret"}).Notify(t.Context(), to); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("a certificate no CA vouches for: %v; want ErrUnavailable", err)
	}
	if err := newNotifier(t, s, smtp.Config{TLSConfig: clientTLS, Username: "tideline", Password: "wrong"}).Notify(t.Context(), to); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("bad credentials: %v; want ErrUnavailable (the message is fine, the setup is not)", err)
	}
	if len(s.received()) != 0 {
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
