package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/rewards/v1/rewardsv1connect"
)

// fakeIdP is an identity provider started by a test: a discovery document
// and a JWKS the test changes at will.
type fakeIdP struct {
	URL         string // the issuer
	mu          sync.Mutex
	keys        []map[string]string
	failing     bool
	fetches     atomic.Int64 // JWKS fetches
	discoveries atomic.Int64 // discovery document fetches
}

func startIdP(tb testing.TB) *fakeIdP {
	tb.Helper()
	f := &fakeIdP{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		f.discoveries.Add(1)
		json.NewEncoder(w).Encode(map[string]string{"issuer": f.URL, "jwks_uri": f.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": f.keys})
	})
	s := httptest.NewServer(mux)
	tb.Cleanup(s.Close)
	f.URL = s.URL
	return f
}

// publish replaces the JWKS with keys, by kid.
func (f *fakeIdP) publish(keys map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = nil
	for kid, k := range keys {
		f.keys = append(f.keys, jwkOf(kid, k))
	}
}

func (f *fakeIdP) fail(b bool) { f.mu.Lock(); f.failing = b; f.mu.Unlock() }

func jwkOf(kid string, priv any) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PrivateKey:
		pub, _ := k.PublicKey.Bytes() // 0x04 || x || y
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(pub[1:33]), "y": b64(pub[33:])}
	case ed25519.PrivateKey:
		return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k.Public().(ed25519.PublicKey))}
	}
	panic("key type")
}

type idpKeys struct {
	rsa   *rsa.PrivateKey
	ec    *ecdsa.PrivateKey
	ed    ed25519.PrivateKey
	other *rsa.PrivateKey // never published
}

func newIdPKeys(tb testing.TB) idpKeys {
	tb.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	o, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	_, d, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return idpKeys{rsa: r, ec: e, ed: d, other: o}
}

const testAudience = "tideline-app"

func idpClaims(iss string, groups ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": iss, "aud": []string{"other-app", testAudience}, "sub": "abc",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "groups": groups}
}

func idpSign(tb testing.TB, m jwt.SigningMethod, kid string, c jwt.MapClaims, key any) string {
	tb.Helper()
	t := jwt.NewWithClaims(m, c)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func idpConfig(f *fakeIdP) api.IdPConfig {
	return api.IdPConfig{Issuer: f.URL, Audience: testAudience,
		Roles: map[string]auth.Role{"admins": auth.Admin, "riders": auth.Rider, "walkers": auth.Walker}}
}

func TestIdPTokens(t *testing.T) {
	t.Parallel()
	f := startIdP(t)
	k := newIdPKeys(t)
	f.publish(map[string]any{"rsa1": k.rsa, "ec1": k.ec, "ed1": k.ed})
	idp, err := api.NewIdP(context.Background(), idpConfig(f))
	if err != nil {
		t.Fatal(err)
	}
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := idpClaims(f.URL, "riders")
		edit(c)
		return c
	}
	rsaPub := x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)
	unsigned, err := jwt.NewWithClaims(jwt.SigningMethodNone, idpClaims(f.URL, "admins")).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	accepted := []struct {
		name  string
		token string
		want  auth.Principal
	}{
		{"rs256", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(f.URL, "riders"), k.rsa), auth.Principal{Subject: "oidc:abc", Role: auth.Rider}},
		{"es256", idpSign(t, jwt.SigningMethodES256, "ec1", idpClaims(f.URL, "walkers"), k.ec), auth.Principal{Subject: "oidc:abc", Role: auth.Walker}},
		{"eddsa", idpSign(t, jwt.SigningMethodEdDSA, "ed1", idpClaims(f.URL, "riders"), k.ed), auth.Principal{Subject: "oidc:abc", Role: auth.Rider}},
		{"admin_wins_over_rider", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(f.URL, "riders", "unknown", "admins"), k.rsa), auth.Principal{Subject: "oidc:abc", Role: auth.Admin}},
		{"aud_as_string", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { c["aud"] = testAudience }), k.rsa), auth.Principal{Subject: "oidc:abc", Role: auth.Rider}},
		{"sub_escaped", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { c["sub"] = "auth0|x=1" }), k.rsa), auth.Principal{Subject: "oidc:auth0=7Cx=3D1", Role: auth.Rider}},
		{"cognito_access_token_client_id", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { delete(c, "aud"); c["client_id"] = testAudience }), k.rsa), auth.Principal{Subject: "oidc:abc", Role: auth.Rider}},
		{"expired_within_leeway", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-5 * time.Second).Unix() }), k.rsa), auth.Principal{Subject: "oidc:abc", Role: auth.Rider}},
	}
	for _, c := range accepted {
		t.Run(c.name, func(t *testing.T) {
			p, err := idp.Verify(c.token)
			if err != nil || p != c.want {
				t.Fatalf("Verify = %v, %v; want %v", p, err, c.want)
			}
		})
	}
	refused := []struct {
		name  string
		token string
		kind  es.Kind
	}{
		{"wrong_issuer", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), k.rsa), es.Unauthenticated},
		{"wrong_audience", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { c["aud"] = "other-app" }), k.rsa), es.Unauthenticated},
		{"no_audience", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { delete(c, "aud") }), k.rsa), es.Unauthenticated},
		{"no_audience_other_client_id", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { delete(c, "aud"); c["client_id"] = "other-app" }), k.rsa), es.Unauthenticated},
		{"wrong_audience_right_client_id", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { c["aud"] = "other-app"; c["client_id"] = testAudience }), k.rsa), es.Unauthenticated},
		{"expired", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), k.rsa), es.Unauthenticated},
		{"no_exp", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { delete(c, "exp") }), k.rsa), es.Unauthenticated},
		{"not_yet_valid", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Minute).Unix() }), k.rsa), es.Unauthenticated},
		{"no_subject", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { delete(c, "sub") }), k.rsa), es.Unauthenticated},
		{"unknown_kid", idpSign(t, jwt.SigningMethodRS256, "nope", idpClaims(f.URL, "admins"), k.rsa), es.Unauthenticated},
		{"no_kid", idpSign(t, jwt.SigningMethodRS256, "", idpClaims(f.URL, "admins"), k.rsa), es.Unauthenticated},
		{"key_not_in_jwks", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(f.URL, "admins"), k.other), es.Unauthenticated},
		{"alg_none", unsigned, es.Unauthenticated},
		{"hs256_with_rsa_public_key", idpSign(t, jwt.SigningMethodHS256, "rsa1", idpClaims(f.URL, "admins"), rsaPub), es.Unauthenticated},
		{"rs256_under_ec_kid", idpSign(t, jwt.SigningMethodRS256, "ec1", idpClaims(f.URL, "admins"), k.rsa), es.Unauthenticated},
		{"ps256", idpSign(t, jwt.SigningMethodPS256, "rsa1", idpClaims(f.URL, "admins"), k.rsa), es.Unauthenticated},
		{"no_mapped_role", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(f.URL, "guests"), k.rsa), es.Forbidden},
		{"no_groups", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(func(c jwt.MapClaims) { delete(c, "groups") }), k.rsa), es.Forbidden},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			p, err := idp.Verify(c.token)
			if es.KindOf(err) != c.kind {
				t.Fatalf("Verify = %v, %v; want %s", p, err, c.kind)
			}
		})
	}
}

func TestIdPRoleClaimPath(t *testing.T) {
	t.Parallel()
	f := startIdP(t)
	k := newIdPKeys(t)
	f.publish(map[string]any{"ec1": k.ec})
	for _, c := range []struct {
		name, claim, key string // key: the claim's top-level name
		value            any
	}{
		{"keycloak", "realm_access.roles", "realm_access", map[string]any{"roles": []string{"offline_access", "admins"}}},
		{"cognito", "cognito:groups", "cognito:groups", []string{"admins"}},
		{"auth0_namespaced", "https://tideline.example/roles", "https://tideline.example/roles", []string{"admins"}},
		{"single_string", "group", "group", "admins"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := idpConfig(f)
			cfg.RoleClaim = c.claim
			idp, err := api.NewIdP(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			claims := idpClaims(f.URL)
			claims[c.key] = c.value
			if p, err := idp.Verify(idpSign(t, jwt.SigningMethodES256, "ec1", claims, k.ec)); err != nil || p.Role != auth.Admin {
				t.Fatalf("Verify = %v, %v; want admin", p, err)
			}
		})
	}
}

// TestIdPKeyRotation: a token of a new key is accepted once the JWKS
// changes; the old key's tokens are refused after the refresh; a failing
// IdP leaves the last good keys in place.
func TestIdPKeyRotation(t *testing.T) {
	t.Parallel()
	f := startIdP(t)
	k := newIdPKeys(t)
	f.publish(map[string]any{"rsa1": k.rsa})
	cfg := idpConfig(f)
	cfg.MinRefresh = time.Millisecond
	idp, err := api.NewIdP(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	old := idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(f.URL, "riders"), k.rsa)
	if _, err := idp.Verify(old); err != nil {
		t.Fatal(err)
	}
	f.publish(map[string]any{"ec2": k.ec})
	time.Sleep(2 * time.Millisecond) // past MinRefresh
	if _, err := idp.Verify(idpSign(t, jwt.SigningMethodES256, "ec2", idpClaims(f.URL, "riders"), k.ec)); err != nil {
		t.Fatalf("new key's token: %v", err)
	}
	if _, err := idp.Verify(old); es.KindOf(err) != es.Unauthenticated {
		t.Fatalf("rotated-out key's token: %v", err)
	}

	f.fail(true)
	time.Sleep(2 * time.Millisecond)
	before := f.fetches.Load()
	if _, err := idp.Verify(idpSign(t, jwt.SigningMethodRS256, "gone", idpClaims(f.URL, "riders"), k.rsa)); es.KindOf(err) != es.Unauthenticated {
		t.Fatalf("unknown kid while the IdP fails: %v", err)
	}
	if f.fetches.Load() == before {
		t.Fatal("unknown kid fetched no keys")
	}
	if _, err := idp.Verify(idpSign(t, jwt.SigningMethodES256, "ec2", idpClaims(f.URL, "riders"), k.ec)); err != nil {
		t.Fatalf("last good key after a failed fetch: %v", err)
	}
}

// TestIdPUnknownKidRateLimited: a flood of unknown key ids fetches the
// keys at most once per MinRefresh.
func TestIdPUnknownKidRateLimited(t *testing.T) {
	t.Parallel()
	f := startIdP(t)
	k := newIdPKeys(t)
	f.publish(map[string]any{"rsa1": k.rsa})
	idp, err := api.NewIdP(context.Background(), idpConfig(f)) // MinRefresh 30 s
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		tok := idpSign(t, jwt.SigningMethodRS256, "kid"+string(rune('a'+i)), idpClaims(f.URL, "riders"), k.rsa)
		if _, err := idp.Verify(tok); err == nil {
			t.Fatal("unknown kid accepted")
		}
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1 (at start)", n)
	}
}

func TestIdPConfigRefused(t *testing.T) {
	t.Parallel()
	f := startIdP(t)
	for name, edit := range map[string]func(*api.IdPConfig){
		"no_issuer_nor_jwks": func(c *api.IdPConfig) { c.Issuer = "" },
		"no_audience":        func(c *api.IdPConfig) { c.Audience = "" },
		"no_roles":           func(c *api.IdPConfig) { c.Roles = nil },
		"grants_service":     func(c *api.IdPConfig) { c.Roles = map[string]auth.Role{"svc": auth.Service} },
		"grants_device":      func(c *api.IdPConfig) { c.Roles = map[string]auth.Role{"dev": auth.Device} },
		"our_issuer":         func(c *api.IdPConfig) { c.Issuer = "tideline" },
	} {
		c := idpConfig(f)
		edit(&c)
		if _, err := api.NewIdP(context.Background(), c); err == nil {
			t.Errorf("%s: NewIdP accepted %+v", name, c)
		}
	}
	for _, s := range []string{"admins=device", "x=service", "admins", "=admin", "a=admin,a=rider", "a=root"} {
		if _, err := api.ParseIdPRoles(s); err == nil {
			t.Errorf("ParseIdPRoles(%q) accepted", s)
		}
	}
	m, err := api.ParseIdPRoles(" admins=admin, riders=rider ,")
	if err != nil || len(m) != 2 || m["admins"] != auth.Admin || m["riders"] != auth.Rider {
		t.Fatalf("ParseIdPRoles = %v, %v", m, err)
	}
}

// TestIdPThroughTheServer: the whole server, with an identity provider
// configured, accepts its tokens by their mapped role, refuses the ones
// it should, and keeps accepting its own tokens.
func TestIdPThroughTheServer(t *testing.T) {
	t.Parallel()
	idpSrv := startIdP(t)
	k := newIdPKeys(t)
	idpSrv.publish(map[string]any{"rsa1": k.rsa, "ec1": k.ec})
	f := start(t, func(m *server.Main) { m.Config.OIDC = idpConfig(idpSrv) })
	c := adminv1connect.NewAdminServiceClient(h2c, f.URL)
	ctx := context.Background()
	list := func(tok string) error {
		_, err := c.ListProjections(ctx, withToken(&adminv1.ListProjectionsRequest{}, tok))
		return err
	}
	for _, tc := range []struct {
		name  string
		token string
		code  connect.Code // 0: accepted
	}{
		{"idp_admin_rs256", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(idpSrv.URL, "admins"), k.rsa), 0},
		{"idp_admin_es256", idpSign(t, jwt.SigningMethodES256, "ec1", idpClaims(idpSrv.URL, "admins"), k.ec), 0},
		{"idp_rider", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(idpSrv.URL, "riders"), k.rsa), connect.CodePermissionDenied},
		{"idp_no_mapped_role", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(idpSrv.URL, "guests"), k.rsa), connect.CodePermissionDenied},
		{"idp_wrong_audience", idpSign(t, jwt.SigningMethodRS256, "rsa1", func() jwt.MapClaims {
			c := idpClaims(idpSrv.URL, "admins")
			c["aud"] = "other-app"
			return c
		}(), k.rsa), connect.CodeUnauthenticated},
		{"idp_key_not_in_jwks", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(idpSrv.URL, "admins"), k.other), connect.CodeUnauthenticated},
		{"own_admin", f.Token(t, "root", auth.Admin), 0},
		{"own_walker", f.Token(t, "alice", auth.Walker), connect.CodePermissionDenied},
		// One of ours by its issuer, signed by an IdP key: never the IdP's.
		{"our_issuer_idp_key", idpSign(t, jwt.SigningMethodRS256, "rsa1", func() jwt.MapClaims {
			c := idpClaims("tideline", "admins")
			c["role"] = "admin"
			return c
		}(), k.rsa), connect.CodeUnauthenticated},
	} {
		err := list(tc.token)
		if tc.code == 0 && err != nil || tc.code != 0 && connect.CodeOf(err) != tc.code {
			t.Errorf("%s: ListProjections: %v, want code %v", tc.name, err, tc.code)
		}
		if tc.name == "idp_no_mapped_role" && !strings.Contains(err.Error(), "maps to a Tideline role") {
			t.Errorf("%s: unclear message: %v", tc.name, err)
		}
	}
}

// TestIdPJWKSURLThroughTheServer: with a JWKS URL and no issuer
// (--jwks-url alone), the server takes the IdP's keys from that URL, never
// asking for a discovery document, and accepts the IdP's tokens by their
// mapped role and subject, whatever their iss (none is configured to check
// it against); it refuses a token signed by another key, one for another
// audience, and one claiming the server's own issuer.
func TestIdPJWKSURLThroughTheServer(t *testing.T) {
	t.Parallel()
	idpSrv := startIdP(t)
	k := newIdPKeys(t)
	idpSrv.publish(map[string]any{"rsa1": k.rsa, "ed1": k.ed})
	f := start(t, func(m *server.Main) {
		m.Config.OIDC = api.IdPConfig{JWKSURL: idpSrv.URL + "/jwks", Audience: testAudience,
			Roles: map[string]auth.Role{"admins": auth.Admin, "riders": auth.Rider}}
	})
	admin := adminv1connect.NewAdminServiceClient(h2c, f.URL)
	rewards := rewardsv1connect.NewRewardsServiceClient(h2c, f.URL)
	ctx := context.Background()
	with := func(iss string, edit func(jwt.MapClaims), groups ...string) jwt.MapClaims {
		c := idpClaims(iss, groups...)
		edit(c)
		return c
	}
	for _, tc := range []struct {
		name  string
		token string
		code  connect.Code // of ListProjections, admin only; 0: accepted
	}{
		{"admin_rs256", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(idpSrv.URL, "admins"), k.rsa), 0},
		{"admin_eddsa", idpSign(t, jwt.SigningMethodEdDSA, "ed1", idpClaims(idpSrv.URL, "admins"), k.ed), 0},
		{"admin_any_issuer", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims("https://sso.elsewhere.example", "admins"), k.rsa), 0},
		{"admin_no_issuer", idpSign(t, jwt.SigningMethodRS256, "rsa1", with("", func(c jwt.MapClaims) { delete(c, "iss") }, "admins"), k.rsa), 0},
		{"rider", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(idpSrv.URL, "riders"), k.rsa), connect.CodePermissionDenied},
		{"no_mapped_role", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(idpSrv.URL, "guests"), k.rsa), connect.CodePermissionDenied},
		{"another_key_under_a_published_kid", idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(idpSrv.URL, "admins"), k.other), connect.CodeUnauthenticated},
		{"another_key_unknown_kid", idpSign(t, jwt.SigningMethodRS256, "other", idpClaims(idpSrv.URL, "admins"), k.other), connect.CodeUnauthenticated},
		{"wrong_audience", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(idpSrv.URL, func(c jwt.MapClaims) { c["aud"] = "other-app" }, "admins"), k.rsa), connect.CodeUnauthenticated},
		{"no_audience", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(idpSrv.URL, func(c jwt.MapClaims) { delete(c, "aud") }, "admins"), k.rsa), connect.CodeUnauthenticated},
		{"expired", idpSign(t, jwt.SigningMethodRS256, "rsa1", with(idpSrv.URL, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, "admins"), k.rsa), connect.CodeUnauthenticated},
		{"our_issuer", idpSign(t, jwt.SigningMethodRS256, "rsa1", with("tideline", func(c jwt.MapClaims) { c["role"] = "admin" }, "admins"), k.rsa), connect.CodeUnauthenticated},
		{"own_admin", f.Token(t, "root", auth.Admin), 0},
	} {
		_, err := admin.ListProjections(ctx, withToken(&adminv1.ListProjectionsRequest{}, tc.token))
		if tc.code == 0 && err != nil || tc.code != 0 && connect.CodeOf(err) != tc.code {
			t.Errorf("%s: ListProjections: %v, want code %v", tc.name, err, tc.code)
		}
	}
	rider := idpSign(t, jwt.SigningMethodRS256, "rsa1", with(idpSrv.URL, func(c jwt.MapClaims) { c["sub"] = "rider-7" }, "riders", "guests"), k.rsa)
	res, err := rewards.GetAccount(ctx, withToken(&rewardsv1.GetAccountRequest{}, rider))
	if err != nil || res.Msg.Account.UserId != api.IdPSubjectPrefix+"rider-7" {
		t.Fatalf("a rider's own account: %v, %v", res, err)
	}
	if n := idpSrv.discoveries.Load(); n != 0 {
		t.Errorf("the discovery document fetched %d times, with a JWKS URL", n)
	}
	if idpSrv.fetches.Load() == 0 {
		t.Error("the JWKS was never fetched")
	}
}

// TestIdPJWKSURLWithIssuer: a JWKS URL with an issuer takes the keys from
// the URL, without discovery, and still checks iss.
func TestIdPJWKSURLWithIssuer(t *testing.T) {
	t.Parallel()
	f := startIdP(t)
	k := newIdPKeys(t)
	f.publish(map[string]any{"ec1": k.ec})
	const iss = "https://sso.example/realms/tideline" // not where the keys are
	cfg := idpConfig(f)
	cfg.Issuer, cfg.JWKSURL = iss, f.URL+"/jwks"
	idp, err := api.NewIdP(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := idp.Verify(idpSign(t, jwt.SigningMethodES256, "ec1", idpClaims(iss, "riders"), k.ec)); err != nil || p.Role != auth.Rider {
		t.Fatalf("the issuer's token: %v, %v", p, err)
	}
	for name, c := range map[string]jwt.MapClaims{
		"wrong_issuer":   idpClaims(f.URL, "riders"),
		"no_issuer":      func() jwt.MapClaims { c := idpClaims(iss, "riders"); delete(c, "iss"); return c }(),
		"wrong_audience": func() jwt.MapClaims { c := idpClaims(iss, "riders"); c["aud"] = "other-app"; return c }(),
	} {
		if _, err := idp.Verify(idpSign(t, jwt.SigningMethodES256, "ec1", c, k.ec)); es.KindOf(err) != es.Unauthenticated {
			t.Errorf("%s: Verify = %v, want Unauthenticated", name, err)
		}
	}
	if n := f.discoveries.Load(); n != 0 {
		t.Errorf("the discovery document fetched %d times, with a JWKS URL", n)
	}
}

// TestIdPPeriodicRefresh: keys older than RefreshEvery are fetched again,
// so a key the IdP withdrew stops working without any unknown kid.
func TestIdPPeriodicRefresh(t *testing.T) {
	t.Parallel()
	f := startIdP(t)
	k := newIdPKeys(t)
	f.publish(map[string]any{"rsa1": k.rsa, "ec1": k.ec})
	cfg := idpConfig(f)
	cfg.RefreshEvery, cfg.MinRefresh = 20*time.Millisecond, time.Millisecond
	idp, err := api.NewIdP(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	withdrawn := idpSign(t, jwt.SigningMethodRS256, "rsa1", idpClaims(f.URL, "riders"), k.rsa)
	if _, err := idp.Verify(withdrawn); err != nil {
		t.Fatal(err)
	}
	f.publish(map[string]any{"ec1": k.ec})
	deadline := time.Now().Add(5 * time.Second)
	for _, err := idp.Verify(withdrawn); err == nil; _, err = idp.Verify(withdrawn) {
		if time.Now().After(deadline) {
			t.Fatal("a withdrawn key still verifies 5 s after its removal")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdPConcurrentVerify: verifying while the keys are fetched again and
// again is safe (run with -race).
func TestIdPConcurrentVerify(t *testing.T) {
	t.Parallel()
	f := startIdP(t)
	k := newIdPKeys(t)
	f.publish(map[string]any{"ec1": k.ec})
	cfg := idpConfig(f)
	cfg.RefreshEvery, cfg.MinRefresh = time.Millisecond, time.Millisecond
	idp, err := api.NewIdP(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	good := idpSign(t, jwt.SigningMethodES256, "ec1", idpClaims(f.URL, "riders"), k.ec)
	unknown := idpSign(t, jwt.SigningMethodES256, "ec9", idpClaims(f.URL, "riders"), k.ec)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := idp.Verify(good); err != nil {
					t.Error(err)
					return
				}
				if _, err := idp.Verify(unknown); err == nil {
					t.Error("unknown kid accepted")
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestLocalSubjectsCannotBeIdPs: the server mints no token whose subject
// an identity provider's caller has.
func TestLocalSubjectsCannotBeIdPs(t *testing.T) {
	t.Parallel()
	tokens, err := api.LoadOrCreateTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Issue(auth.Principal{Subject: api.IdPSubjectPrefix + "abc", Role: auth.Admin}, time.Hour); es.KindOf(err) != es.Invalid {
		t.Fatalf("Issue(oidc:abc) = %v, want Invalid", err)
	}
	if _, err := tokens.Issue(auth.Principal{Subject: "oidcabc", Role: auth.Admin}, time.Hour); err != nil {
		t.Fatal(err)
	}
}
