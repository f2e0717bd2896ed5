package api_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/internal/poll"
)

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	tokens, err := api.LoadOrCreateTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, api.KeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	again, err := api.LoadTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	alice := auth.Principal{Subject: "alice", Role: auth.Walker}
	tok, err := tokens.Issue(alice, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // second time from the cache
		if p, err := again.Verify(tok); err != nil || p != alice {
			t.Fatalf("Verify = %v, %v", p, err)
		}
	}
	other, _ := api.LoadOrCreateTokens(t.TempDir())
	if _, err := other.Verify(tok); err == nil {
		t.Fatal("a token signed with another data dir's key verified")
	}
	if _, err := tokens.Verify(tok[:len(tok)-2] + "xx"); err == nil {
		t.Fatal("a tampered token verified")
	}

	t.Run("cached_token_still_expires", func(t *testing.T) {
		short, err := tokens.Issue(alice, 1500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tokens.Verify(short); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, 5*time.Second, "the expired token to stop verifying", func() bool {
			_, err := tokens.Verify(short)
			return err != nil
		})
	})
}

func TestTokenIDsAreUniqueAndInTheToken(t *testing.T) {
	tokens, err := api.LoadOrCreateTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 1000 {
		i, err := tokens.Mint(auth.Principal{Subject: "alice", Role: auth.Walker}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if i.ID == "" || seen[i.ID] {
			t.Fatalf("token id %q empty or issued twice", i.ID)
		}
		seen[i.ID] = true
		payload, err := base64.RawURLEncoding.DecodeString(strings.Split(i.Token, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			JTI string `json:"jti"`
		}
		if err := json.Unmarshal(payload, &c); err != nil || c.JTI != i.ID {
			t.Fatalf("token claims %s carry jti %q, want %q (%v)", payload, c.JTI, i.ID, err)
		}
	}
}

func TestTokenTTLBounds(t *testing.T) {
	tokens, err := api.LoadOrCreateTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	alice := auth.Principal{Subject: "alice", Role: auth.Walker}
	for _, ttl := range []time.Duration{0, -time.Hour, api.MaxTokenTTL + time.Second, 100 * 365 * 24 * time.Hour} {
		if _, err := tokens.Issue(alice, ttl); err == nil || !strings.HasPrefix(err.Error(), "ttl: ") {
			t.Errorf("Issue with ttl %s: err %v, want one naming ttl", ttl, err)
		}
	}
	if _, err := tokens.Issue(alice, api.MaxTokenTTL); err != nil {
		t.Errorf("Issue with the longest ttl: %v", err)
	}
}

// Revoking through one Tokens (the CLI) reaches another on the same data
// dir (the running server) within RevokedReread, also for tokens it has
// cached; other tokens keep working, and a restart honours it at once.
func TestRevokeReachesRunningVerifier(t *testing.T) {
	dir := t.TempDir()
	server, err := api.LoadOrCreateTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := api.LoadTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	alice := auth.Principal{Subject: "alice", Role: auth.Walker}
	mint := func() api.Issued {
		i, err := cli.Mint(alice, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	byID, byToken, kept := mint(), mint(), mint()
	for _, i := range []api.Issued{byID, byToken, kept} {
		if _, err := server.Verify(i.Token); err != nil { // now cached
			t.Fatal(err)
		}
	}

	r, err := cli.Revoke(byID.ID)
	if err != nil || r.ID != byID.ID || r.Already {
		t.Fatalf("Revoke(id) = %+v, %v", r, err)
	}
	r, err = cli.Revoke(byToken.Token)
	if err != nil || r.ID != byToken.ID || r.Subject != "alice" || r.Role != auth.Walker || r.Already {
		t.Fatalf("Revoke(token) = %+v, %v", r, err)
	}
	start := time.Now()
	for _, i := range []api.Issued{byID, byToken} {
		for {
			_, err := server.Verify(i.Token)
			if errors.Is(err, api.ErrTokenRevoked) {
				break
			}
			if err != nil {
				t.Fatalf("Verify of a revoked token: %v, want ErrTokenRevoked", err)
			}
			if time.Since(start) > 2*api.RevokedReread {
				t.Fatalf("token %s still verifies %v after its revocation", i.ID, time.Since(start))
			}
			time.Sleep(10 * time.Millisecond) // poll interval
		}
	}
	t.Logf("revocation seen by the verifier after %v", time.Since(start))
	if p, err := server.Verify(kept.Token); err != nil || p != alice {
		t.Fatalf("a token not revoked: %v, %v", p, err)
	}
	if _, err := cli.Verify(byID.Token); !errors.Is(err, api.ErrTokenRevoked) {
		t.Fatalf("the revoking process itself still accepts it: %v", err)
	}

	if r, err := cli.Revoke(byID.ID); err != nil || !r.Already {
		t.Fatalf("revoking twice = %+v, %v; want Already", r, err)
	}
	restarted, err := api.LoadTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.Verify(byToken.Token); !errors.Is(err, api.ErrTokenRevoked) {
		t.Fatalf("after a restart a revoked token: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, api.RevokedFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("revocation list: %v %v", st, err)
	}

	other, _ := api.LoadOrCreateTokens(t.TempDir())
	foreign, _ := other.Issue(alice, time.Hour)
	for _, bad := range []string{"", "two words", "a#b", foreign, "x.y.z"} {
		if _, err := cli.Revoke(bad); err == nil {
			t.Errorf("Revoke(%q) succeeded", bad)
		}
	}
}
