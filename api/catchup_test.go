package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/steps"
	"github.com/tideline/tideline/internal/poll"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// writeHistory appends n step commits to a store in dataDir with no
// projection running, so that a server started on it has no snapshot and
// replays them all.
func writeHistory(tb testing.TB, dataDir string, n int) {
	tb.Helper()
	ns, err := natsserver.Start(natsserver.Config{StoreDir: filepath.Join(dataDir, "jetstream")})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := natsserver.Connect(ns, "history")
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	const writers = 16
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				user := fmt.Sprintf("walker-%d", i%500)
				ev := &stepsv1.StepsRecorded{UserId: user, Date: today(), Steps: int32(i)}
				if _, err := store.Append(ctx, steps.Stream(user), []proto.Message{ev}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
}

// TestNotReadyWhileCatchingUp: a server started without snapshots on a
// store that already holds history says NOT_SERVING (gRPC health) and 503
// (/readyz) while its projections replay it, SERVING and 200 once every
// one is within ReadyLag, and never SERVING before; /healthz says ok all
// along.
func TestNotReadyWhileCatchingUp(t *testing.T) {
	const commits, readyLag = 30000, 10
	dir := t.TempDir()
	writeHistory(t, dir, commits)

	m := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0", ReadyLag: readyLag,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}}
	started := time.Now()
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	ran := time.Since(started)
	t.Cleanup(func() {
		h2c.CloseIdleConnections()
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	url := "http://" + m.Addr()
	health := healthv1connect.NewHealthClient(h2c, url, connect.WithGRPC())
	get := func(path string) (int, api.Readiness) {
		t.Helper()
		res, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var r api.Readiness
		if path == api.ReadyzPath {
			if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		return res.StatusCode, r
	}

	var sawCatchingUp, sawNotReady bool
	took := poll.Until(t, 2*time.Minute, "gRPC health SERVING", func() bool {
		if code, _ := get(api.HealthzPath); code != http.StatusOK {
			t.Fatalf("/healthz = %d while catching up; want 200", code)
		}
		res, err := health.Check(context.Background(), connect.NewRequest(&healthv1.HealthCheckRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		code, ready := get(api.ReadyzPath)
		if res.Msg.Status != healthv1.HealthCheckResponse_SERVING {
			sawNotReady = sawNotReady || code == http.StatusServiceUnavailable
			sawCatchingUp = sawCatchingUp || strings.Contains(ready.Reason, "catching up")
			return false
		}
		// Positions only grow: the projection is caught up now if the
		// verdict was right when it was made.
		if r := m.Runner(stepsmodel.Name); r.Position()+readyLag < commits {
			t.Fatalf("SERVING with projection %s at %d of %d", stepsmodel.Name, r.Position(), commits)
		}
		if code != http.StatusOK || !ready.Ready {
			t.Fatalf("gRPC health SERVING but /readyz = %d %+v", code, ready)
		}
		return true
	})
	t.Logf("%d commits replayed; SERVING %v after Run returned (Run took %v)", commits, took.Round(time.Millisecond), ran.Round(time.Millisecond))
	if !sawNotReady || !sawCatchingUp {
		t.Fatalf("never saw NOT_SERVING for catching up (503 seen: %v, reason seen: %v)", sawNotReady, sawCatchingUp)
	}
}
