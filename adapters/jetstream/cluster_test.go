package jetstream_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/es/estest"
)

// openClusterStores opens a store with three replicas through each node
// of a three-node cluster.
func openClusterStores(tb testing.TB) []*tljs.Store {
	tb.Helper()
	_, conns := natstest.StartCluster(tb, 3)
	stores := make([]*tljs.Store, len(conns))
	for i, nc := range conns {
		s, err := tljs.Open(context.Background(), nc, tljs.Config{Replicas: 3})
		if err != nil {
			tb.Fatalf("open store through node %d: %v", i, err)
		}
		stores[i] = s
	}
	return stores
}

// A commit acknowledged through one node is in every load through
// another at once, though Direct Gets are answered by any replica.
func TestClusterLoadSeesWritesOfOtherNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	stores := openClusterStores(t)
	ctx := context.Background()
	for i, s := range stores {
		if !s.Shared() || s.Replicas() != 3 {
			t.Fatalf("store %d: shared %v, replicas %d; want shared, 3", i, s.Shared(), s.Replicas())
		}
		if err := s.Current(ctx); err != nil {
			t.Fatalf("store %d: Current: %v", i, err)
		}
	}
	stream := estest.NewStream(t)
	version := uint64(0)
	for n := range 200 {
		w, r := stores[n%3], stores[(n+1)%3]
		res, err := w.Append(ctx, stream, []proto.Message{estest.Steps("alice", int32(n))}, es.AppendOptions{ExpectedVersion: int64(version)})
		if err != nil {
			t.Fatalf("append %d: %v", n, err)
		}
		version = res.Position.Seq
		commits, v, err := r.Load(ctx, stream, 0)
		if err != nil || v != version || len(commits) != n+1 {
			t.Fatalf("load after append %d through another node: %d commits, version %d, %v; want %d, %d", n, len(commits), v, err, n+1, version)
		}
	}
}

// BenchmarkAppendReplicas compares appends to a server alone (R1, the
// default) with appends to a three-node cluster (R3), in one run:
//
//	go test -run '^$' -bench AppendReplicas -benchtime 5s ./adapters/jetstream/
func BenchmarkAppendReplicas(b *testing.B) {
	for _, bc := range []struct {
		name  string
		store func(b *testing.B) *tljs.Store
	}{
		{"R1", func(b *testing.B) *tljs.Store { return openStore(b, tljs.Config{}) }},
		{"R3", func(b *testing.B) *tljs.Store { return openClusterStores(b)[0] }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := bc.store(b)
			ctx := context.Background()
			events := []proto.Message{estest.Steps("alice", 1000)}
			opts := es.AppendOptions{ExpectedVersion: es.AnyVersion}
			b.SetParallelism(writers)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				stream := estest.NewStream(b)
				for pb.Next() {
					if _, err := s.Append(ctx, stream, events, opts); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

// A cluster's stream and buckets with one replica are raised to three by
// opening them with Replicas 3, keeping what they hold: the upgrade the
// README describes for a cluster started with --replicas 1.
func TestClusterRaisesReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	_, conns := natstest.StartCluster(t, 3)
	ctx := context.Background()
	s1, err := tljs.Open(ctx, conns[0], tljs.Config{Replicas: 1, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	seeds, err := tljs.OpenSeeds(ctx, s1.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := seeds.Seed(ctx, "raffle-1")
	if err != nil {
		t.Fatal(err)
	}
	stream := estest.NewStream(t)
	for n := range 50 {
		estest.MustAppend(t, s1, stream, es.AppendOptions{ExpectedVersion: es.AnyVersion}, estest.Steps("alice", int32(n)))
	}

	s3, err := tljs.Open(ctx, conns[1], tljs.Config{Replicas: 3})
	if err != nil {
		t.Fatalf("reopen with 3 replicas: %v", err)
	}
	seeds3, err := tljs.OpenSeeds(ctx, s3.JetStream(), 3)
	if err != nil {
		t.Fatalf("reopen seeds with 3 replicas: %v", err)
	}
	if again, err := seeds3.Seed(ctx, "raffle-1"); err != nil || string(again) != string(seed) {
		t.Errorf("seed after the raise: %x, %v; want %x", again, err, seed)
	}
	for _, name := range []string{"EVENTS", "KV_" + tljs.SeedsBucket} {
		st, err := s3.JetStream().Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.Replicas; got != 3 {
			t.Errorf("stream %s has %d replicas after the raise, want 3", name, got)
		}
	}
	for i, nc := range conns {
		s, err := tljs.Open(ctx, nc, tljs.Config{Replicas: 3})
		if err != nil {
			t.Fatal(err)
		}
		commits, _, err := s.Load(ctx, stream, 0)
		if err != nil || len(commits) != 50 {
			t.Errorf("load through node %d after the raise: %d commits, %v; want 50", i, len(commits), err)
		}
	}
}

// A runner whose node is left without a majority (its two peers gone)
// still returns promptly once its context ends: its final snapshot, which
// no majority will take, is abandoned rather than waited for a minute.
// (A `tideline serve` node took that long to exit after SIGTERM.)
func TestClusterRunnerStopsWithoutMajority(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	servers, conns := natstest.StartCluster(t, 3)
	s, err := tljs.Open(context.Background(), conns[0], tljs.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	r := tljs.NewRunner(s, newCountingProjection("counts", 1), tljs.RunnerOptions{Logger: quietLogger})
	stop := startRunner(t, r)
	// On a cluster just formed, listing the snapshot history can wait
	// out its 10 s bound ("snapshot history unavailable", 1 run in 10
	// here), which is all of waitFor's time.
	pos := appendCommits(t, s, 0, 30)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, pos); err != nil {
		t.Fatalf("WaitFor(%d): %v (position %d)", pos, err, r.Position())
	}
	// The snapshot bucket's leader stays: an upload is then taken and
	// never acknowledged, not refused at once for want of a leader.
	leadOn(t, conns[0], "OBJ_projections", "node0")
	for _, peer := range servers[1:] {
		peer.Shutdown()
		peer.WaitForShutdown()
	}
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Run returned %v after its context ended, its peers gone", time.Since(began).Round(time.Millisecond))
}

// leadOn makes server the leader of stream, stepping its leader down
// (JetStream's preferred placement) until it is.
func leadOn(tb testing.TB, nc *nats.Conn, stream, server string) {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := js.Stream(ctx, stream)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = st.Info(ctx)
		}
		cancel()
		if err == nil && info.Cluster != nil && info.Cluster.Leader == server {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not the leader of %s within 20s: %v", server, stream, err)
		}
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			_, _ = nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, []byte(`{"placement":{"preferred":"`+server+`"}}`), 2*time.Second)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

// While a cluster forms, a provisioning request can go unanswered: each
// try is bounded (1 s, then doubling to 5 s) so that the first try after
// the cluster has formed is not a 5 s time-out away; an error that does
// not say the cluster is not ready ends the tries. A server alone is
// tried again after a time-out (it may be busy), with no bound of
// WhileClusterForms's own on a try.
func TestWhileClusterFormsBoundsEachTry(t *testing.T) {
	var bounds []time.Duration
	err := tljs.WhileClusterForms(context.Background(), true, func(ctx context.Context) error {
		d, ok := ctx.Deadline()
		if !ok {
			t.Fatal("a try without a deadline")
		}
		bounds = append(bounds, time.Until(d).Round(time.Second))
		if len(bounds) < 4 {
			return context.DeadlineExceeded // as a try that timed out
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second}; !slices.Equal(bounds, want) {
		t.Fatalf("tries bounded at %v, want %v", bounds, want)
	}

	refused := errors.New("refused")
	tries := 0
	err = tljs.WhileClusterForms(context.Background(), true, func(context.Context) error { tries++; return refused })
	if !errors.Is(err, refused) || tries != 1 {
		t.Fatalf("an error other than not-ready: %v after %d tries, want it after 1", err, tries)
	}
	tries = 0
	err = tljs.WhileClusterForms(context.Background(), false, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); ok {
			t.Fatal("alone: a try bounded by WhileClusterForms; want the requests' own time-outs")
		}
		if tries++; tries < 3 {
			return context.DeadlineExceeded // a server busy restoring snapshots
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Fatalf("alone, busy: %v after %d tries, want success at the 3rd", err, tries)
	}
	tries = 0
	err = tljs.WhileClusterForms(context.Background(), false, func(context.Context) error { tries++; return refused })
	if !errors.Is(err, refused) || tries != 1 {
		t.Fatalf("alone: %v after %d tries, want it after 1", err, tries)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tries = 0
	err = tljs.WhileClusterForms(ctx, false, func(context.Context) error { tries++; cancel(); return context.DeadlineExceeded })
	if !errors.Is(err, context.DeadlineExceeded) || tries != 1 {
		t.Fatalf("alone, ctx ended: %v after %d tries, want the time-out after 1", err, tries)
	}
}
