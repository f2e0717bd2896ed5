package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/internal/dirlock"
)

const tokenUsage = `usage:
  tideline token --sub ID --role ROLE [--data DIR] [--ttl 720h]
  tideline token revoke JTI|TOKEN [--data DIR]

The first form prints a bearer token signed with DIR's key (on stdout, for
TOKEN=$(tideline token ...)), and its id (jti) and expiry on stderr.
Roles: admin, walker, rider, labeler, enterprise, device, service, and
metrics (reads /metrics only, for Prometheus). The
validity (--ttl) is more than 0 and at most 8760h (a year).

revoke refuses a token from now on, given its id or the token itself: it
is added to DIR/keys/revoked, which a running server rereads every 0.5 s.

Run it on the server's machine: DIR is the server's --data. If that server
is still starting, token waits (up to 10s) for it to create its key.`

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "revoke" {
		return tokenRevokeCmd(args[1:], stdout, stderr)
	}
	fs := newFlags("token", tokenUsage, stderr)
	data := fs.String("data", "./data", "data directory of the server whose key signs the token")
	sub := fs.String("sub", "", "subject: the user, device or service id (required)")
	role := fs.String("role", "", "role: admin, walker, rider, labeler, enterprise, device, service or metrics (required)")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "validity, e.g. 1h or 720h: more than 0, at most 8760h (a year)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token: unexpected %q (flags are --sub, --role, --data, --ttl; to revoke: tideline token revoke JTI)", fs.Arg(0))
	}
	if *sub == "" || *role == "" {
		return fmt.Errorf("token: --sub and --role are required")
	}
	r, err := auth.ParseRole(*role)
	if err != nil {
		return fmt.Errorf("--role: %w", err)
	}
	if *ttl <= 0 || *ttl > api.MaxTokenTTL {
		return fmt.Errorf("--ttl: want more than 0 and at most 8760h (a year), got %s: a token is a bearer secret valid until it expires or is revoked, so mint shorter ones and renew them", *ttl)
	}
	tokens, err := loadTokensOfStartingServer(*data, keyWait, stderr)
	if err != nil {
		return err
	}
	tok, err := tokens.Mint(auth.Principal{Subject: *sub, Role: r}, *ttl)
	if err != nil {
		return fmt.Errorf("--sub: %w", err)
	}
	fmt.Fprintln(stdout, tok.Token)
	fmt.Fprintf(stderr, "token id (jti) %s, for %s %s, expires %s; to revoke it: tideline token revoke %s --data %s\n",
		tok.ID, r, *sub, tok.Expires.UTC().Format(time.RFC3339), tok.ID, *data)
	return nil
}

func tokenRevokeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token revoke", tokenUsage, stderr)
	data := fs.String("data", "./data", "data directory of the server that accepts the token")
	// The token or id may come before or after the flags.
	var target string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		target, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if target == "" && fs.NArg() > 0 {
		target = fs.Arg(0)
	}
	if target == "" {
		return errors.New("token revoke: name the token: its id (jti, printed by `tideline token`) or the token itself")
	}
	tokens, err := api.LoadTokens(*data)
	if err != nil {
		return err
	}
	r, err := tokens.Revoke(target)
	if err != nil {
		return fmt.Errorf("token revoke: %w", err)
	}
	what := "token " + r.ID
	if r.Subject != "" {
		what += fmt.Sprintf(" (%s %s, expires %s)", r.Role, r.Subject, r.Expires.UTC().Format(time.RFC3339))
	}
	if r.Already {
		fmt.Fprintf(stdout, "%s was already revoked\n", what)
		return nil
	}
	fmt.Fprintf(stdout, "revoked %s; a running server refuses it within a second\n", what)
	return nil
}

// keyWait bounds how long `token` waits for a starting server's key.
const keyWait = 10 * time.Second

// loadTokensOfStartingServer loads dir's signing key. If there is none
// yet but dir's LOCK names a live `tideline serve` (one that is starting:
// it creates the key right after taking the lock), it waits up to wait
// for the key. Without a live server it fails at once: a mistyped --data
// must not hang, and token never creates a key itself (the server would
// not know it).
func loadTokensOfStartingServer(dir string, wait time.Duration, stderr io.Writer) (*api.Tokens, error) {
	tokens, err := api.LoadTokens(dir)
	if !errors.Is(err, os.ErrNotExist) {
		return tokens, err
	}
	h, ok := dirlock.Owner(dir)
	if !ok || h.Program != "tideline serve" {
		return nil, err
	}
	fmt.Fprintf(stderr, "waiting for the server starting on %s (%s) to create its signing key\n", dir, h)
	deadline := time.Now().Add(wait)
	for {
		time.Sleep(20 * time.Millisecond) // poll interval
		tokens, err = api.LoadTokens(dir)
		if !errors.Is(err, os.ErrNotExist) {
			return tokens, err
		}
		if _, ok := dirlock.Owner(dir); !ok {
			return nil, fmt.Errorf("the server on %s (%s) exited before creating its signing key", dir, h)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the server on %s (%s) has not created its signing key after %s: %w", dir, h, wait, err)
		}
	}
}
