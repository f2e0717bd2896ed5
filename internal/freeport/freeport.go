// Package freeport gives tests loopback addresses to hand to servers that
// bind them later (nats-server's route and client listeners, child
// processes).
//
// Asking the kernel for port 0 and closing the listener races: the port
// is free again at once and comes from the ephemeral range, where every
// outgoing connection of every test process on the machine also takes
// its local port. Under CI's load a server then failed to bind its route
// port, and nats-server waited 30 s for a listener that never came. The
// ports here come from below Linux's ephemeral range (32768-60999), are
// checked free by listening, and are never handed out twice by one
// process.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

const (
	lowest  = 20000
	highest = 32767 // below the ephemeral range
)

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Addr returns 127.0.0.1:PORT with a port free just now that this process
// has not handed out before.
func Addr(tb testing.TB) string {
	tb.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := lowest + rand.IntN(highest-lowest+1)
		if given[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		given[port] = true
		return addr
	}
	tb.Fatal("freeport: no free port found in 1000 tries")
	return ""
}
