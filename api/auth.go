package api

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// RevokedFile is where a data dir lists its revoked tokens: one token id
// (jti) per line, first field; the rest of a line, and lines starting
// with #, are comments. Tokens.Revoke appends to it.
const RevokedFile = "keys/revoked"

// RevokedReread is how often Tokens rereads RevokedFile while verifying
// tokens: a revocation takes effect on a running server within this.
const RevokedReread = 500 * time.Millisecond

// MaxTokenTTL is the longest validity Issue grants. A token is a bearer
// secret that stays good until it expires or is revoked, so long-lived
// ones are refused: mint shorter ones and renew them.
const MaxTokenTTL = 365 * 24 * time.Hour

// ErrTokenRevoked is returned by Verify for a token listed in RevokedFile.
var ErrTokenRevoked = errors.New("token revoked")

const issuer = "tideline"

// Tokens issues and verifies bearer tokens (JWT, EdDSA) signed with one
// data dir's key, and refuses the ones revoked in that dir. Safe for
// concurrent use.
type Tokens struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	dir  string // the data dir

	// verified caches tokens whose signature checked out, until they
	// expire: an Ed25519 verify costs ~50µs, more than the rest of a
	// typical request.
	mu       sync.Mutex
	verified map[string]verifiedToken

	// revoked is the last read of RevokedFile; Verify rereads it when
	// it changed, at most every RevokedReread (nextReread, unix nanos).
	revoked    atomic.Pointer[revocations]
	nextReread atomic.Int64
	rereadMu   sync.Mutex // one reread at a time
}

type verifiedToken struct {
	p   auth.Principal
	exp time.Time
	id  string // jti (see tokenID)
}

// revocations is one read of RevokedFile.
type revocations struct {
	ids   map[string]bool
	stamp string // size and mtime of the file read; "" if absent
	err   string // the last reread error, logged once
}

// maxVerified bounds the cache; when full it starts over.
const maxVerified = 1 << 16

// LoadOrCreateTokens reads dataDir's signing key, creating it (mode 0600)
// on first use. The key is never logged.
func LoadOrCreateTokens(dataDir string) (*Tokens, error) {
	t, err := LoadTokens(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		return createKey(dataDir)
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
	return newTokens(priv, dataDir)
}

func createKey(dataDir string) (*Tokens, error) {
	path := filepath.Join(dataDir, KeyFile)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode signing key: %w", err)
	}
	if err := createKeyFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); errors.Is(err, os.ErrExist) {
		return LoadTokens(dataDir)
	} else if err != nil {
		return nil, fmt.Errorf("create signing key: %w", err)
	}
	return newTokens(priv, dataDir)
}

// createKeyFile writes a new key file (mode 0600, in a dir of mode
// 0700) whole under a temporary name, then links it into place: a reader
// (`tideline token` beside a starting server) never sees half a key, and
// if two processes race to create it, one link wins and the other gets
// an error wrapping os.ErrExist (it then reads the winner's key).
func createKeyFile(path string, key []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key dir: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".key-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // mode 0600 from CreateTemp
	if _, err := f.Write(key); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Link(f.Name(), path)
}

type claims struct {
	Role string `json:"role"`
	jwt.RegisteredClaims
}

// Issued is a new token and what identifies it.
type Issued struct {
	Token string
	// ID is the token's unique id (its jti claim), which RevokeID takes.
	ID      string
	Expires time.Time
}

// Issue returns a token for p valid for ttl (more than 0, at most
// MaxTokenTTL).
func (t *Tokens) Issue(p auth.Principal, ttl time.Duration) (string, error) {
	i, err := t.Mint(p, ttl)
	return i.Token, err
}

// Mint is Issue, also returning the token's id and expiry. Every token
// carries a fresh random id (jti, 128 bits), by which it can be revoked.
func (t *Tokens) Mint(p auth.Principal, ttl time.Duration) (Issued, error) {
	if err := es.ValidateToken("sub", p.Subject); err != nil {
		return Issued{}, err
	}
	if strings.HasPrefix(p.Subject, IdPSubjectPrefix) {
		return Issued{}, es.Invalidf("sub", "%q starts with %q, which names identity provider callers", p.Subject, IdPSubjectPrefix)
	}
	if _, err := auth.ParseRole(string(p.Role)); err != nil {
		return Issued{}, es.Invalidf("role", "%v", err)
	}
	if ttl <= 0 {
		return Issued{}, es.Invalidf("ttl", "must be positive, got %s", ttl)
	}
	if ttl > MaxTokenTTL {
		return Issued{}, es.Invalidf("ttl", "at most %s (a year), got %s: a bearer token stays valid until it expires or is revoked, so mint shorter ones and renew them", fmtHours(MaxTokenTTL), ttl)
	}
	now := time.Now()
	exp := now.Add(ttl)
	id := rand.Text()
	c := claims{Role: string(p.Role), RegisteredClaims: jwt.RegisteredClaims{
		ID:        id,
		Issuer:    issuer,
		Subject:   p.Subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(t.priv)
	if err != nil {
		return Issued{}, fmt.Errorf("sign token: %w", err)
	}
	return Issued{Token: tok, ID: id, Expires: exp}, nil
}

func fmtHours(d time.Duration) string { return fmt.Sprintf("%dh", int(d.Hours())) }

func newTokens(priv ed25519.PrivateKey, dataDir string) (*Tokens, error) {
	t := &Tokens{priv: priv, pub: priv.Public().(ed25519.PublicKey), dir: dataDir, verified: map[string]verifiedToken{}}
	// A restarted server honours every revocation from its first call:
	// an unreadable list is an error here, not an open door.
	r, err := readRevocations(t.revokedPath())
	if err != nil {
		return nil, err
	}
	t.revoked.Store(r)
	t.nextReread.Store(time.Now().Add(RevokedReread).UnixNano())
	return t, nil
}

// Verify checks a token's signature, issuer, expiry and role, and that
// it is not revoked (ErrTokenRevoked). Safe for concurrent use.
func (t *Tokens) Verify(token string) (auth.Principal, error) {
	now := time.Now()
	t.mu.Lock()
	v, ok := t.verified[token]
	t.mu.Unlock()
	if !ok || !now.Before(v.exp) {
		p, exp, id, err := t.verify(token)
		if err != nil {
			return auth.Principal{}, err
		}
		v = verifiedToken{p: p, exp: exp, id: id}
		t.mu.Lock()
		if len(t.verified) >= maxVerified {
			clear(t.verified)
		}
		t.verified[token] = v
		t.mu.Unlock()
	}
	if t.revokedIDs(now)[v.id] {
		return auth.Principal{}, ErrTokenRevoked
	}
	return v.p, nil
}

func (t *Tokens) verify(token string) (auth.Principal, time.Time, string, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer), jwt.WithExpirationRequired())
	if err != nil {
		return auth.Principal{}, time.Time{}, "", err
	}
	role, err := auth.ParseRole(c.Role)
	if err != nil {
		return auth.Principal{}, time.Time{}, "", err
	}
	if c.Subject == "" {
		return auth.Principal{}, time.Time{}, "", errors.New("token has no subject")
	}
	return auth.Principal{Subject: c.Subject, Role: role}, c.ExpiresAt.Time, tokenID(token, c.ID), nil
}

// tokenID is how the revocation list names a token: its jti, or for a
// token minted before tokens had one, "sha256:" and the token's hash.
func tokenID(token, jti string) string {
	if jti != "" {
		return jti
	}
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Revocation is a token added to the revocation list.
type Revocation struct {
	ID string
	// Subject, Role and Expires are known when a whole token was given.
	Subject string
	Role    auth.Role
	Expires time.Time
	// Already is set when the token was revoked before.
	Already bool
}

// Revoke adds a token to the data dir's revocation list, given the
// token itself (signed with this dir's key; it may have expired) or its
// id (jti). A server on this dir refuses it within RevokedReread.
// Revoking twice is not an error (Already says so).
func (t *Tokens) Revoke(tokenOrID string) (Revocation, error) {
	tokenOrID = strings.TrimSpace(tokenOrID)
	var r Revocation
	if strings.Count(tokenOrID, ".") == 2 { // a JWT: header.claims.signature
		var c claims
		_, err := jwt.ParseWithClaims(tokenOrID, &c, func(*jwt.Token) (any, error) { return t.pub, nil },
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithoutClaimsValidation())
		if err != nil {
			return Revocation{}, fmt.Errorf("not a token signed by %s's key: %w", t.dir, err)
		}
		r = Revocation{ID: tokenID(tokenOrID, c.ID), Subject: c.Subject, Role: auth.Role(c.Role)}
		if c.ExpiresAt != nil {
			r.Expires = c.ExpiresAt.Time
		}
	} else {
		if err := validTokenID(tokenOrID); err != nil {
			return Revocation{}, err
		}
		r.ID = tokenOrID
	}
	if t.revokedIDs(time.Time{})[r.ID] {
		r.Already = true
		return r, nil
	}
	line := r.ID + " # revoked " + time.Now().UTC().Format(time.RFC3339)
	if r.Subject != "" {
		line += fmt.Sprintf(" sub=%s role=%s expires=%s", r.Subject, r.Role, r.Expires.UTC().Format(time.RFC3339))
	}
	if err := appendLine(t.revokedPath(), line); err != nil {
		return Revocation{}, err
	}
	t.nextReread.Store(0) // this process sees it at once
	return r, nil
}

// validTokenID checks that s can be a token id (a jti, or "sha256:" and
// a hash): one word of letters, digits and ':', '-', '_'.
func validTokenID(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("token id %q: want a token or its id (jti) as `tideline token` printed it", s)
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == ':' || r == '-' || r == '_') {
			return fmt.Errorf("token id %q: unexpected %q; want a token or its id (jti) as `tideline token` printed it", s, r)
		}
	}
	return nil
}

func (t *Tokens) revokedPath() string { return filepath.Join(t.dir, RevokedFile) }

// revokedIDs returns the revoked token ids, rereading RevokedFile first
// if RevokedReread has passed since the last look (now zero: at once)
// and the file changed. A reread that fails keeps the last list and is
// logged once per distinct error.
func (t *Tokens) revokedIDs(now time.Time) map[string]bool {
	next := t.nextReread.Load()
	if now.IsZero() || now.UnixNano() >= next {
		if t.rereadMu.TryLock() {
			if now.IsZero() {
				now = time.Now()
			}
			t.nextReread.Store(now.Add(RevokedReread).UnixNano())
			t.reread()
			t.rereadMu.Unlock()
		}
	}
	return t.revoked.Load().ids
}

func (t *Tokens) reread() {
	cur := t.revoked.Load()
	path := t.revokedPath()
	stamp, err := fileStamp(path)
	if err == nil && stamp == cur.stamp {
		return
	}
	var r *revocations
	if err == nil {
		r, err = readRevocations(path)
	}
	if err != nil {
		if msg := err.Error(); msg != cur.err {
			slog.Error("token revocation list unreadable: keeping the last one read", "file", path, "err", err)
			t.revoked.Store(&revocations{ids: cur.ids, stamp: cur.stamp, err: msg})
		}
		return
	}
	t.revoked.Store(r)
}

// fileStamp fingerprints a file (size and mtime); "" if it does not exist.
func fileStamp(path string) (string, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("token revocation list: %w", err)
	}
	return fmt.Sprintf("%d %d", st.Size(), st.ModTime().UnixNano()), nil
}

func readRevocations(path string) (*revocations, error) {
	stamp, err := fileStamp(path)
	if err != nil {
		return nil, err
	}
	r := &revocations{ids: map[string]bool{}, stamp: stamp}
	if stamp == "" {
		return r, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token revocation list: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
			r.ids[f[0]] = true
		}
	}
	return r, nil
}

// appendLine appends line to path (created 0600), durably.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("token revocation list: %w", err)
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("token revocation list: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("token revocation list: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("token revocation list: %w", err)
	}
	return nil
}

// authenticate returns the principal of h's bearer token: one of ours,
// or when idp is set, one of the identity provider's.
func (t *Tokens) authenticate(h http.Header, idp *IdP) (auth.Principal, error) {
	scheme, tok, _ := strings.Cut(h.Get("Authorization"), " ")
	if tok = strings.TrimSpace(tok); !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "missing bearer token (Authorization: Bearer <token>; get one with `tideline token`)")
	}
	if len(tok) > maxTokenBytes {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "invalid token: longer than %d bytes", maxTokenBytes)
	}
	if idp != nil && !ours(tok) {
		return idp.Verify(tok)
	}
	p, err := t.Verify(tok)
	if errors.Is(err, ErrTokenRevoked) {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "token revoked")
	}
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
	idp     *IdP            // optional
	open    map[string]bool // service paths ("/pkg.Service/") served without a token
	streams map[string]bool // procedure paths whose request is a stream of messages
	live    map[string]bool // procedure paths whose response is a stream (see liveWriter)
	maxBody int64
	errors  *connect.ErrorWriter
	observe func(procedure string, stream bool, took time.Duration, err error) // optional
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	service := r.URL.Path[:strings.LastIndexByte(r.URL.Path, '/')+1]
	if !g.open[service] && !publicProcedures[r.URL.Path] {
		p, err := g.tokens.authenticate(r.Header, g.idp)
		if err == nil && p.Role == auth.Metrics {
			err = es.Errorf(es.Forbidden, "role %q may only read %s", p.Role, MetricsPath)
		}
		if err != nil {
			cerr := toConnect(ctx, err)
			if _, known := g.streams[r.URL.Path]; known && g.observe != nil {
				g.observe(r.URL.Path, g.streams[r.URL.Path] || g.live[r.URL.Path], 0, cerr)
			}
			g.errors.Write(w, r, cerr)
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
