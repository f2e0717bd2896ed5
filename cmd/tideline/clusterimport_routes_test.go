package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
	"github.com/tideline/tideline/wire"
)

const testClusterSecret = "cluster-secret-0123456789abcdef"

// awaitingNode returns a cluster node configured to await an import,
// listening on a fixed address (Run does not return while it waits).
func awaitingNode(dir, listen, routeListen string, routes []string, logger *slog.Logger) *server.Main {
	return &server.Main{Config: server.Config{DataDir: dir, Listen: listen, AwaitImport: true,
		ServerName: filepath.Base(dir), ReadyLag: api.DefaultReadyLag,
		Cluster: natsserver.Cluster{Name: "tl-import", Listen: routeListen, Routes: routes, Secret: testClusterSecret},
		Logger:  logger}}
}

// readyz returns /readyz's status and reason at addr.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	res, err := http.Get("http://" + addr + api.ReadyzPath)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var r api.Readiness
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return res.StatusCode, err.Error()
	}
	return res.StatusCode, r.Reason
}

// A node awaiting an import is live and not ready; Close ends its wait,
// and so does its context. Without a cluster it is refused.
func TestAwaitImportEnds(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	alone := &server.Main{Config: server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", AwaitImport: true, Logger: logger}}
	if err := alone.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "--await-import needs a cluster node") {
		t.Fatalf("await-import alone: %v, want 'needs a cluster node'", err)
	}
	for _, end := range []string{"close", "cancel"} {
		t.Run(end, func(t *testing.T) {
			route, listen := freeAddr(t), freeAddr(t)
			m := awaitingNode(filepath.Join(t.TempDir(), "node0"), listen, route, []string{"nats-route://" + route}, logger)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- m.Run(ctx) }()
			poll.Until(t, 20*time.Second, "/readyz saying it awaits the import", func() bool {
				code, reason := readyz(t, listen)
				return code == http.StatusServiceUnavailable && strings.Contains(reason, "awaiting 'tideline cluster-import'")
			})
			if res, err := http.Get("http://" + listen + api.HealthzPath); err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("/healthz while awaiting: %v %v, want 200", res, err)
			} else {
				res.Body.Close()
			}
			start := time.Now()
			if end == "close" {
				if err := m.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			} else {
				cancel()
			}
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "await import") {
					t.Errorf("run after %s: %v, want 'await import'", end, err)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("run still awaiting 15s after %s", end)
			}
			t.Logf("ended %s after %s", end, time.Since(start).Round(time.Millisecond))
			if _, err := http.Get("http://" + listen + api.HealthzPath); err == nil {
				t.Errorf("the API's port still answers after %s", end)
			}
		})
	}
}

// cluster-import's flags: --nats-url or the route flags, all of them.
func TestClusterImportFlags(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(testClusterSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"neither":      {nil, "name the cluster to copy into"},
		"both":         {[]string{"--nats-url", "nats://127.0.0.1:1", "--cluster-name", "tl", "--routes", "nats-route://127.0.0.1:1", "--cluster-secret-file", secret}, "not both"},
		"no_secret":    {[]string{"--cluster-name", "tl", "--routes", "nats-route://127.0.0.1:1"}, "needs all of"},
		"no_routes":    {[]string{"--cluster-name", "tl", "--cluster-secret-file", secret}, "needs all of"},
		"bad_route":    {[]string{"--cluster-name", "tl", "--routes", "nats://127.0.0.1:1", "--cluster-secret-file", secret}, "want nats-route://host:port"},
		"creds_routed": {[]string{"--cluster-name", "tl", "--routes", "nats-route://127.0.0.1:1", "--cluster-secret-file", secret, "--nats-creds", "x.creds"}, "--nats-creds goes with --nats-url"},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(t.Context(), append([]string{"cluster-import", "--data", t.TempDir()}, c.args...), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("cluster-import %v: %v, want an error saying %q", c.args, err, c.want)
			}
		})
	}
}

// A server alone's store is imported into a cluster of three 'tideline
// serve --await-import' nodes through the cluster's routes: the nodes
// wait, not ready, until every stream is copied, then serve the old
// server's steps at the same positions; a second import is refused.
func TestClusterImportThroughRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, old, tok, last, want := aloneWithSteps(t, logger)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	secret := filepath.Join(root, "secret")
	if err := os.WriteFile(secret, []byte(testClusterSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var routes, listens, routeListens, dirs []string
	for i := range 3 {
		routeListens = append(routeListens, freeAddr(t))
		listens = append(listens, freeAddr(t))
		routes = append(routes, "nats-route://"+routeListens[i])
		dirs = append(dirs, filepath.Join(root, fmt.Sprintf("node%d", i)))
		// The old server's keys: its tokens stay good on every node.
		if err := os.CopyFS(filepath.Join(dirs[i], "keys"), os.DirFS(filepath.Join(dir, "keys"))); err != nil {
			t.Fatal(err)
		}
	}
	nodes := make([]*server.Main, 3)
	errs := make(chan error, 3)
	for i := range nodes {
		nodes[i] = awaitingNode(dirs[i], listens[i], routeListens[i], routes, logger)
		go func() { errs <- nodes[i].Run(ctx) }()
	}
	closed := false
	t.Cleanup(func() {
		if closed {
			return
		}
		for _, m := range nodes {
			m.Close()
		}
	})
	for i, l := range listens {
		poll.Until(t, 30*time.Second, fmt.Sprintf("node%d not ready, awaiting the import", i), func() bool {
			code, reason := readyz(t, l)
			return code == http.StatusServiceUnavailable && strings.Contains(reason, "awaiting")
		})
	}
	select {
	case err := <-errs:
		t.Fatalf("a node returned before the import: %v", err)
	default:
	}

	var out bytes.Buffer
	start := time.Now()
	args := []string{"cluster-import", "--data", dir, "--cluster-name", "tl-import", "--routes", strings.Join(routes, ","), "--cluster-secret-file", secret}
	if err := run(ctx, args, &out, io.Discard); err != nil {
		t.Fatalf("import: %v\n%s", err, out.String())
	}
	t.Logf("import through the routes in %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	for range nodes {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("a node after the import: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("a node did not start within 60s of the import")
		}
	}
	t.Logf("nodes serving %s after the import began", time.Since(start).Round(time.Millisecond))

	for i, m := range nodes {
		if m.Store.Replicas() != 3 {
			t.Errorf("node%d's store has %d replicas, want 3", i, m.Store.Replicas())
		}
		c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
		got, err := c.GetSteps(ctx, authed(&stepsv1.GetStepsRequest{UserIds: []string{"walker-0", "walker-3"}, FromDate: todayUTC(), MinPosition: last}, tok))
		if err != nil {
			t.Fatalf("steps through node%d: %v", i, err)
		}
		if fmt.Sprint(got.Msg.Steps) != fmt.Sprint(want.Msg.Steps) {
			t.Errorf("steps through node%d: %v, want %v", i, got.Msg.Steps, want.Msg.Steps)
		}
		if pos, err := m.Store.LastPosition(ctx); err != nil || pos < last {
			t.Errorf("node%d's store ends at %d (%v), want at least %d", i, pos, err, last)
		}
	}
	res, err := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+nodes[1].Addr()).
		RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: "walker-0", Date: todayUTC(), Steps: 1}, tok))
	if err != nil || res.Msg.Position != last+1 {
		t.Errorf("a write through node1: position %v, %v; want %d", res.Msg.GetPosition(), err, last+1)
	}

	err = run(ctx, args, io.Discard, io.Discard)
	if es.KindOf(err) != es.FailedPrecondition || !strings.Contains(err.Error(), "already has stream") {
		t.Fatalf("a second import: %v, want FailedPrecondition 'already has stream'", err)
	}
	if _, err := nodes[0].Store.JetStream().Stream(ctx, wire.ImportingStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream %s after the refused import: %v, want none", wire.ImportingStream, err)
	}

	// While a stream TIDELINE_IMPORTING is there (an import under way),
	// another import is refused and a node started with --await-import
	// waits, though EVENTS is there; once it is gone, the node serves.
	joined, err := joinCluster(natsserver.Cluster{Name: "tl-import", Routes: routes, Secret: testClusterSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { joined.Shutdown(); joined.WaitForShutdown() }()
	jnc, err := natsserver.Connect(joined, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer jnc.Close()
	if err := awaitJetStream(ctx, jnc, joinWait); err != nil {
		t.Fatal(err)
	}
	jjs, err := jetstream.New(jnc)
	if err != nil {
		t.Fatal(err)
	}
	if err := beginImport(ctx, jjs); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "another import is under way") {
		t.Fatalf("an import while %s is there: %v, want 'another import is under way'", wire.ImportingStream, err)
	}
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	nodes[2] = awaitingNode(dirs[2], listens[2], routeListens[2], routes, logger)
	go func() { errs <- nodes[2].Run(ctx) }()
	poll.Until(t, 30*time.Second, "node2 restarted awaiting the import", func() bool {
		code, reason := readyz(t, listens[2])
		return code == http.StatusServiceUnavailable && strings.Contains(reason, "awaiting")
	})
	select { // its absence cannot be polled for: a bounded look
	case err := <-errs:
		t.Fatalf("node2 started while %s is there: %v", wire.ImportingStream, err)
	case <-time.After(2 * time.Second):
	}
	if err := endImport(ctx, jjs); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if err != nil {
			t.Fatalf("node2 once %s is gone: %v", wire.ImportingStream, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("node2 still awaiting 30s after %s is gone", wire.ImportingStream)
	}
	if code, reason := readyz(t, listens[2]); strings.Contains(reason, "awaiting") {
		t.Errorf("node2's /readyz once serving: %d %s", code, reason)
	}
	for _, m := range nodes {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	closed = true
}
