package reactions_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/domain/es"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// BenchmarkReaction: the time per commit of a reaction (Concurrency 1, a
// handler that does nothing) working through a backlog of b.N commits:
// `go test ./adapters/reactions -run '^$' -bench Reaction -benchtime 10000x`.
func BenchmarkReaction(b *testing.B) {
	e := setup(b)
	for i := range b.N {
		if _, err := e.store.Append(context.Background(), es.StreamID{Context: "safety", Type: "rider", ID: fmt.Sprint("r", i%100)},
			[]proto.Message{&safetyv1.DangerDetected{EventId: fmt.Sprint("e", i)}}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	all := make(chan struct{})
	b.ResetTimer()
	e.engine(b, reactions.Reaction{Name: "bench", Subjects: []string{"ev.safety.>"},
		Handle: func(context.Context, es.Commit) error {
			if n.Add(1) == int64(b.N) {
				close(all)
			}
			return nil
		}})
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d commits handled", n.Load(), b.N)
	}
}
