// Package natsserver runs nats-server in-process with JetStream: the
// embedded default of `tideline serve` and of every infrastructure test.
package natsserver

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/wire"
)

// Config configures an embedded server.
type Config struct {
	// StoreDir holds JetStream's files. Required unless NoJetStream.
	StoreDir string
	// NoJetStream runs the server without JetStream: routed into a
	// cluster (Cluster), it reaches the cluster's JetStream but holds no
	// replica and joins no Raft group, and leaves no trace once shut
	// down ('tideline cluster-import' passing through). Its route
	// listener is not advertised to the others.
	NoJetStream bool
	// ClientListen is host:port for NATS clients; empty means in-process
	// only (no TCP listener). Port -1 picks a free port. Clients on it
	// must be registered in Users; in-process connections (the hub's
	// own) need no credentials and keep full rights.
	ClientListen string
	// SyncAlways fsyncs every write before acking: survives power loss on
	// one node at a large cost in throughput. Default: the server's
	// periodic sync, which already survives kill -9 with no acked loss.
	SyncAlways bool
	// Name of the server; defaults to "tideline". Each node of a cluster
	// needs a name of its own (required with Cluster).
	Name string
	// Cluster, when enabled, makes this server one node of a NATS cluster
	// with JetStream (see Cluster); default: a server alone.
	Cluster Cluster
	// Logs enables nats-server's own logging to stderr.
	Logs bool
	// JetStreamDomain names this server's JetStream domain. Leaf nodes that
	// run a JetStream of their own (edge devices) reach this server's API
	// as $JS.<domain>.API. Empty: no domain.
	JetStreamDomain string
	// LeafListen is host:port accepting leaf node connections from edge
	// devices; empty: none. Port -1 picks a free port. Leaf nodes are
	// authenticated by Devices, which is required with LeafListen.
	LeafListen string
	// LeafAdvertise tells leaf nodes this server's other leaf URLs (useful
	// only in a cluster). Off by default: a device then reconnects only to
	// the URL it was given, so a proxy or a cut link in between is obeyed.
	LeafAdvertise bool
	// Devices authenticates edge devices connecting as leaf nodes and
	// confines each to its own subjects.
	Devices *Devices
	// Users authenticates NATS clients on ClientListen and gives each its
	// role's rights (clients.go, guard.go); nil refuses every client that
	// is not in-process.
	Users *Users
	// EventsStream is the event store's stream (adapters/jetstream
	// Config.Stream), the only one Users of role reader may read; default
	// wire.EventsStream.
	EventsStream string
}

// Start starts the server and waits until it accepts connections.
// The caller must call Shutdown (and WaitForShutdown) on the result.
func Start(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" && !cfg.NoJetStream {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	// The guard matches API subjects token by token: a name that is not
	// one token would let readers reach another stream.
	stream := cmp.Or(cfg.EventsStream, wire.EventsStream)
	if strings.ContainsAny(stream, ".*> \t\r\n") {
		return nil, fmt.Errorf("natsserver: events stream name %q is not a stream name", stream)
	}
	opts := &server.Options{
		ServerName:         cfg.Name,
		JetStream:          !cfg.NoJetStream,
		StoreDir:           cfg.StoreDir,
		SyncAlways:         cfg.SyncAlways,
		DontListen:         cfg.ClientListen == "",
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 1 << 30,
	}
	if cfg.Cluster.Enabled() {
		if err := cfg.Cluster.apply(opts); err != nil {
			return nil, err
		}
		if cfg.NoJetStream {
			opts.Cluster.NoAdvertise = true
		} else if err := checkStandalone(cfg.StoreDir); err != nil {
			return nil, err
		}
		// nats-server starts routing only once its client listener is
		// up: a cluster node listens on a free loopback port, where the
		// authenticator refuses every client but registered Users.
		if cfg.ClientListen == "" {
			opts.DontListen, opts.Host, opts.Port = false, "127.0.0.1", -1
		}
	}
	if opts.ServerName == "" {
		opts.ServerName = "tideline"
	}
	if cfg.ClientListen != "" {
		host, port, err := splitHostPort(cfg.ClientListen)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	opts.JetStreamDomain = cfg.JetStreamDomain
	if cfg.LeafListen != "" {
		if cfg.Devices == nil {
			return nil, errors.New("natsserver: LeafListen needs Devices to authenticate leaf nodes")
		}
		host, port, err := splitHostPort(cfg.LeafListen)
		if err != nil {
			return nil, err
		}
		opts.LeafNode.Host, opts.LeafNode.Port = host, port
		opts.LeafNode.NoAdvertise = !cfg.LeafAdvertise
	}
	// One authenticator for every connection: nats-server then ignores its
	// own users, so nothing gets in without Devices or Users.
	opts.CustomClientAuthentication = clientAuth{devices: cfg.Devices, users: cfg.Users}
	opts.AlwaysEnableNonce = true // users sign it
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new nats server: %w", err)
	}
	if cfg.Devices != nil {
		cfg.Devices.attach(s, cfg.JetStreamDomain)
	}
	if cfg.Users != nil {
		cfg.Users.attach(s)
	}
	if cfg.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server not ready after 30s")
	}
	if cfg.Users != nil {
		if _, err := startGuard(s, cfg.Users, stream); err != nil {
			s.Shutdown()
			return nil, err
		}
	}
	return s, nil
}

// LeafURL returns the nats-leaf:// URL edge devices connect to, or "" when
// s does not accept leaf nodes.
func LeafURL(s *server.Server) string {
	v, err := s.Varz(nil)
	if err != nil || v.LeafNode.Port <= 0 {
		return ""
	}
	host := v.LeafNode.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "nats-leaf://" + net.JoinHostPort(host, strconv.Itoa(v.LeafNode.Port))
}

// Connect opens an in-process client connection to s, with opts after
// its own.
func Connect(s *server.Server, name string, opts ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect("", append([]nats.Option{nats.InProcessServer(s), nats.Name(name), nats.MaxReconnects(-1)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect in-process: %w", err)
	}
	return nc, nil
}

func splitHostPort(addr string) (string, int, error) {
	var host string
	var port int
	i := len(addr) - 1
	for i >= 0 && addr[i] != ':' {
		i--
	}
	if i < 0 {
		return "", 0, fmt.Errorf("listen address %q: want host:port", addr)
	}
	host = addr[:i]
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		return "", 0, fmt.Errorf("listen address %q: bad port", addr)
	}
	return host, port, nil
}

// StreamDir returns the directory of stream's files in s's file store
// (every stream of an embedded server is in its global account), or ""
// when s runs no JetStream.
func StreamDir(s *server.Server, stream string) string {
	js := s.JetStreamConfig()
	if js == nil || js.StoreDir == "" {
		return ""
	}
	return filepath.Join(js.StoreDir, s.GlobalAccount().GetName(), "streams", stream)
}

// LogAsyncErrors is a connection's option that logs the errors the client
// meets outside any call (a subscription that could not keep up and had
// messages dropped, a permissions violation, a JetStream problem) to log,
// warning with the connection's name and the subscription's subject,
// rather than printing them to stderr as the client does by default.
func LogAsyncErrors(log *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
		attrs := []any{"connection", nc.Opts.Name, "error", err}
		if sub != nil {
			attrs = append(attrs, "subject", sub.Subject)
		}
		log.Warn("nats client error", attrs...)
	})
}
