package edge_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/internal/logtest"
	"github.com/tideline/tideline/internal/poll"
)

// logBuffer collects an agent's log lines.
type logBuffer struct{ logtest.Buffer }

// waitLine waits for a log line containing every one of want.
func (l *logBuffer) waitLine(tb testing.TB, d time.Duration, want ...string) string {
	tb.Helper()
	var found string
	if !poll.Within(d, func() bool {
		for _, line := range strings.Split(l.String(), "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				found = line
				return true
			}
		}
		return false
	}) {
		tb.Fatalf("no log line with %q within %v:\n%s", want, d, l)
	}
	return found
}

func openLogged(tb testing.TB, creds edge.Creds, hubURL string) (*edge.Agent, *logBuffer) {
	tb.Helper()
	logs := &logBuffer{}
	a, err := edge.Open(context.Background(), edge.Config{
		Creds: creds, Hub: hubURL, DataDir: tb.TempDir(), LeafReconnect: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		tb.Fatalf("open agent: %v", err)
	}
	tb.Cleanup(func() { a.Close() })
	return a, logs
}

// The agent says why the hub does not take it, once per problem, whatever
// the cause: refused credentials, nothing listening, a NATS client port,
// a web port; and a URL that is not a leaf URL is refused at start.
func TestAgentSaysWhyTheLinkFails(t *testing.T) {
	t.Parallel()
	h := startHub(t, "", time.Minute)
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	stranger := edge.Creds{Format: edge.CredsFormat, DeviceID: "bike-x", RiderID: "r", LeafUser: pub, NKeySeed: string(seed), HubDomain: "hub"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().String()
	ln.Close()
	web := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(web.Close) // after the parallel subtests
	plain, err := natsserver.Start(natsserver.Config{StoreDir: filepath.Join(t.TempDir(), "js"), ClientListen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Shutdown)
	clientAddr := strings.TrimPrefix(plain.ClientURL(), "nats://")

	tests := []struct {
		name  string
		creds edge.Creds
		hub   string
		want  []string
	}{
		{"unregistered_device", stranger, h.leafURL, []string{"no link to the hub: the hub refuses this device (nats: authorization violation)", "revoked"}},
		{"nothing_listens", h.addDevice(t, "bike-1"), "nats-leaf://" + closedPort, []string{"no link to the hub: connection refused by " + closedPort, "--leaf-listen"}},
		{"client_port", h.addDevice(t, "bike-2"), "nats-leaf://" + clientAddr, []string{"no link to the hub: " + clientAddr + " is a NATS client port", "--leaf-listen"}},
		{"web_port", h.addDevice(t, "bike-3"), "nats-leaf://" + web.Listener.Addr().String(), []string{"no link to the hub: " + web.Listener.Addr().String() + " speaks HTTP", "--leaf-listen"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, logs := openLogged(t, tc.creds, tc.hub)
			logs.waitLine(t, 10*time.Second, tc.want...)
			// Attempts go on every 100-200 ms; the problem is logged once.
			poll.Until(t, 10*time.Second, "5 more attempts", func() bool { return a.LinkRepeats() >= 5 })
			a.Close()
			if n := strings.Count(logs.String(), "link to the hub:"); n != 1 {
				t.Fatalf("the problem was logged %d times:\n%s", n, logs)
			}
		})
	}

	t.Run("revoked_while_connected", func(t *testing.T) {
		creds := h.addDevice(t, "bike-4")
		_, logs := openLogged(t, creds, h.leafURL)
		logs.waitLine(t, 10*time.Second, "hub link up")
		if _, err := natsserver.RevokeDevice(h.devDir, "bike-4"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.devices.Reload(); err != nil {
			t.Fatal(err)
		}
		logs.waitLine(t, 10*time.Second, "no link to the hub: the hub refuses this device")
	})

	t.Run("not_a_leaf_url", func(t *testing.T) {
		for _, hub := range []string{"http://" + web.Listener.Addr().String(), "https://hub.example:7422", "ws://hub.example"} {
			_, err := edge.Open(context.Background(), edge.Config{Creds: stranger, Hub: hub, DataDir: t.TempDir()})
			if err == nil || !strings.Contains(err.Error(), "want nats-leaf://HOST:PORT") {
				t.Errorf("--hub %s: %v, want it refused naming nats-leaf://", hub, err)
			}
		}
	})
}
