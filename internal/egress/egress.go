// Package egress builds HTTP clients for URLs users give the server
// (Slack webhooks, Web Push endpoints): they refuse to connect to the
// server's own networks, so a user cannot make the server reach what
// only it can reach (server-side request forgery).
//
// The check is on the address each connection is about to be made to,
// after name resolution, so a name that resolves (or rebinds) to such an
// address and a redirect to one are refused alike.
package egress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// ErrRefused is wrapped by the error of a connection refused because of
// the address it was to be made to; the URL that led there is unusable.
var ErrRefused = errors.New("refusing to connect")

// Config tunes the Transport.
type Config struct {
	// AllowPrivate lets connections reach every address: for deployments
	// whose push service or Slack proxy is internal, and for tests whose
	// servers listen on loopback.
	AllowPrivate bool
	// TLS configures TLS (tests: trusting their server's certificate);
	// nil: the defaults, the system's roots.
	TLS *tls.Config
}

// refused are the networks no connection is made to, first match wins.
// IPv4-mapped IPv6 addresses are checked as their IPv4 address.
var refused = []struct {
	net  netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"}, // 0.0.0.0 reaches the host itself
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"}, // cloud metadata services
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "reserved"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // and broadcast
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "reserved"}, // IPv4-compatible, deprecated
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "private"}, // site-local, deprecated
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// nat64 is the well-known NAT64 prefix: a gateway takes its addresses to
// the IPv4 address in their last 32 bits, which is checked instead.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// check returns an error wrapping ErrRefused when ip is in a refused network.
func check(ip netip.Addr) error {
	a := ip.WithZone("").Unmap() // a Prefix never contains an address with a zone
	if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	for _, r := range refused {
		if r.net.Contains(a) {
			return fmt.Errorf("egress: %s is a %s address; %w", ip, r.what, ErrRefused)
		}
	}
	return nil
}

// Dialer returns a dialer that, unless cfg.AllowPrivate, refuses (with
// an error wrapping ErrRefused) to connect to a loopback, private,
// link-local, shared (CGNAT), unspecified, multicast or reserved address.
func Dialer(cfg Config) *net.Dialer {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivate {
		// Control runs on each resolved address before connecting.
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("egress: address %q: %w", address, ErrRefused)
			}
			return check(ap.Addr())
		}
	}
	return d
}

// Transport returns an HTTP transport that dials through Dialer(cfg) and
// never through a proxy (one from the environment would connect on its
// behalf, unchecked).
func Transport(cfg Config) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = Dialer(cfg).DialContext
	if cfg.TLS != nil {
		t.TLSClientConfig = cfg.TLS.Clone() // the transport adds to NextProtos
	}
	return t
}

// Client returns a client over Transport(cfg) that follows no redirect:
// a 3xx is the response. Its errors for a refused address wrap
// ErrRefused. Safe for concurrent use.
func Client(cfg Config) *http.Client {
	return &http.Client{
		Transport:     Transport(cfg),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// RetryAfter reads a Retry-After header, in seconds or as an HTTP date:
// how long the server asked to wait, and whether it said.
func RetryAfter(h string) (time.Duration, bool) {
	if h == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(h); err == nil {
		return time.Duration(max(s, 0)) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
