package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/internal/dirlock"
	"github.com/tideline/tideline/internal/logtest"
	"github.com/tideline/tideline/internal/poll"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

var jtiRe = regexp.MustCompile(`token id \(jti\) (\S+),`)

// cliToken runs `tideline token` on dir and returns the token and the id
// it reports on stderr.
func cliToken(tb testing.TB, dir, sub, role string) (tok, jti string) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"token", "--data", dir, "--sub", sub, "--role", role}, &stdout, &stderr); err != nil {
		tb.Fatalf("token: %v (stderr %q)", err, stderr.String())
	}
	m := jtiRe.FindStringSubmatch(stderr.String())
	if m == nil || !strings.Contains(stderr.String(), "tideline token revoke "+m[1]) {
		tb.Fatalf("token said on stderr %q, want its id and how to revoke it", stderr.String())
	}
	return strings.TrimSpace(stdout.String()), m[1]
}

// Revoking a token while the server runs: the next calls with it are
// refused (Unauthenticated, "token revoked") within a second; other
// tokens keep working, also after a restart.
func TestTokenRevokeWhileServing(t *testing.T) {
	dir := t.TempDir()
	m, stop := startMain(t, dir)
	ctx := context.Background()
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
	record := func(c stepsv1connect.StepsServiceClient, tok, user string) error {
		_, err := c.RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: user, Date: todayUTC(), Steps: 100}, tok))
		return err
	}
	alice, aliceID := cliToken(t, dir, "alice", "walker")
	bob, _ := cliToken(t, dir, "bob", "walker")
	for _, tok := range []string{alice, bob} {
		if err := record(c, tok, map[string]string{alice: "alice", bob: "bob"}[tok]); err != nil {
			t.Fatalf("before revoking: %v", err)
		}
	}

	out, err := runCLI(t, "token", "revoke", aliceID, "--data", dir)
	if err != nil || !strings.Contains(out, "revoked token "+aliceID) {
		t.Fatalf("token revoke: %q, %v", out, err)
	}
	revoked := time.Now()
	for {
		err := record(c, alice, "alice")
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			if !strings.Contains(err.Error(), "token revoked") {
				t.Fatalf("refused with %v, want it to say the token is revoked", err)
			}
			break
		}
		if err != nil {
			t.Fatalf("a revoked token: %v, want Unauthenticated", err)
		}
		if time.Since(revoked) > time.Second {
			t.Fatal("a revoked token still works a second later")
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	t.Logf("refused %v after the revocation", time.Since(revoked))
	if err := record(c, bob, "bob"); err != nil {
		t.Fatalf("a token not revoked: %v", err)
	}

	// By the token itself; twice is harmless.
	out, err = runCLI(t, "token", "revoke", "--data", dir, bob)
	if err != nil || !strings.Contains(out, "(walker bob, expires ") {
		t.Fatalf("token revoke TOKEN: %q, %v", out, err)
	}
	if out, err := runCLI(t, "token", "revoke", aliceID, "--data", dir); err != nil || !strings.Contains(out, "already revoked") {
		t.Fatalf("revoking twice: %q, %v", out, err)
	}
	for _, args := range [][]string{{"token", "revoke", "--data", dir}, {"token", "revoke", "not a jti", "--data", dir}} {
		if _, err := runCLI(t, args...); err == nil {
			t.Errorf("tideline %q succeeded", args)
		}
	}

	stop()
	m, _ = startMain(t, dir)
	c = stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
	carol, _ := cliToken(t, dir, "carol", "walker")
	if err := record(c, alice, "alice"); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("after a restart a revoked token: %v", err)
	}
	if err := record(c, carol, "carol"); err != nil {
		t.Fatalf("after a restart a new token: %v", err)
	}
}

func TestTokenTTLRefused(t *testing.T) {
	dir := t.TempDir()
	if _, err := api.LoadOrCreateTokens(dir); err != nil {
		t.Fatal(err)
	}
	for _, ttl := range []string{"0s", "-1h", "8761h", "87600h"} {
		_, err := runCLI(t, "token", "--data", dir, "--sub", "alice", "--role", "walker", "--ttl", ttl)
		if err == nil || !strings.Contains(err.Error(), "--ttl") || !strings.Contains(err.Error(), "8760h") {
			t.Errorf("--ttl %s: %v, want it refused naming the bound", ttl, err)
		}
	}
	if _, err := runCLI(t, "token", "--data", dir, "--sub", "alice", "--role", "walker", "--ttl", "8760h"); err != nil {
		t.Errorf("--ttl 8760h: %v", err)
	}
}

// `tideline token` beside a server that holds the data dir's lock but has
// not written its key yet waits for the key; with no live server it fails
// at once.
func TestTokenWaitsForStartingServer(t *testing.T) {
	t.Run("key_appears", func(t *testing.T) {
		dir := t.TempDir()
		lock, err := dirlock.Acquire(dir, dirlock.Holder{Program: "tideline serve", Addr: "127.0.0.1:8080"})
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Release()
		var stdout bytes.Buffer
		var stderr logtest.Buffer
		done := make(chan error, 1)
		go func() {
			done <- run(context.Background(), []string{"token", "--data", dir, "--sub", "alice", "--role", "walker"}, &stdout, &stderr)
		}()
		if !poll.Within(5*time.Second, func() bool {
			if strings.Contains(stderr.String(), "waiting for the server") {
				return true
			}
			select {
			case err := <-done:
				t.Fatalf("token returned %v without waiting; stderr %q", err, stderr.String())
			default:
			}
			return false
		}) {
			t.Fatalf("token is not waiting; stderr %q", stderr.String())
		}
		tokens, err := api.LoadOrCreateTokens(dir) // what serve does next
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("token: %v (stderr %q)", err, stderr.String())
		}
		if p, err := tokens.Verify(strings.TrimSpace(stdout.String())); err != nil || p.Subject != "alice" || p.Role != auth.Walker {
			t.Fatalf("the server verifies the printed token as %v, %v", p, err)
		}
	})
	t.Run("never_appears", func(t *testing.T) {
		dir := t.TempDir()
		lock, err := dirlock.Acquire(dir, dirlock.Holder{Program: "tideline serve"})
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Release()
		_, err = loadTokensOfStartingServer(dir, 200*time.Millisecond, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "has not created its signing key after 200ms") {
			t.Fatalf("err %v, want a bounded wait", err)
		}
	})
	t.Run("no_server", func(t *testing.T) {
		for name, holder := range map[string]*dirlock.Holder{
			"no_lock_file": nil,
			"dead_holder":  {PID: 1 << 30, Program: "tideline serve"},
			"edge_agent":   {PID: 0, Program: "tideline-edge --device bike-1"}, // this (live) process
		} {
			dir := t.TempDir()
			if holder != nil {
				lock, err := dirlock.Acquire(dir, *holder)
				if err != nil {
					t.Fatal(err)
				}
				defer lock.Release()
			}
			start := time.Now()
			_, err := loadTokensOfStartingServer(dir, 10*time.Second, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), "no signing key") || time.Since(start) > time.Second {
				t.Errorf("%s: err %v after %v, want no signing key at once", name, err, time.Since(start))
			}
		}
	})
}
