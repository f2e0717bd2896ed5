// Package servertest starts a whole Tideline server for tests: the very
// assembly `tideline serve` runs (embedded NATS, event store, every
// context's read models, reactions and services), on a temp dir and a free
// loopback port.
package servertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/argon2id"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
)

// Server is a running server. Its Main gives the event store, the token
// signer, the API, the runners and the data dir (Config.DataDir).
type Server struct {
	*server.Main
	URL string // the API's base URL
}

// Option adjusts the server before it starts.
type Option func(*server.Main)

// API adjusts the API's configuration (limits, reflection).
func API(f func(*api.Config)) Option {
	return func(m *server.Main) { m.TuneAPI = f }
}

// ProductionPasswords hashes passwords at argon2id's production cost
// (benchmarks of log-in).
func ProductionPasswords() Option {
	return func(m *server.Main) { m.Config.PasswordHashing = argon2id.Hasher{} }
}

// Start runs a server and returns once it is healthy (every projection
// running, the reactions running); the test's cleanup closes it. Warnings
// and errors go to the test's log.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	m := &server.Main{Config: server.Config{
		DataDir: tb.TempDir(),
		Listen:  "127.0.0.1:0",
		Logger:  slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		// argon2id itself, at its lowest cost: the tests hash passwords
		// by the dozen under -race. ProductionPasswords restores it.
		PasswordHashing: argon2id.Hasher{Time: 1, Memory: 1024},
	}}
	for _, o := range opts {
		o(m)
	}
	if err := m.Run(context.Background()); err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Errorf("close server: %v", err)
		}
	})
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for err := m.Health(context.Background()); err != nil; err = m.Health(context.Background()) {
		select {
		case <-deadline:
			tb.Fatalf("server not healthy 10 s after start: %v", err)
		case <-tick.C:
		}
	}
	return &Server{Main: m, URL: "http://" + m.Addr()}
}

// Token returns a bearer token for sub with role, valid for an hour.
func (s *Server) Token(tb testing.TB, sub string, role auth.Role) string {
	tb.Helper()
	tok, err := s.Tokens.Issue(auth.Principal{Subject: sub, Role: role}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Last returns the event stream's last position.
func (s *Server) Last(tb testing.TB) uint64 {
	tb.Helper()
	pos, err := s.Store.LastPosition(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return pos
}
