package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tideline/tideline/internal/egress"
)

// listener serves on 127.0.0.1 (and ::1, when the host has IPv6) and
// counts the requests that reach it.
type listener struct {
	port string
	v6   bool
	hits atomic.Int64
}

func listen(t *testing.T) *listener {
	t.Helper()
	l := &listener{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.hits.Add(1)
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/", http.StatusFound)
		}
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, l.port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	if ln, err := net.Listen("tcp6", "[::1]:"+l.port); err == nil {
		l.v6 = true
		s6 := &http.Server{Handler: h}
		go s6.Serve(ln)
		t.Cleanup(func() { s6.Close() })
	}
	return l
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, error) {
	t.Helper()
	// A dial the guard lets through to an address with no listener may
	// hang until the timeout; that is a failure too.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestRefusesTheServersOwnNetworks(t *testing.T) {
	l := listen(t)
	c := egress.Client(egress.Config{})
	for _, tc := range []struct {
		name, host, what string
		v6               bool
	}{
		{"loopback_listener", "127.0.0.1:" + l.port, "loopback", false},
		{"name_resolving_to_loopback", "localhost:" + l.port, "loopback", false},
		{"loopback_elsewhere_in_127/8", "127.1.2.3:" + l.port, "loopback", false},
		{"ipv6_loopback_listener", "[::1]:" + l.port, "loopback", true},
		{"ipv4_mapped_loopback", "[::ffff:127.0.0.1]:" + l.port, "loopback", true},
		{"private_10/8", "10.0.0.5", "private", false},
		{"private_172.16/12", "172.31.255.1", "private", false},
		{"private_192.168/16", "192.168.1.1", "private", false},
		{"ipv4_mapped_private", "[::ffff:10.0.0.5]", "private", true},
		{"unique_local_fc00/7", "[fd12:3456::1]", "private", true},
		{"cloud_metadata", "169.254.169.254", "link-local", false},
		{"cloud_metadata_through_nat64", "[64:ff9b::a9fe:a9fe]", "link-local", true},
		{"ipv6_link_local", "[fe80::1%25lo]", "link-local", true},
		{"unspecified", "0.0.0.0:" + l.port, "unspecified", false},
		{"ipv6_unspecified", "[::]:" + l.port, "unspecified", true},
		{"cgnat", "100.64.0.1", "shared (CGNAT)", false},
		{"multicast", "224.0.0.1", "multicast", false},
		{"ipv6_multicast", "[ff02::1]", "multicast", true},
		{"broadcast", "255.255.255.255", "reserved", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.v6 && !l.v6 {
				t.Skip("no IPv6 on this host")
			}
			_, err := get(t, c, "http://"+tc.host+"/")
			if !errors.Is(err, egress.ErrRefused) || !strings.Contains(err.Error(), "is a "+tc.what+" address; refusing to connect") {
				t.Fatalf("GET %s: %v; want ErrRefused, a %s address", tc.host, err, tc.what)
			}
		})
	}
	if n := l.hits.Load(); n != 0 {
		t.Errorf("%d requests reached the listener", n)
	}
}

func TestAllowPrivateReachesLoopback(t *testing.T) {
	l := listen(t)
	c := egress.Client(egress.Config{AllowPrivate: true})
	hosts := []string{"127.0.0.1:" + l.port, "localhost:" + l.port}
	if l.v6 {
		hosts = append(hosts, "[::1]:"+l.port)
	}
	for _, h := range hosts {
		if resp, err := get(t, c, "http://"+h+"/"); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %v; want 200", h, err)
		}
	}
	if n := l.hits.Load(); n != int64(len(hosts)) {
		t.Errorf("%d requests reached the listener; want %d", n, len(hosts))
	}
}

func TestNoRedirectsNoProxy(t *testing.T) {
	l := listen(t)
	c := egress.Client(egress.Config{AllowPrivate: true})
	resp, err := get(t, c, "http://127.0.0.1:"+l.port+"/redirect")
	if err != nil || resp.StatusCode != http.StatusFound || l.hits.Load() != 1 {
		t.Errorf("GET /redirect: %v, %d requests; want the 302 itself", err, l.hits.Load())
	}
	if tr := egress.Transport(egress.Config{}); tr.Proxy != nil {
		t.Error("the transport takes a proxy (from the environment), which would connect unchecked")
	}
}
