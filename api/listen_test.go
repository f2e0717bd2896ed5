package api_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/internal/poll"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
)

// healthCheck runs one health check on a new connection.
func healthCheck(url string) error {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := healthv1connect.NewHealthClient(&http.Client{Transport: tr}, url, connect.WithGRPC()).Check(ctx, connect.NewRequest(&healthv1.HealthCheckRequest{}))
	return err
}

// TestIdleConnectionsClosedAndCapped holds a server at its connection cap
// with connections that do nothing: HTTP/2 ones past the preface, an
// HTTP/1.1 one after a request, and one that never sends a byte. A
// further connection is refused at once (a health check fails fast), the
// server closes every held one after its idle (or header) timeout, and a
// health check then gets through.
func TestIdleConnectionsClosedAndCapped(t *testing.T) {
	const (
		maxConns = 8
		idle     = 500 * time.Millisecond
	)
	f := start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(f.API().Handler())
	srv.IdleTimeout, srv.ReadHeaderTimeout = idle, idle
	limited := api.LimitListener(ln, maxConns)
	go srv.Serve(limited)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String()
	if err := healthCheck(url); err != nil {
		t.Fatalf("health check on an idle server: %v", err)
	}
	// The server closes that check's connection when it sees the client
	// go: only then is its slot free for the connections held below.
	open := limited.(interface{ Open() int64 })
	if !poll.Within(5*time.Second, func() bool { return open.Open() == 0 }) {
		t.Fatalf("%d connections still open 5 s after the health check", open.Open())
	}

	var held []net.Conn
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		return c
	}
	for range maxConns - 2 { // HTTP/2: preface and empty SETTINGS, then nothing
		c := dial()
		if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
			t.Fatal(err)
		}
	}
	h1 := dial() // HTTP/1.1: one request, then keep-alive silence
	io.WriteString(h1, "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	resp, err := http.ReadResponse(bufio.NewReader(h1), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP/1.1 health check: %v %v", resp, err)
	}
	resp.Body.Close()
	dial() // silent
	opened := time.Now()

	if err := healthCheck(url); err == nil {
		t.Fatalf("a health check got through with %d connections held, the cap", maxConns)
	} else if time.Since(opened) > time.Second {
		t.Fatalf("refusal took %v: it waited instead of failing fast", time.Since(opened))
	}

	closed := make(chan time.Duration, len(held))
	for _, c := range held {
		go func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if err != nil && !strings.Contains(err.Error(), "reset") {
				closed <- -1 // our deadline, not the server
				return
			}
			closed <- time.Since(opened)
		}()
	}
	for range held {
		d := <-closed
		if d < 0 {
			t.Fatal("a held connection was not closed within 10 s")
		}
		if d < idle*8/10 {
			t.Fatalf("a held connection was closed after %v, before the idle timeout %v", d, idle)
		}
	}
	if !poll.Within(5*time.Second, func() bool { return healthCheck(url) == nil }) {
		t.Fatalf("health check still refused after the held connections closed: %v", healthCheck(url))
	}
}

// TestThousandsOfIdleConnections: 2,000 connections that send the HTTP/2
// preface and then nothing, against a cap of 1,000: the ones past the cap
// are reset at once, the server's heap stays bounded, every held one is
// closed after the idle timeout, and then a health check gets through.
func TestThousandsOfIdleConnections(t *testing.T) {
	const (
		conns    = 2000
		maxConns = 1000
		idle     = time.Second
	)
	f := start(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(f.API().Handler())
	srv.IdleTimeout, srv.ReadHeaderTimeout = idle, idle
	limited := api.LimitListener(ln, maxConns)
	go srv.Serve(limited)
	t.Cleanup(func() { srv.Close() })
	peak := heapPeak(t)
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	refused := 0
	for range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil && strings.Contains(err.Error(), "reset") { // past the cap
			refused++
			continue
		}
		if err != nil {
			t.Fatalf("dial after %d connections: %v", len(held), err)
		}
		held = append(held, c)
		io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	}
	open := limited.(interface{ Open() int64 })
	if n := open.Open(); n > maxConns {
		t.Fatalf("%d connections open, over the cap of %d", n, maxConns)
	}
	// The server closes idle connections.
	if !poll.Within(15*time.Second, func() bool { return open.Open() == 0 }) {
		t.Fatalf("%d connections still open 15 s after they went idle", open.Open())
	}
	if err := healthCheck("http://" + ln.Addr().String()); err != nil {
		t.Fatalf("health check after the idle connections were closed: %v", err)
	}
	grown := peak()
	t.Logf("%d idle connections (cap %d, %d reset while dialling): heap grew by at most %.1f MiB; all closed by the server", conns, maxConns, refused, float64(grown)/(1<<20))
	if grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB", grown>>20)
	}
}
