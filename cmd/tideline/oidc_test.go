package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestServeOIDCFlagsRefused: the identity provider's flags are checked
// before the server starts.
func TestServeOIDCFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no_audience", []string{"--oidc-issuer", "https://sso.example", "--oidc-roles", "admins=admin"}, "--oidc-audience"},
		{"no_roles", []string{"--jwks-url", "https://sso.example/jwks", "--oidc-audience", "app"}, "--oidc-roles"},
		{"grants_device", []string{"--oidc-issuer", "https://sso.example", "--oidc-audience", "app", "--oidc-roles", "edge=device"}, "cannot be granted"},
		{"grants_service", []string{"--oidc-issuer", "https://sso.example", "--oidc-audience", "app", "--oidc-roles", "bots=service"}, "cannot be granted"},
		{"unknown_role", []string{"--oidc-issuer", "https://sso.example", "--oidc-audience", "app", "--oidc-roles", "x=root"}, "unknown role"},
		{"audience_alone", []string{"--oidc-audience", "app"}, "go with --oidc-issuer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"serve", "--data", t.TempDir()}, c.args...)
			err := run(context.Background(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("serve %v: %v; want an error with %q", c.args, err, c.want)
			}
		})
	}
}
