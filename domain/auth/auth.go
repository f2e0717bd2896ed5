// Package auth holds who is calling: the principal and its role. The API
// authenticates; the domain authorizes with these values.
package auth

import (
	"context"
	"fmt"
	"strings"
)

// Role is what a principal may do.
type Role string

const (
	Admin      Role = "admin"
	Walker     Role = "walker"
	Rider      Role = "rider"
	Labeler    Role = "labeler"
	Enterprise Role = "enterprise"
	Device     Role = "device"
	Service    Role = "service"
	// Metrics may only read the server's metrics (/metrics): a
	// Prometheus server's token.
	Metrics Role = "metrics"
)

// Roles lists every role in a stable order.
var Roles = []Role{Admin, Walker, Rider, Labeler, Enterprise, Device, Service, Metrics}

// ParseRole returns the role named s, or an error listing valid roles.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return "", fmt.Errorf("unknown role %q (want one of %s)", s, strings.Join(names, ", "))
}

// Principal is an authenticated caller.
type Principal struct {
	Subject string
	Role    Role
}

// String renders the principal as role:subject, as stored in event metadata.
func (p Principal) String() string { return string(p.Role) + ":" + p.Subject }

// Person reports whether p is a person (walker, rider, labeler,
// enterprise or admin) rather than a device or a service.
func (p Principal) Person() bool {
	switch p.Role {
	case Walker, Rider, Labeler, Enterprise, Admin:
		return p.Subject != ""
	}
	return false
}

// Privileged reports whether p may act on behalf of anyone.
func (p Principal) Privileged() bool { return p.Role == Admin || p.Role == Service }

type ctxKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal in ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
