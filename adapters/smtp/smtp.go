// Package smtp implements media.Notifier by e-mail, with go-mail: a plain
// text message with the links, sent through one SMTP server (a relay or
// submission server).
package smtp

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wneessen/go-mail"

	"github.com/tideline/tideline/domain/media"
)

// TLS says whether the connection is upgraded with STARTTLS.
type TLS int

const (
	// StartTLSMandatory refuses to send over a connection that STARTTLS
	// did not upgrade.
	StartTLSMandatory TLS = iota
	// StartTLSOpportunistic upgrades the connection when the server
	// offers STARTTLS, else sends in clear.
	StartTLSOpportunistic
	// NoTLS sends in clear: only for a relay on a trusted network.
	NoTLS
)

// ParseTLS reads "mandatory", "opportunistic" or "none".
func ParseTLS(s string) (TLS, error) {
	switch s {
	case "mandatory":
		return StartTLSMandatory, nil
	case "opportunistic":
		return StartTLSOpportunistic, nil
	case "none":
		return NoTLS, nil
	}
	return 0, fmt.Errorf("smtp: TLS policy %q: want mandatory, opportunistic or none", s)
}

// Config says how mail is sent.
type Config struct {
	Host string
	// Port defaults to 587 (submission).
	Port int
	TLS  TLS
	// TLSConfig, if set, checks the server's certificate (tests: a private
	// CA); its ServerName defaults to Host.
	TLSConfig *tls.Config
	// Username and Password, when set, authenticate (PLAIN or LOGIN, as
	// the server offers).
	Username, Password string
	// From is the sender, e.g. "Tideline <noreply@tideline.example>".
	From string
	// Timeout bounds connecting and each exchange with the server;
	// default 30s.
	Timeout time.Duration
}

// Notifier sends e-mail. Safe for concurrent use: each Notify is one
// connection.
type Notifier struct {
	cfg  Config
	opts []mail.Option
}

var _ media.Notifier = (*Notifier)(nil)

// New returns a Notifier sending through cfg's server.
func New(cfg Config) (*Notifier, error) {
	if cfg.Host == "" {
		return nil, errors.New("smtp: no host")
	}
	if err := mail.NewMsg().From(cfg.From); cfg.From == "" || err != nil {
		return nil, fmt.Errorf("smtp: From %q: want an address", cfg.From)
	}
	policy := map[TLS]mail.TLSPolicy{StartTLSMandatory: mail.TLSMandatory, StartTLSOpportunistic: mail.TLSOpportunistic, NoTLS: mail.NoTLS}[cfg.TLS]
	tc := &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
	if cfg.TLSConfig != nil {
		tc = cfg.TLSConfig.Clone()
		tc.ServerName = cmp.Or(tc.ServerName, cfg.Host)
	}
	opts := []mail.Option{
		mail.WithPort(cmp.Or(cfg.Port, 587)),
		mail.WithTLSPolicy(policy),
		mail.WithTLSConfig(tc),
		mail.WithTimeout(cmp.Or(cfg.Timeout, 30*time.Second)),
	}
	if cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(cfg.Username), mail.WithPassword(cfg.Password))
	}
	return &Notifier{cfg: cfg, opts: opts}, nil
}

// Notify implements media.Notifier: it sends m to m.To.Email, its text
// followed by each link's title and URL. A recipient or server refusing
// the message for good (a 5xx reply to MAIL, RCPT or DATA), no address or
// a malformed one is media.ErrUnusable; a server that cannot be reached,
// refuses TLS or the credentials, or answers 4xx (try later) is
// media.ErrUnavailable.
func (n *Notifier) Notify(ctx context.Context, m media.Message) error {
	if m.To.Email == "" {
		return fmt.Errorf("smtp: %w: no e-mail address", media.ErrUnusable)
	}
	msg := mail.NewMsg()
	if err := msg.From(n.cfg.From); err != nil {
		return fmt.Errorf("smtp: From: %w", err)
	}
	if err := msg.To(m.To.Email); err != nil {
		return fmt.Errorf("smtp: %w: address %q: %v", media.ErrUnusable, m.To.Email, err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(mail.TypeTextPlain, body(m))
	c, err := mail.NewClient(n.cfg.Host, n.opts...)
	if err != nil {
		return fmt.Errorf("smtp: %w: %w", media.ErrUnavailable, err)
	}
	err = c.DialAndSendWithContext(ctx, msg)
	var se *mail.SendError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500:
		return fmt.Errorf("smtp: %w: refused: %w", media.ErrUnusable, err)
	}
	return fmt.Errorf("smtp: %w: %w", media.ErrUnavailable, err)
}

// body is the message's text, then a line per link: "Title: URL".
func body(m media.Message) string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(m.Text, "\n"))
	if len(m.Links) > 0 {
		b.WriteString("\n")
	}
	for _, l := range m.Links {
		fmt.Fprintf(&b, "\n%s: %s", l.Title, l.URL)
	}
	b.WriteString("\n")
	return b.String()
}
