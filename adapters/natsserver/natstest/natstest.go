// Package natstest starts a real embedded nats-server with JetStream for
// tests, in a t.TempDir store, shut down at cleanup.
package natstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/internal/freeport"
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

// StartCluster returns n servers forming a NATS cluster with JetStream on
// loopback (routes authenticated with a test secret) and an in-process
// connection to each, once every server routes to every other.
func StartCluster(tb testing.TB, n int) ([]*server.Server, []*nats.Conn) {
	tb.Helper()
	addrs := make([]string, n)
	routes := make([]string, n)
	for i := range n {
		addrs[i] = freeport.Addr(tb)
		routes[i] = "nats-route://" + addrs[i]
	}
	servers := make([]*server.Server, n)
	conns := make([]*nats.Conn, n)
	for i := range n {
		s, err := natsserver.Start(natsserver.Config{StoreDir: tb.TempDir(), Name: fmt.Sprintf("node%d", i),
			Cluster: natsserver.Cluster{Name: "test", Listen: addrs[i], Routes: routes, Secret: "natstest-cluster-secret"}})
		if err != nil {
			tb.Fatalf("start nats node %d: %v", i, err)
		}
		servers[i] = s
		tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range servers {
		for s.NumRoutes() < n-1 {
			if time.Now().After(deadline) {
				tb.Fatalf("cluster of %d not routed within 30s", n)
			}
			time.Sleep(10 * time.Millisecond) // poll interval
		}
	}
	for i, s := range servers {
		nc, err := natsserver.Connect(s, fmt.Sprintf("%s-%d", tb.Name(), i))
		if err != nil {
			tb.Fatalf("connect nats node %d: %v", i, err)
		}
		conns[i] = nc
		tb.Cleanup(nc.Close)
	}
	return servers, conns
}
