package jetstream_test

import (
	"context"
	"testing"

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
