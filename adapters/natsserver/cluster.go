package natsserver

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// RouteUser is the user name every node presents on its routes; the
// shared secret (Cluster.Secret) is its password.
const RouteUser = "tideline-route"

// Cluster makes the embedded server one node of a NATS cluster with
// JetStream: its routes (nats-route:// URLs to the other nodes, this
// node's own may be among them) and its route listener authenticate with
// one shared secret.
type Cluster struct {
	// Name is the cluster's name, the same on every node. Required.
	Name string
	// Listen is host:port the other nodes' routes reach. Required.
	Listen string
	// Routes are the nodes' route URLs, nats-route://host:port, with or
	// without this node's own.
	Routes []string
	// Secret authenticates the routes both ways: a node accepts a route
	// only with it, and presents it on its own. Required: an open route
	// port would let anyone join the cluster and read every event.
	Secret string
	// Advertise is the host:port other nodes should reach this one at,
	// when Listen's is not it (0.0.0.0, NAT); default Listen.
	Advertise string
}

// Enabled reports whether c asks for a cluster.
func (c Cluster) Enabled() bool { return c.Name != "" || c.Listen != "" || len(c.Routes) > 0 }

// ParseRoutes splits a comma-separated list of nats-route:// URLs,
// checking each.
func ParseRoutes(list string) ([]string, error) {
	var routes []string
	for r := range strings.SplitSeq(list, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats-route" || u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("route %q: want nats-route://host:port", r)
		}
		if u.User != nil {
			return nil, fmt.Errorf("route %q: credentials come from the cluster secret, not the URL", r)
		}
		routes = append(routes, r)
	}
	return routes, nil
}

// Size returns how many nodes c names: its routes, plus this node when
// no route is its own listener.
func (c Cluster) Size() int {
	n := 0
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil {
			continue
		}
		if sameAddr(u.Host, c.Listen) || (c.Advertise != "" && sameAddr(u.Host, c.Advertise)) {
			continue
		}
		n++
	}
	return n + 1
}

// sameAddr reports whether a route's host:port names the listener
// listen: the same port, and the same host, or a local host when listen
// is on every interface.
func sameAddr(route, listen string) bool {
	rh, rp, err := net.SplitHostPort(route)
	if err != nil {
		return false
	}
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil || rp != lp {
		return false
	}
	if rh == lh {
		return true
	}
	if lh == "" || net.ParseIP(lh) != nil && net.ParseIP(lh).IsUnspecified() {
		return isLocalHost(rh)
	}
	return false
}

// isLocalHost reports whether host resolves to an address of this
// machine.
func isLocalHost(host string) bool {
	addrs, err := net.LookupHost(host)
	if err != nil {
		return false
	}
	ifaces, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil {
			continue
		}
		if ip.IsLoopback() {
			return true
		}
		for _, ia := range ifaces {
			if n, ok := ia.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true
			}
		}
	}
	return false
}

// apply sets the cluster's options on opts.
func (c Cluster) apply(opts *server.Options) error {
	if c.Name == "" || c.Listen == "" {
		return errors.New("natsserver: a cluster needs its name and a route listen address")
	}
	if strings.ContainsAny(c.Name, " \t\r\n.*>") {
		return fmt.Errorf("natsserver: cluster name %q: want one token without spaces or dots", c.Name)
	}
	if c.Secret == "" {
		return errors.New("natsserver: a cluster needs a shared secret: routes must authenticate")
	}
	if opts.ServerName == "" {
		return errors.New("natsserver: a cluster node needs a server name of its own")
	}
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("natsserver: cluster listen: %w", err)
	}
	opts.Cluster.Name = c.Name
	opts.Cluster.Host, opts.Cluster.Port = host, port
	opts.Cluster.Username, opts.Cluster.Password = RouteUser, c.Secret
	opts.Cluster.Advertise = c.Advertise
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil {
			return fmt.Errorf("natsserver: route %q: %w", r, err)
		}
		u.User = url.UserPassword(RouteUser, c.Secret)
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// ErrStandaloneStore is returned when a cluster node is started on a
// store a server alone wrote: nats-server would find its streams in no
// cluster assignment and delete them as orphans
// (https://github.com/nats-io/nats-server/issues/5467).
var ErrStandaloneStore = errors.New("natsserver: this store was written by a server alone; as a cluster node nats-server would delete its streams as orphans. Copy its streams into a NATS cluster with 'tideline cluster-import' instead (README: From one node to a cluster)")

// checkStandalone returns ErrStandaloneStore when storeDir holds streams
// but no JetStream cluster state.
func checkStandalone(storeDir string) error {
	js := filepath.Join(storeDir, "jetstream")
	if _, err := os.Stat(filepath.Join(js, "$SYS", "_js_")); err == nil {
		return nil // a cluster node's store
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("natsserver: %w", err)
	}
	accounts, err := os.ReadDir(js)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new store
	} else if err != nil {
		return fmt.Errorf("natsserver: %w", err)
	}
	for _, a := range accounts {
		streams, err := os.ReadDir(filepath.Join(js, a.Name(), "streams"))
		if err == nil && len(streams) > 0 {
			return ErrStandaloneStore
		}
	}
	return nil
}
