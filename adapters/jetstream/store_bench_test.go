package jetstream_test

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/es/estest"
)

// writers is how many goroutines append at once: DESIGN.md's reference
// rates are for 1 and 16 writers.
const writers = 16

func BenchmarkAppend(b *testing.B) {
	s := openStore(b, tljs.Config{})
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
}

func BenchmarkAppendOCC(b *testing.B) {
	s := openStore(b, tljs.Config{})
	ctx := context.Background()
	events := []proto.Message{estest.Steps("alice", 1000)}
	b.SetParallelism(writers)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		stream := estest.NewStream(b)
		version := int64(0)
		for pb.Next() {
			res, err := s.Append(ctx, stream, events, es.AppendOptions{ExpectedVersion: version})
			if err != nil {
				b.Error(err)
				return
			}
			version = int64(res.Position.Seq)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

func BenchmarkLoad20(b *testing.B) {
	s := openStore(b, tljs.Config{})
	ctx := context.Background()
	stream := estest.NewStream(b)
	for i := range 20 {
		estest.MustAppend(b, s, stream, es.AppendOptions{ExpectedVersion: es.AnyVersion}, estest.Steps("alice", int32(i)))
		estest.MustAppend(b, s, estest.NewStream(b), es.AppendOptions{ExpectedVersion: es.AnyVersion}, estest.Steps("bob", int32(i)))
	}
	for b.Loop() {
		commits, _, err := s.Load(ctx, stream, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(commits) != 20 {
			b.Fatalf("loaded %d commits, want 20", len(commits))
		}
	}
}
