// Package natstest starts a real embedded nats-server with JetStream for
// tests, in a t.TempDir store, shut down at cleanup.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/adapters/natsserver"
)

// Start returns a running server and an in-process connection to it.
func Start(tb testing.TB) (*server.Server, *nats.Conn) {
	tb.Helper()
	s, err := natsserver.Start(natsserver.Config{StoreDir: tb.TempDir(), Name: "test"})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	nc, err := natsserver.Connect(s, tb.Name())
	if err != nil {
		s.Shutdown()
		tb.Fatalf("connect nats: %v", err)
	}
	tb.Cleanup(func() {
		nc.Close()
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s, nc
}
