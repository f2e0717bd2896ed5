package api_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/steps"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/projections/projtest/city"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	tlwire "github.com/tideline/tideline/wire"
)

// appendHistory appends commits (16 writers) to a store in dataDir with
// no projection running, so that a server started on it has no snapshot
// and replays them all.
func appendHistory(tb testing.TB, dataDir string, commits iter.Seq[city.Commit]) {
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	store, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := city.Append(ctx, store, commits, 16, nil); err != nil {
		tb.Fatal(err)
	}
}

// writeHistory writes n step commits of 500 walkers (appendHistory).
func writeHistory(tb testing.TB, dataDir string, n int) {
	tb.Helper()
	appendHistory(tb, dataDir, func(yield func(city.Commit) bool) {
		for i := range n {
			user := fmt.Sprintf("walker-%d", i%500)
			if !yield(city.Commit{Stream: steps.Stream(user), Event: &stepsv1.StepsRecorded{UserId: user, Date: today(), Steps: int32(i)}}) {
				return
			}
		}
	})
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
	// One pass fed them all, and ended with the replay.
	if st := m.ReplayStats(); st.Joined < 10 || st.Alone != 0 {
		t.Errorf("replays: %+v; want every projection's (more than 10) on the shared pass", st)
	}
	poll.Until(t, 10*time.Second, "every projection off the shared pass", func() bool { return m.ReplayStats().On == 0 })
	if !sawNotReady || !sawCatchingUp {
		t.Fatalf("never saw NOT_SERVING for catching up (503 seen: %v, reason seen: %v)", sawNotReady, sawCatchingUp)
	}
}

// writeMixedHistory writes n commits (appendHistory): half step counts
// of 10,000 walkers today, half a city's orders and danger reports
// (city.Mixed), interleaved, the city's over by two days ago. Its
// commits are new to the store, so the alert reaction still raises
// alerts for its dangers beside the replay; readiness does not wait for
// them. Each stream's commits are appended in order (city.Append).
func writeMixedHistory(tb testing.TB, dataDir string, n int) {
	tb.Helper()
	now := time.Now()
	appendHistory(tb, dataDir, city.Mixed(n, city.Mix{Walkers: 10000, Days: 1,
		DeliveryStart: now.Add(-48*time.Hour - time.Duration(n)*time.Minute/5)}, now))
}

var (
	startCommits  = flag.Int("start.commits", 100_000, "commits of history BenchmarkStartWithoutSnapshots replays")
	startSeparate = flag.Bool("start.separate", true, "BenchmarkStartWithoutSnapshots also starts with one replay per read model")
	startProfile  = flag.String("start.cpuprofile", "", "BenchmarkStartWithoutSnapshots writes a CPU profile of its first start with one replay pass (from Run to ready) to this file")
)

// BenchmarkStartWithoutSnapshots: a server starting on a store of mixed
// history (-start.commits) without snapshots, until /readyz says every
// projection is caught up: with the shared replay pass ("shared") and
// with a consumer per projection ("separate"), alternating with a raw
// replay of the same stream on the same data (an ordered consumer that
// reads every message and does nothing else). shared/raw is the issue's
// "one replay pass ≥ 0.8 of raw replay"; start up and catch-up both count.
func BenchmarkStartWithoutSnapshots(b *testing.B) {
	history := b.TempDir()
	writeMixedHistory(b, history, *startCommits)
	fresh := func() string {
		b.Helper()
		dir := b.TempDir()
		if err := os.CopyFS(dir, os.DirFS(history)); err != nil {
			b.Fatal(err)
		}
		return dir
	}
	// raw returns how long the raw read took, its CPU, and how long the
	// NATS server took to start on the history before it (not timed: a
	// Tideline start includes its embedded server's, so this says how
	// much of the ratio that is).
	raw := func() (took, cpu, natsStart time.Duration) {
		dir := fresh()
		t0 := time.Now()
		ns, err := natsserver.Start(natsserver.Config{StoreDir: filepath.Join(dir, "jetstream")})
		if err != nil {
			b.Fatal(err)
		}
		natsStart = time.Since(t0)
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		began, cpu := time.Now(), cpuTime(b)
		nc, err := natsserver.Connect(ns, "raw")
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		js, err := natsjs.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		cons, err := js.OrderedConsumer(ctx, tlwire.EventsStream, natsjs.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		cc, err := cons.Consume(func(m natsjs.Msg) {
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				close(done)
			}
		}, natsjs.PullMaxMessages(2048))
		if err != nil {
			b.Fatal(err)
		}
		<-done
		took, cpu = time.Since(began), cpuTime(b)-cpu
		cc.Stop()
		return took, cpu, natsStart
	}
	start := func(separate bool) (time.Duration, time.Duration, jetstream.ReplayStats) {
		dir := fresh()
		m := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0", ReadyLag: 1, SeparateReplays: separate, ReactionMaxAge: time.Nanosecond,
			Logger: slog.New(slog.DiscardHandler)}}
		began, cpu := time.Now(), cpuTime(b)
		if err := m.Run(context.Background()); err != nil {
			b.Fatal(err)
		}
		ran := time.Since(began)
		var ready time.Duration
		// When each read model caught up, for the log.
		caught := make([]string, 0, len(m.Runners()))
		var caughtMu sync.Mutex
		var watch sync.WaitGroup
		defer watch.Wait()
		last, err := m.Store.LastPosition(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range m.Runners() {
			watch.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				if r.WaitFor(ctx, last) == nil {
					caughtMu.Lock()
					caught = append(caught, fmt.Sprintf("%s %v", r.Name(), time.Since(began).Round(time.Millisecond)))
					caughtMu.Unlock()
				}
			})
		}
		defer func() {
			watch.Wait()
			b.Logf("separate replays %v: Run returned after %v, ready after %v; caught up: %s", separate, ran.Round(time.Millisecond), ready.Round(time.Millisecond), strings.Join(caught, ", "))
			h2c.CloseIdleConnections()
			if err := m.Close(); err != nil {
				b.Error(err)
			}
		}()
		for {
			res, err := http.Get("http://" + m.Addr() + api.ReadyzPath)
			if err != nil {
				b.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
			if time.Since(began) > 10*time.Minute {
				b.Fatal("not ready after 10 minutes")
			}
			time.Sleep(50 * time.Millisecond) // poll interval: each check asks the server for every projection's lag
		}
		ready = time.Since(began)
		return ready, cpuTime(b) - cpu, m.ReplayStats()
	}
	var rawT, sharedT, separateT, rawCPU, sharedCPU, separateCPU, natsT time.Duration
	var st jetstream.ReplayStats
	b.ResetTimer()
	for i := range b.N {
		t, cpu, natsStart := raw()
		rawT, rawCPU, natsT = rawT+t, rawCPU+cpu, natsT+natsStart
		if i == 0 && *startProfile != "" {
			stop := profileCPU(b, *startProfile)
			t, cpu, st = start(false)
			stop()
		} else {
			t, cpu, st = start(false)
		}
		sharedT, sharedCPU = sharedT+t, sharedCPU+cpu
		if *startSeparate {
			t, cpu, _ = start(true)
			separateT, separateCPU = separateT+t, separateCPU+cpu
		}
	}
	// CPU of the whole process (the embedded NATS server included) over
	// the timed span.
	b.ReportMetric(rawCPU.Seconds()/float64(b.N), "raw-cpu-s")
	b.ReportMetric(sharedCPU.Seconds()/float64(b.N), "shared-cpu-s")
	if *startSeparate {
		b.ReportMetric(separateCPU.Seconds()/float64(b.N), "separate-cpu-s")
	}
	n := float64(*startCommits * b.N)
	b.ReportMetric(n/rawT.Seconds(), "raw-commits/s")
	b.ReportMetric(n/sharedT.Seconds(), "shared-commits/s")
	b.ReportMetric(rawT.Seconds()/sharedT.Seconds(), "shared/raw")
	// The same with the NATS server's start counted on both sides.
	b.ReportMetric(natsT.Seconds()/float64(b.N), "nats-start-s")
	b.ReportMetric((rawT+natsT).Seconds()/sharedT.Seconds(), "shared/raw+start")
	if *startSeparate {
		b.ReportMetric(rawT.Seconds()/separateT.Seconds(), "separate/raw")
	}
	b.ReportMetric(float64(st.Joined), "joined")
	b.ReportMetric(float64(st.Alone), "alone")
}

// profileCPU writes a CPU profile to path until the returned func is
// called.
func profileCPU(b *testing.B, path string) func() {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Error(err)
		}
	}
}
