// Package webpushtest runs a Web Push service for tests, over TLS on a
// loopback port, and a browser subscribed to it: the service checks each
// message's VAPID Authorization (an ES256 JWT whose audience is the
// endpoint's origin, signed by the key it names) and decrypts its
// RFC 8291 aes128gcm payload with the subscriber's private key, as the
// browser would.
package webpushtest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tideline/tideline/domain/media"
)

// Push is one message the service accepted.
type Push struct {
	Endpoint string
	Payload  []byte // decrypted
	TTL      string
	Urgency  string
	Topic    string
	VAPIDKey string // the public key the Authorization named
	Subject  string // the JWT's sub
}

// Server is a push service and its subscribers. Safe for concurrent use.
type Server struct {
	*httptest.Server

	mu      sync.Mutex
	subs    map[string]*subscriber // by endpoint path
	pushes  []Push
	status  int // answered instead of accepting; 0: accept
	retry   string
	errs    []error
	nextSub int
}

type subscriber struct {
	key  *ecdh.PrivateKey
	auth []byte
	gone bool
}

// Start runs a push service until the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s := &Server{subs: map[string]*subscriber{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	tb.Cleanup(func() {
		s.Close()
		for _, err := range s.Errors() {
			tb.Errorf("push service: %v", err)
		}
	})
	return s
}

// Subscribe makes a new browser subscription, with its own keys and
// endpoint.
func (s *Server) Subscribe() media.WebPushSubscription {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextSub++
	path := fmt.Sprintf("/push/%d", s.nextSub)
	s.subs[path] = &subscriber{key: key, auth: auth}
	return media.WebPushSubscription{Endpoint: s.URL + path,
		P256dh: base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes()),
		Auth:   base64.RawURLEncoding.EncodeToString(auth)}
}

// TLS returns a TLS configuration that trusts the service's certificate
// (webpush.Config.TLS; the service is on loopback, so AllowPrivate too).
func (s *Server) TLS() *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(s.Certificate())
	return &tls.Config{RootCAs: roots}
}

// Unsubscribe makes the service answer 410 Gone for sub from now on.
func (s *Server) Unsubscribe(sub media.WebPushSubscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x := s.subs[strings.TrimPrefix(sub.Endpoint, s.URL)]; x != nil {
		x.gone = true
	}
}

// Answer makes the service answer status (with Retry-After retryAfter,
// if not empty) instead of accepting messages; 0 accepts again.
func (s *Server) Answer(status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.retry = status, retryAfter
}

// Pushes returns the messages accepted so far.
func (s *Server) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// Errors returns what was wrong with the requests the service refused
// for a fault of the sender (bad VAPID, undecryptable payload).
func (s *Server) Errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	sub, status, retry := s.subs[r.URL.Path], s.status, s.retry
	s.mu.Unlock()
	switch {
	case r.Method != http.MethodPost:
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	case sub == nil:
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	case sub.gone:
		http.Error(w, "push subscription has unsubscribed or expired", http.StatusGone)
		return
	case status != 0:
		if retry != "" {
			w.Header().Set("Retry-After", retry)
		}
		http.Error(w, http.StatusText(status), status)
		return
	}
	push, err := s.check(r, sub)
	if err != nil {
		s.mu.Lock()
		s.errs = append(s.errs, err)
		s.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.pushes = append(s.pushes, push)
	s.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
}

func (s *Server) check(r *http.Request, sub *subscriber) (Push, error) {
	p := Push{Endpoint: s.URL + r.URL.Path, TTL: r.Header.Get("TTL"), Urgency: r.Header.Get("Urgency"), Topic: r.Header.Get("Topic")}
	if p.TTL == "" {
		return p, errors.New("no TTL header")
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "aes128gcm" {
		return p, fmt.Errorf("Content-Encoding %q; want aes128gcm", ce)
	}
	var err error
	if p.VAPIDKey, p.Subject, err = s.vapid(r.Header.Get("Authorization")); err != nil {
		return p, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8192))
	if err != nil {
		return p, err
	}
	p.Payload, err = Decrypt(body, sub.key, sub.auth)
	return p, err
}

// vapid checks an Authorization "vapid t=<jwt>, k=<public key>" header.
func (s *Server) vapid(h string) (key, subject string, err error) {
	rest, ok := strings.CutPrefix(h, "vapid ")
	if !ok {
		return "", "", fmt.Errorf("Authorization %q is not vapid", h)
	}
	var tok string
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			tok = v
		case "k":
			key = v
		}
	}
	raw, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		return "", "", fmt.Errorf("vapid k: %w", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return "", "", fmt.Errorf("vapid k: %w", err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(s.URL), jwt.WithExpirationRequired())
	if err != nil {
		return "", "", fmt.Errorf("vapid t: %w", err)
	}
	if exp, _ := claims.GetExpirationTime(); exp.After(time.Now().Add(24 * time.Hour)) {
		return "", "", fmt.Errorf("vapid t expires %s, more than 24 hours ahead", exp)
	}
	subject, _ = claims["sub"].(string)
	if !strings.HasPrefix(subject, "mailto:") && !strings.HasPrefix(subject, "https:") || strings.HasPrefix(subject, "mailto:mailto:") {
		return "", "", fmt.Errorf("vapid sub %q: want a mailto: or https: URL", subject)
	}
	return key, subject, nil
}

// Decrypt opens an RFC 8291 aes128gcm message (one record) with the
// subscriber's private key and auth secret.
func Decrypt(body []byte, key *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("aes128gcm: short header")
	}
	salt, rs, idLen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idLen || idLen != 65 {
		return nil, fmt.Errorf("aes128gcm: key id of %d bytes; want a 65-byte P-256 key", idLen)
	}
	senderRaw, ciphertext := body[21:21+idLen], body[21+idLen:]
	if len(ciphertext) > int(rs) {
		return nil, fmt.Errorf("aes128gcm: %d bytes of ciphertext in one record of %d", len(ciphertext), rs)
	}
	sender, err := ecdh.P256().NewPublicKey(senderRaw)
	if err != nil {
		return nil, fmt.Errorf("aes128gcm: sender key: %w", err)
	}
	secret, err := key.ECDH(sender)
	if err != nil {
		return nil, err
	}
	info := append(append([]byte("WebPush: info\x00"), key.PublicKey().Bytes()...), senderRaw...)
	ikm, err := hkdf.Key(sha256.New, secret, auth, string(info), 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("aes128gcm: %w", err)
	}
	// The last record ends with 0x02 then zero padding.
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 2 {
		return nil, errors.New("aes128gcm: no last-record delimiter")
	}
	return plain[:len(plain)-1], nil
}
