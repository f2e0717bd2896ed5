package api_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
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
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, err := tokens.Verify(short); err != nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("expired token still verifies")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
