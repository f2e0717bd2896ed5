package api

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
)

// IdPConfig is an external OpenID Connect identity provider (Cognito,
// Keycloak, Auth0...) whose access tokens the API accepts beside its own.
type IdPConfig struct {
	// Issuer is the IdP's issuer URL: its discovery document
	// (<Issuer>/.well-known/openid-configuration) gives the JWKS URL, and
	// tokens' iss must equal it. Optional when JWKSURL is set (then iss is
	// not checked).
	Issuer string
	// JWKSURL is where the IdP's signing keys are; default: discovered.
	JWKSURL string
	// Audience must be among a token's aud, or be its client_id when it
	// has no aud (Cognito's access tokens): tokens the IdP issued for
	// other applications are refused. Required.
	Audience string
	// RoleClaim names the claim holding the caller's IdP groups or roles,
	// a string or an array of strings; when no claim has that name, a
	// dotted path reaches into objects (Keycloak: realm_access.roles).
	// Default DefaultRoleClaim.
	RoleClaim string
	// Roles maps IdP groups to Tideline roles (ParseIdPRoles). When a
	// caller's groups map to several roles, the first in auth.Roles' order
	// wins (admin first). Device, service and metrics cannot be granted.
	Roles map[string]auth.Role
	// RefreshEvery is how often the keys are fetched again; default 10 min.
	RefreshEvery time.Duration
	// MinRefresh bounds how often a token with an unknown key id makes
	// the keys be fetched again; default 30 s.
	MinRefresh time.Duration
	// Client fetches the discovery document and the keys; default one
	// with a 10 s timeout.
	Client *http.Client
}

// IdPSubjectPrefix starts the subject of every identity provider's caller
// ("oidc:" and its sub); Tokens.Mint refuses it, so an IdP's caller and a
// local one never share a subject.
const IdPSubjectPrefix = "oidc:"

// DefaultRoleClaim is IdPConfig.RoleClaim's default.
const DefaultRoleClaim = "groups"

// idpLeeway is the clock skew allowed on an IdP token's exp and nbf.
const idpLeeway = 30 * time.Second

// maxIdPDocument bounds a discovery document or key set.
const maxIdPDocument = 1 << 20

// idpAlgorithms are the signatures accepted from an IdP: never none, never
// HMAC (a shared secret is no public key).
var idpAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// IdP verifies access tokens of an external identity provider against its
// published keys (JWKS), cached and fetched again periodically and on an
// unknown key id (rate-limited); a failed fetch keeps the last good keys.
// Safe for concurrent use.
type IdP struct {
	cfg    IdPConfig
	parser *jwt.Parser

	keys atomic.Pointer[keySet] // the last good set; nil before one

	fetchMu   sync.Mutex // one fetch at a time; guards the fields below
	jwksURL   string
	attempted time.Time // last fetch, successful or not
}

// keySet is one successful fetch of the JWKS.
type keySet struct {
	keys    map[string]crypto.PublicKey // by kid
	fetched time.Time
}

// NewIdP checks c and returns its verifier. It fetches the keys once,
// logging (not returning) a failure: an unreachable IdP at start must not
// keep the server down, and its tokens are refused until a fetch succeeds.
func NewIdP(ctx context.Context, c IdPConfig) (*IdP, error) {
	if c.Issuer == "" && c.JWKSURL == "" {
		return nil, errors.New("identity provider: want an issuer or a JWKS URL")
	}
	if c.Audience == "" {
		return nil, errors.New("identity provider: an audience is required, or tokens the IdP issued to other applications would be accepted")
	}
	if c.Issuer == issuer {
		return nil, fmt.Errorf("identity provider: issuer %q is the server's own", issuer)
	}
	if len(c.Roles) == 0 {
		return nil, errors.New("identity provider: map at least one IdP group to a role")
	}
	for g, r := range c.Roles {
		if err := idpGrantable(r); err != nil {
			return nil, fmt.Errorf("identity provider: group %q: %w", g, err)
		}
	}
	c.RoleClaim = cmp.Or(c.RoleClaim, DefaultRoleClaim)
	if c.RefreshEvery <= 0 {
		c.RefreshEvery = 10 * time.Minute
	}
	if c.MinRefresh <= 0 {
		c.MinRefresh = 30 * time.Second
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: 10 * time.Second}
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(idpAlgorithms),
		jwt.WithExpirationRequired(), jwt.WithLeeway(idpLeeway)}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	p := &IdP{cfg: c, parser: jwt.NewParser(opts...), jwksURL: c.JWKSURL}
	p.fetchMu.Lock()
	defer p.fetchMu.Unlock()
	if err := p.fetch(ctx); err != nil {
		slog.Warn("identity provider: keys not fetched; its tokens are refused until they are", "err", err)
	}
	return p, nil
}

// idpGrantable refuses the roles only the server grants: devices and
// services get their tokens from `tideline token` / `tideline device`.
func idpGrantable(r auth.Role) error {
	if _, err := auth.ParseRole(string(r)); err != nil {
		return err
	}
	if r == auth.Device || r == auth.Service || r == auth.Metrics {
		return fmt.Errorf("role %q cannot be granted by an identity provider", r)
	}
	return nil
}

// ParseIdPRoles parses "group=role,group=role" (e.g.
// "admins=admin,riders=rider") into IdPConfig.Roles.
func ParseIdPRoles(s string) (map[string]auth.Role, error) {
	m := map[string]auth.Role{}
	for pair := range strings.SplitSeq(s, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		g, r, ok := strings.Cut(pair, "=")
		g, r = strings.TrimSpace(g), strings.TrimSpace(r)
		if !ok || g == "" || r == "" {
			return nil, fmt.Errorf("%q: want idp-group=tideline-role", pair)
		}
		if _, dup := m[g]; dup {
			return nil, fmt.Errorf("group %q mapped twice", g)
		}
		if err := idpGrantable(auth.Role(r)); err != nil {
			return nil, fmt.Errorf("group %q: %w", g, err)
		}
		m[g] = auth.Role(r)
	}
	return m, nil
}

// Verify checks an IdP token (signature by a key of the JWKS, algorithm,
// issuer, audience, exp and nbf, subject) and maps it to a principal,
// whose subject is IdPSubjectPrefix and sub (escaped, see escapeSubject).
// A bad token is es.Unauthenticated; a good one whose groups map to no
// role is es.Forbidden.
func (p *IdP) Verify(token string) (auth.Principal, error) {
	c := jwt.MapClaims{}
	if _, err := p.parser.ParseWithClaims(token, c, p.key); err != nil {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "invalid identity provider token: %v", err)
	}
	if err := p.audience(c); err != nil {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "invalid identity provider token: %v", err)
	}
	sub, _ := c["sub"].(string)
	if sub == "" {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "invalid identity provider token: no subject")
	}
	subject := IdPSubjectPrefix + escapeSubject(sub)
	if len(subject) > es.MaxTokenLen {
		return auth.Principal{}, es.Errorf(es.Unauthenticated, "invalid identity provider token: subject longer than %d bytes", es.MaxTokenLen)
	}
	groups := claimStrings(c, p.cfg.RoleClaim)
	for _, r := range auth.Roles {
		for _, g := range groups {
			if p.cfg.Roles[g] == r {
				return auth.Principal{Subject: subject, Role: r}, nil
			}
		}
	}
	return auth.Principal{}, es.Errorf(es.Forbidden, "identity provider token of %s: none of its %s (%s) maps to a Tideline role", subject, p.cfg.RoleClaim, strings.Join(groups, ", "))
}

// audience checks that the token is for this application: Audience among
// its aud, or, in a token without aud (Cognito's access tokens), its
// client_id.
func (p *IdP) audience(c jwt.MapClaims) error {
	aud, err := c.GetAudience()
	if err != nil {
		return err
	}
	if _, has := c["aud"]; has {
		if !slices.Contains(aud, p.cfg.Audience) {
			return fmt.Errorf("audience %v does not include %q", []string(aud), p.cfg.Audience)
		}
		return nil
	}
	if id, _ := c["client_id"].(string); id != p.cfg.Audience {
		return fmt.Errorf("no audience, and client_id %q is not %q", id, p.cfg.Audience)
	}
	return nil
}

// escapeSubject makes an IdP's sub a valid id (es.ValidateToken), one to
// one: every byte but letters, digits, '-', '_' and ':' becomes =XX
// (Auth0's "auth0|abc": "auth0=7Cabc").
func escapeSubject(sub string) string {
	var b strings.Builder
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == ':' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

// claimStrings returns the strings of c's claim path: a string or an
// array's strings. A path that is no claim's name is dotted, reaching into
// objects (realm_access.roles); a name with dots (Auth0's namespaced
// https://tideline.example/roles) is taken whole first.
func claimStrings(c map[string]any, path string) []string {
	v, ok := c[path]
	if !ok {
		v = any(c)
		for name := range strings.SplitSeq(path, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[name]
		}
	}
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// key returns the JWKS key of t's kid, of a type fitting t's algorithm.
func (p *IdP) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errors.New("no key id (kid)")
	}
	k, err := p.lookup(kid)
	if err != nil {
		return nil, err
	}
	ok := false
	switch k := k.(type) {
	case *rsa.PublicKey:
		ok = t.Method.Alg() == "RS256"
	case *ecdsa.PublicKey:
		ok = t.Method.Alg() == "ES256" && k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		ok = t.Method.Alg() == "EdDSA"
	}
	if !ok {
		return nil, fmt.Errorf("key %q does not sign %s", kid, t.Method.Alg())
	}
	return k, nil
}

// lookup returns the key kid. Keys older than RefreshEvery are fetched
// again by one caller while the others go on with them; an unknown kid
// waits for a fetch, unless the last one is more recent than MinRefresh.
func (p *IdP) lookup(kid string) (crypto.PublicKey, error) {
	ks := p.keys.Load()
	var k crypto.PublicKey
	if ks != nil {
		k = ks.keys[kid]
	}
	switch {
	case k != nil && time.Since(ks.fetched) < p.cfg.RefreshEvery:
		return k, nil
	case k != nil: // stale
		if !p.fetchMu.TryLock() {
			return k, nil
		}
	default:
		p.fetchMu.Lock()
	}
	p.refresh()
	p.fetchMu.Unlock()
	if ks := p.keys.Load(); ks != nil && ks.keys[kid] != nil {
		return ks.keys[kid], nil
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// refresh fetches the keys unless the last fetch is more recent than
// MinRefresh; p.fetchMu is held.
func (p *IdP) refresh() {
	if time.Since(p.attempted) < p.cfg.MinRefresh {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.fetch(ctx); err != nil {
		slog.Warn("identity provider: keys not fetched; keeping the last ones", "err", err)
	}
}

// fetch discovers the JWKS URL if need be and reads the keys; p.fetchMu
// is held.
func (p *IdP) fetch(ctx context.Context) error {
	p.attempted = time.Now()
	if p.jwksURL == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := p.get(ctx, strings.TrimSuffix(p.cfg.Issuer, "/")+"/.well-known/openid-configuration", &doc); err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		if doc.Issuer != p.cfg.Issuer {
			return fmt.Errorf("discovery: the document's issuer is %q, not %q", doc.Issuer, p.cfg.Issuer)
		}
		if doc.JWKSURI == "" {
			return errors.New("discovery: no jwks_uri")
		}
		p.jwksURL = doc.JWKSURI
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := p.get(ctx, p.jwksURL, &set); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		if k.Kid == "" || k.Use != "" && k.Use != "sig" || k.Alg != "" && !slices.Contains(idpAlgorithms, k.Alg) {
			continue
		}
		pub, err := k.public()
		if err != nil {
			slog.Warn("identity provider: key skipped", "kid", k.Kid, "err", err)
			continue
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return fmt.Errorf("keys: none usable at %s", p.jwksURL)
	}
	p.keys.Store(&keySet{keys: keys, fetched: p.attempted})
	return nil
}

func (p *IdP) get(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxIdPDocument+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if len(b) > maxIdPDocument {
		return fmt.Errorf("GET %s: larger than %d bytes", url, maxIdPDocument)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// jwk is one key of a JWKS (RFC 7517), public parts only.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (k jwk) public() (crypto.PublicKey, error) {
	b64 := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if len(n) < 2048/8 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("RSA key shorter than 2048 bits or bad exponent")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("curve %q (want P-256)", k.Crv)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		if len(x) != 32 || len(y) != 32 {
			return nil, errors.New("P-256 coordinates not 32 bytes")
		}
		// ParseUncompressedPublicKey refuses a point off the curve.
		raw := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return nil, err
		}
		return pub, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("curve %q (want Ed25519)", k.Crv)
		}
		x, err := b64(k.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("Ed25519 key not 32 bytes")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("key type %q", k.Kty)
}

// ours reports whether token claims the server's own issuer: then only the
// server's key may have signed it, and the IdP is never asked.
func ours(token string) bool {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return true // unreadable: let Tokens say why
	}
	return c.Issuer == issuer
}
