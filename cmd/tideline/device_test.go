package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/internal/poll"
)

func deviceRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"device"}, args...), &out, &errb)
	return out.String(), err
}

// `tideline device add/list/revoke` against a running `serve --leaf-listen`:
// an added device connects without a restart, a revoked one is cut and
// refused.
func TestDeviceRegistry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:-1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	out, err := deviceRun(t, "add", "bike-7", "--rider", "alice", "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimSpace(out)
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("creds file %s: %v mode %v", path, err, info.Mode())
	}
	creds, err := edge.LoadCreds(path)
	if err != nil || creds.DeviceID != "bike-7" || creds.RiderID != "alice" || creds.HubDomain != natsserver.HubDomain {
		t.Fatalf("creds %+v: %v", creds, err)
	}
	for _, bad := range [][]string{
		{"add", "bike-7", "--rider", "bob", "--data", dir}, // already registered
		{"add", "bad id", "--rider", "bob", "--data", dir}, // not a token
		{"add", "bike-8", "--data", dir},                   // no rider
		{"revoke", "nobody", "--data", dir},                // unknown
	} {
		if _, err := deviceRun(t, bad...); err == nil {
			t.Errorf("device %v: no error", bad)
		}
	}

	a, err := edge.Open(context.Background(), edge.Config{Creds: creds, Hub: natsserver.LeafURL(m.NATS()), DataDir: t.TempDir(),
		LeafReconnect: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	poll.Until(t, 10*time.Second, "added device connected", a.LinkUp)
	if out, _ := deviceRun(t, "list", "--data", dir); !strings.Contains(out, "bike-7") || !strings.Contains(out, "active") {
		t.Fatalf("list:\n%s", out)
	}
	if _, err := deviceRun(t, "revoke", "bike-7", "--data", dir); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "revoked device cut", func() bool { return !a.LinkUp() && m.NATS().NumLeafNodes() == 0 })
	if out, _ := deviceRun(t, "list", "--data", dir); !strings.Contains(out, "revoked") {
		t.Fatalf("list:\n%s", out)
	}
	// It keeps trying and keeps being refused.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if m.NATS().NumLeafNodes() != 0 {
			t.Fatal("revoked device connected again")
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}
