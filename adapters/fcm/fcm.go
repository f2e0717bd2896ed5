// Package fcm implements media.Notifier with Firebase Cloud Messaging's
// HTTP v1 API: POST {base}/v1/projects/{project}/messages:send with an
// OAuth 2 access token, which a Google service account's key obtains
// (an RS256 JWT assertion exchanged at the account's token_uri) and
// which is kept until shortly before it expires.
package fcm

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/internal/egress"
)

// Scope is the OAuth scope of sending messages.
const Scope = "https://www.googleapis.com/auth/firebase.messaging"

// Credentials is a service account's key file, as the Google Cloud
// console downloads it (the fields used).
type Credentials struct {
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"` // PEM, PKCS#8 or PKCS#1 RSA
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// Config configures a Notifier.
type Config struct {
	// CredentialsFile is the service account's JSON key file (required).
	CredentialsFile string
	// Project is the Firebase project id; default the credentials'.
	Project string
	// BaseURL is FCM's; default https://fcm.googleapis.com. The token
	// server is the credentials' token_uri.
	BaseURL string
	// Client sends the requests; default a client of its own.
	Client *http.Client
	// Timeout bounds each request; default 10s.
	Timeout time.Duration
}

// Notifier sends FCM messages. Safe for concurrent use.
type Notifier struct {
	cfg   Config
	creds Credentials
	key   *rsa.PrivateKey
	c     *http.Client

	mu      sync.Mutex
	token   string
	expires time.Time
}

var _ media.Notifier = (*Notifier)(nil)

// New reads the credentials and returns a Notifier. It does not reach
// the network: a token is fetched on the first message.
func New(cfg Config) (*Notifier, error) {
	b, err := os.ReadFile(cfg.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("fcm: credentials: %w", err)
	}
	var creds Credentials
	if err := json.Unmarshal(b, &creds); err != nil {
		return nil, fmt.Errorf("fcm: credentials %s: %w", cfg.CredentialsFile, err)
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(creds.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("fcm: credentials %s: private_key: %w", cfg.CredentialsFile, err)
	}
	if creds.ClientEmail == "" {
		return nil, fmt.Errorf("fcm: credentials %s: no client_email", cfg.CredentialsFile)
	}
	creds.TokenURI = cmp.Or(creds.TokenURI, "https://oauth2.googleapis.com/token")
	cfg.Project = cmp.Or(cfg.Project, creds.ProjectID)
	if cfg.Project == "" {
		return nil, errors.New("fcm: no project: give one or use credentials with project_id")
	}
	cfg.BaseURL = strings.TrimSuffix(cmp.Or(cfg.BaseURL, "https://fcm.googleapis.com"), "/")
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	c := cfg.Client
	if c == nil {
		c = &http.Client{}
	}
	return &Notifier{cfg: cfg, creds: creds, key: key, c: c}, nil
}

// accessToken returns a cached token, or fetches one.
func (n *Notifier) accessToken(ctx context.Context) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.token != "" && time.Until(n.expires) > time.Minute {
		return n.token, nil
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": n.creds.ClientEmail, "scope": Scope, "aud": n.creds.TokenURI,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	if n.creds.PrivateKeyID != "" {
		t.Header["kid"] = n.creds.PrivateKeyID
	}
	assertion, err := t.SignedString(n.key)
	if err != nil {
		return "", fmt.Errorf("fcm: sign token assertion: %w", err)
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.creds.TokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("fcm: %w: token_uri: %w", media.ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := n.c.Do(req)
	if err != nil {
		return "", fmt.Errorf("fcm: token: %w: %w", media.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil || out.AccessToken == "" {
		// Bad credentials are the operator's to fix; messages wait.
		return "", fmt.Errorf("fcm: token: %w: token server answered %s: %.200s", media.ErrUnavailable, resp.Status, body)
	}
	n.token, n.expires = out.AccessToken, now.Add(time.Duration(cmp.Or(out.ExpiresIn, 3600))*time.Second)
	return n.token, nil
}

func (n *Notifier) forgetToken(tok string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.token == tok {
		n.token = ""
	}
}

type message struct {
	Token        string            `json:"token"`
	Notification notification      `json:"notification"`
	Data         map[string]string `json:"data,omitempty"`
	Android      *android          `json:"android,omitempty"`
}

type notification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type android struct {
	CollapseKey string `json:"collapse_key,omitempty"`
}

type fcmError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type      string `json:"@type"`
			ErrorCode string `json:"errorCode"`
		} `json:"details"`
	} `json:"error"`
}

// Notify implements media.Notifier: it sends m to m.To.FCMToken as a
// notification (subject as title, text as body) with data "url" (the
// first link) and "tag" (m.Tag, also the Android collapse key). No token
// is media.ErrUnusable; UNREGISTERED or a 404 (the token is gone: stop
// sending to it) wrap media.ErrNotFound; a service or token server that
// cannot be reached or refuses the credentials, a 429, 500 or 503 wrap
// media.ErrUnavailable (a *media.RetryLater when it says when); other
// answers but 2xx are media.ErrUnusable.
func (n *Notifier) Notify(ctx context.Context, m media.Message) error {
	if m.To.FCMToken == "" {
		return fmt.Errorf("fcm: %w: no FCM token", media.ErrUnusable)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("fcm: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	msg := message{Token: m.To.FCMToken, Notification: notification{Title: m.Subject, Body: m.Text}, Data: map[string]string{}}
	if len(m.Links) > 0 {
		msg.Data["url"] = m.Links[0].URL
	}
	if m.Tag != "" {
		msg.Data["tag"] = m.Tag
		msg.Android = &android{CollapseKey: m.Tag}
	}
	body, err := json.Marshal(map[string]any{"message": msg})
	if err != nil {
		return fmt.Errorf("fcm: %w", err)
	}
	tok, err := n.accessToken(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		n.cfg.BaseURL+"/v1/projects/"+url.PathEscape(n.cfg.Project)+"/messages:send", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("fcm: %w: %w", media.ErrUnusable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := n.c.Do(req)
	if err != nil {
		return fmt.Errorf("fcm: %w: %w", media.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	said, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var fe fcmError
	_ = json.Unmarshal(said, &fe)
	code := fe.Error.Status
	for _, d := range fe.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
		}
	}
	reason := fmt.Errorf("FCM answered %s: %s %s", resp.Status, code, fe.Error.Message)
	switch s := resp.StatusCode; {
	case code == "UNREGISTERED" || s == http.StatusNotFound:
		return fmt.Errorf("fcm: token gone: %w: %w", media.ErrNotFound, reason)
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		n.forgetToken(tok)
		return fmt.Errorf("fcm: %w: %w", media.ErrUnavailable, reason)
	case s == http.StatusTooManyRequests || s >= 500:
		if after, ok := egress.RetryAfter(resp.Header.Get("Retry-After")); ok {
			return fmt.Errorf("fcm: %w", &media.RetryLater{After: after, Err: reason})
		}
		return fmt.Errorf("fcm: %w: %w", media.ErrUnavailable, reason)
	}
	return fmt.Errorf("fcm: %w: %w", media.ErrUnusable, reason)
}
