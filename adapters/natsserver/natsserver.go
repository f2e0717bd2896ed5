// Package natsserver runs nats-server in-process with JetStream: the
// embedded default of `tideline serve` and of every infrastructure test.
package natsserver

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Config configures an embedded server.
type Config struct {
	// StoreDir holds JetStream's files. Required.
	StoreDir string
	// ClientListen is host:port for NATS clients; empty means in-process
	// only (no TCP listener). Port -1 picks a free port.
	ClientListen string
	// SyncAlways fsyncs every write before acking: survives power loss on
	// one node at a large cost in throughput. Default: the server's
	// periodic sync, which already survives kill -9 with no acked loss.
	SyncAlways bool
	// Name of the server; defaults to "tideline".
	Name string
	// Logs enables nats-server's own logging to stderr.
	Logs bool
}

// Start starts the server and waits until it accepts connections.
// The caller must call Shutdown (and WaitForShutdown) on the result.
func Start(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	opts := &server.Options{
		ServerName:         cfg.Name,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		SyncAlways:         cfg.SyncAlways,
		DontListen:         cfg.ClientListen == "",
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 1 << 30,
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
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new nats server: %w", err)
	}
	if cfg.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server not ready after 30s")
	}
	return s, nil
}

// Connect opens an in-process client connection to s.
func Connect(s *server.Server, name string) (*nats.Conn, error) {
	nc, err := nats.Connect("", nats.InProcessServer(s), nats.Name(name), nats.MaxReconnects(-1))
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
