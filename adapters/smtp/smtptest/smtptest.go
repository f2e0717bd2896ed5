// Package smtptest runs a real SMTP server (go-smtp) on a loopback port
// for tests: it records the mails it accepts, and can be told to refuse
// recipients or to go down. Tests only.
package smtptest

import (
	"crypto/tls"
	"encoding/base64"
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
)

// Username and Password are what a Server with TLS requires.
const (
	Username = "tideline"
	Password = "secret"
)

// Server is a running SMTP server.
type Server struct {
	Host string
	Port int

	srv    *gosmtp.Server
	ln     net.Listener
	mu     sync.Mutex
	mails  []Mail
	refuse int // the code RCPT is answered with; 0: accepted
}

// Mail is an accepted mail.
type Mail struct {
	From string
	To   []string
	Data []byte
}

// TLS returns a server certificate for 127.0.0.1 and a client config
// that trusts it (httptest's).
func TLS(tb testing.TB) (server, client *tls.Config) {
	tb.Helper()
	s := httptest.NewUnstartedServer(nil)
	s.StartTLS()
	defer s.Close()
	return &tls.Config{Certificates: s.TLS.Certificates},
		&tls.Config{RootCAs: s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
}

// Start starts a server; with serverTLS it offers STARTTLS and, then,
// PLAIN auth for Username/Password, which it requires. The test's
// cleanup stops it.
func Start(tb testing.TB, serverTLS *tls.Config) *Server {
	tb.Helper()
	s := &Server{}
	s.srv = gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
		return &session{s: s, needAuth: serverTLS != nil}, nil
	}))
	s.srv.Domain = "mail.test"
	s.srv.TLSConfig = serverTLS
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.ln = ln
	go s.srv.Serve(ln)
	tb.Cleanup(func() { s.srv.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	return s
}

// Received returns the mails accepted so far.
func (s *Server) Received() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// Refuse answers every recipient with code from now on (0: accept).
func (s *Server) Refuse(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = code
}

// Down stops accepting connections.
func (s *Server) Down() { s.ln.Close() }

// Read parses a mail as a person's client shows it: its headers, its
// decoded subject and text.
func Read(tb testing.TB, data []byte) (netmail.Header, string, string) {
	tb.Helper()
	m, err := netmail.ReadMessage(strings.NewReader(string(data)))
	if err != nil {
		tb.Fatalf("mail %q: %v", data, err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		tb.Fatal(err)
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
		tb.Fatal(err)
	}
	return m.Header, subject, strings.ReplaceAll(string(text), "\r\n", "\n")
}

type session struct {
	s        *Server
	needAuth bool
	authed   bool
	from     string
	to       []string
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != Username || pass != Password {
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
	x.s.mails = append(x.s.mails, Mail{From: x.from, To: x.to, Data: b})
	x.s.mu.Unlock()
	return nil
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }
