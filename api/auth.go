package api

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
)

// KeyFile is where a data dir keeps its token signing key.
const KeyFile = "keys/token-ed25519.pem"

const issuer = "tideline"

// Tokens issues and verifies bearer tokens (JWT, EdDSA) signed with one
// data dir's key. Safe for concurrent use.
type Tokens struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey

	// verified caches tokens whose signature checked out, until they
	// expire: an Ed25519 verify costs ~50µs, more than the rest of a
	// typical request.
	mu       sync.Mutex
	verified map[string]verifiedToken
}

type verifiedToken struct {
	p   auth.Principal
	exp time.Time
}

// maxVerified bounds the cache; when full it starts over.
const maxVerified = 1 << 16

// LoadOrCreateTokens reads dataDir's signing key, creating it (mode 0600)
// on first use. The key is never logged.
func LoadOrCreateTokens(dataDir string) (*Tokens, error) {
	t, err := LoadTokens(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return createKey(filepath.Join(dataDir, KeyFile))
	}
	return t, err
}

// LoadTokens reads dataDir's signing key; the error wraps os.ErrNotExist
// when the server has never started on dataDir.
func LoadTokens(dataDir string) (*Tokens, error) {
	path := filepath.Join(dataDir, KeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no signing key in %s (start `tideline serve --data %s` once, or pass the server's --data): %w", dataDir, dataDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("signing key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: not ed25519", path)
	}
	return newTokens(priv), nil
}

func createKey(path string) (*Tokens, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key dir: %w", err)
	}
	// O_EXCL: if two processes race to create it, one wins and the other
	// reads the winner's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadOrCreateTokens(filepath.Dir(filepath.Dir(path)))
	}
	if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync signing key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close signing key: %w", err)
	}
	return newTokens(priv), nil
}

type claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// Issue returns a token for p valid for ttl.
func (t *Tokens) Issue(p auth.Principal, ttl time.Duration) (string, error) {
	if err := es.ValidateToken("sub", p.Subject); err != nil {
		return "", err
	}
	if _, err := auth.ParseRole(string(p.Role)); err != nil {
		return "", es.Invalidf("role", "%v", err)
	}
	now := time.Now()
	c := claims{Role: string(p.Role), RegisteredClaims: jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   p.Subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(t.priv)
}

func newTokens(priv ed25519.PrivateKey) *Tokens {
	return &Tokens{priv: priv, pub: priv.Public().(ed25519.PublicKey), verified: map[string]verifiedToken{}}
}

// Verify checks a token's signature, issuer, expiry and role. Safe for
// concurrent use.
func (t *Tokens) Verify(token string) (auth.Principal, error) {
	now := time.Now()
	t.mu.Lock()
	v, ok := t.verified[token]
	t.mu.Unlock()
	if ok && now.Before(v.exp) {
		return v.p, nil
	}
	p, exp, err := t.verify(token)
	if err != nil {
		return auth.Principal{}, err
	}
	t.mu.Lock()
	if len(t.verified) >= maxVerified {
		clear(t.verified)
	}
	t.verified[token] = verifiedToken{p: p, exp: exp}
	t.mu.Unlock()
	return p, nil
}

func (t *Tokens) verify(token string) (auth.Principal, time.Time, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer), jwt.WithExpirationRequired())
	if err != nil {
		return auth.Principal{}, time.Time{}, err
	}
	role, err := auth.ParseRole(c.Role)
	if err != nil {
		return auth.Principal{}, time.Time{}, err
	}
	if c.Subject == "" {
		return auth.Principal{}, time.Time{}, errors.New("token has no subject")
	}
	return auth.Principal{Subject: c.Subject, Role: role}, c.ExpiresAt.Time, nil
}

// authenticate returns the principal of h's bearer token.
func (t *Tokens) authenticate(h http.Header) (auth.Principal, error) {
	scheme, tok, _ := strings.Cut(h.Get("Authorization"), " ")
	if tok = strings.TrimSpace(tok); !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "missing bearer token (Authorization: Bearer <token>; get one with `tideline token`)")
	}
	if len(tok) > maxTokenBytes {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "invalid token: longer than %d bytes", maxTokenBytes)
	}
	p, err := t.Verify(tok)
	if err != nil {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "invalid token: %v", err)
	}
	return p, nil
}

// maxTokenBytes bounds a bearer token; ours are about 250 bytes.
const maxTokenBytes = 4096

// envelopeSlack is what a call's body may hold beyond its one message:
// the gRPC and Connect envelope prefixes.
const envelopeSlack = 1 << 10

// gate is the one way into the services. It authenticates every call
// but those of open services (health, and reflection when chosen) from
// its headers before a byte of its body is read, answering
// Unauthenticated in the call's protocol; and it caps the body of every
// call whose request is one message at maxBody, so a large or endless
// body ends in ResourceExhausted, not in memory. (Each message, client
// streams' too, is also capped, compressed and decompressed, by
// connect.WithReadMaxBytes.) Paths it does not know need a token too.
type gate struct {
	next    http.Handler
	tokens  *Tokens
	open    map[string]bool // service paths ("/pkg.Service/") served without a token
	streams map[string]bool // procedure paths whose request is a stream of messages
	live    map[string]bool // procedure paths whose response is a stream (see liveWriter)
	maxBody int64
	errors  *connect.ErrorWriter
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	service := r.URL.Path[:strings.LastIndexByte(r.URL.Path, '/')+1]
	if !g.open[service] {
		p, err := g.tokens.authenticate(r.Header)
		if err != nil {
			g.errors.Write(w, r, toConnect(ctx, err))
			return
		}
		ctx = auth.WithPrincipal(ctx, p)
	}
	if !g.streams[r.URL.Path] {
		r.Body = http.MaxBytesReader(w, r.Body, g.maxBody)
	}
	if g.live[r.URL.Path] {
		lw := &liveWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
		w, ctx = lw, context.WithValue(ctx, liveWriterKey{}, lw)
	}
	g.next.ServeHTTP(w, r.WithContext(ctx))
}

// addStreams records the streaming procedures of service.
func (g *gate) addStreams(service string) error {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return fmt.Errorf("api: service %s: %w", service, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return fmt.Errorf("api: %s is not a service", service)
	}
	for i := range sd.Methods().Len() {
		m := sd.Methods().Get(i)
		path := "/" + service + "/" + string(m.Name())
		g.streams[path] = m.IsStreamingClient()
		g.live[path] = m.IsStreamingServer()
	}
	return nil
}

// caller returns the authenticated principal; the gate guarantees one
// on every service route.
func caller(ctx context.Context) auth.Principal {
	p, _ := auth.FromContext(ctx)
	return p
}

// requireRole returns Forbidden unless the caller has one of roles.
func requireRole(ctx context.Context, roles ...auth.Role) error {
	p := caller(ctx)
	for _, r := range roles {
		if p.Role == r {
			return nil
		}
	}
	return es.Errorf(es.Forbidden, "role %q may not call this method", p.Role)
}
