package jetstream_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// benchCommits is how many one-event commits the replay benchmarks read.
const benchCommits = 50000

// filledStore returns a store whose stream holds benchCommits commits of
// one ~256-byte event each, over 1000 streams.
func filledStore(b *testing.B) *tljs.Store {
	b.Helper()
	return fillStore(b, runnerStore(b))
}

// fillStore appends filledStore's commits to s and returns it.
func fillStore(b *testing.B, s *tljs.Store) *tljs.Store {
	b.Helper()
	pad := strings.Repeat("x", 180)
	const writers = 64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range writers {
		wg.Go(func() {
			for i := w; i < benchCommits; i += writers {
				stream := es.StreamID{Context: "steps", Type: "day", ID: "user-" + strconv.Itoa(i%1000)}
				ev := &stepsv1.StepsRecorded{UserId: stream.ID + pad, Date: "2026-01-01", Steps: int32(i)}
				if _, err := s.Append(context.Background(), stream, []proto.Message{ev}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("fill stream: %v", err)
	}
	return s
}

// The replay benchmarks count one op per event: b.N events are read in
// passes over the benchCommits-commit stream (a rebuild always reads whole
// passes), and events/s is reported from the events actually read.

// BenchmarkReplayRaw reads the stream with an ordered consumer, decoding
// nothing: the ceiling for BenchmarkRebuild.
func BenchmarkReplayRaw(b *testing.B) {
	s := filledStore(b)
	b.ResetTimer()
	for left := b.N; left > 0; left -= benchCommits {
		replayRaw(b, s, min(left, benchCommits))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRebuild rebuilds a trivial projection from position 1 with a
// running Runner: every commit decoded, every event applied.
func BenchmarkRebuild(b *testing.B) {
	s := filledStore(b)
	r := tallyRunner(b, s)
	b.ResetTimer()
	events := 0
	for ; events < b.N; events += benchCommits {
		rebuild(b, r)
	}
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRebuildVsRaw alternates whole raw replays and rebuilds of the
// same stream, so both see the same machine load, and reports their
// throughput ratio (the target is >= 0.7). One op is one event of each.
func BenchmarkRebuildVsRaw(b *testing.B) {
	s := filledStore(b)
	r := tallyRunner(b, s)
	b.ResetTimer()
	var raw, rebuilt time.Duration
	events := 0
	for ; events < b.N; events += benchCommits {
		start := time.Now()
		replayRaw(b, s, benchCommits)
		raw += time.Since(start)
		start = time.Now()
		rebuild(b, r)
		rebuilt += time.Since(start)
	}
	b.ReportMetric(float64(events)/raw.Seconds(), "raw-events/s")
	b.ReportMetric(float64(events)/rebuilt.Seconds(), "rebuild-events/s")
	b.ReportMetric(raw.Seconds()/rebuilt.Seconds(), "rebuild/raw")
}

// BenchmarkReadBlocks reads the stream from its block files
// (Config.BlockDir) and, alternately, with an ordered consumer (the raw
// replay's read), and reports both per message, in time and in the
// process's CPU, and their ratio of time: `go test ./adapters/jetstream
// -run '^$' -bench ReadBlocks -benchtime 5x`. One op is one read of each.
func BenchmarkReadBlocks(b *testing.B) {
	s := fillStore(b, blockDirStore(b))
	var blocksT, consT, blocksCPU, consCPU time.Duration
	b.ResetTimer()
	for range b.N {
		t0, c0 := time.Now(), processCPU(b)
		if n, last, err := s.ReadBlocks(benchCommits); err != nil || last != benchCommits || n != benchCommits {
			b.Fatalf("blocks: %d read, to %d, %v", n, last, err)
		}
		blocksT, blocksCPU = blocksT+time.Since(t0), blocksCPU+processCPU(b)-c0
		t0, c0 = time.Now(), processCPU(b)
		replayRaw(b, s, benchCommits)
		consT, consCPU = consT+time.Since(t0), consCPU+processCPU(b)-c0
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N*benchCommits) }
	b.ReportMetric(per(blocksT), "blocks-ns/msg")
	b.ReportMetric(per(consT), "consumer-ns/msg")
	b.ReportMetric(per(blocksCPU), "blocks-cpu-ns/msg")
	b.ReportMetric(per(consCPU), "consumer-cpu-ns/msg")
	b.ReportMetric(consT.Seconds()/blocksT.Seconds(), "consumer/blocks")
}

// processCPU is the CPU time this process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// replayRaw reads the first n messages of the stream.
func replayRaw(b *testing.B, s *tljs.Store, n int) {
	cons, err := s.JetStream().OrderedConsumer(context.Background(), s.StreamName(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	read := 0
	cc, err := cons.Consume(func(jetstream.Msg) {
		if read++; read == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(2048))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("replayed %d of %d", read, n)
	}
}

// tallyRunner runs a tallyProjection, caught up with the stream.
func tallyRunner(b *testing.B, s *tljs.Store) *tljs.Runner {
	r := tljs.NewRunner(s, &tallyProjection{}, tljs.RunnerOptions{SnapshotAfter: 1 << 30, SnapshotEvery: time.Hour, Logger: quietLogger})
	startRunner(b, r)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitFor(ctx, benchCommits); err != nil {
		b.Fatal(err)
	}
	return r
}

func rebuild(b *testing.B, r *tljs.Runner) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Rebuild(ctx); err != nil {
		b.Fatal(err)
	}
	if lag, err := r.Lag(ctx); err != nil || lag != 0 {
		b.Fatalf("after rebuild: lag %d, %v", lag, err)
	}
}

// tallyProjection counts events and steps.
type tallyProjection struct {
	events atomic.Int64
	steps  atomic.Int64
}

func (p *tallyProjection) Name() string { return "tally" }
func (p *tallyProjection) Version() int { return 1 }
func (p *tallyProjection) Apply(e es.Event) {
	p.events.Add(1)
	if s, ok := e.Data.(*stepsv1.StepsRecorded); ok {
		p.steps.Add(int64(s.GetSteps()))
	}
}
func (p *tallyProjection) Reset()                    { p.events.Store(0); p.steps.Store(0) }
func (p *tallyProjection) Snapshot() ([]byte, error) { return nil, nil }
func (p *tallyProjection) Restore([]byte) error      { return nil }

// BenchmarkLiveCommit appends one commit at a time to a caught-up runner
// and waits until it has applied it: the bytes and allocations per op are
// the whole process's (the append, the server and the runner), so two
// trees compare by their difference.
func BenchmarkLiveCommit(b *testing.B) {
	s := runnerStore(b)
	r := tljs.NewRunner(s, &tallyProjection{}, tljs.RunnerOptions{SnapshotAfter: 1 << 30, SnapshotEvery: time.Hour, Logger: quietLogger})
	startRunner(b, r)
	appendEach(b, s, func(ctx context.Context, seq uint64) {
		if err := r.WaitFor(ctx, seq); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkFollowCommit appends one commit at a time to the log a Read
// follows live and waits until Read has handed it over; bytes and
// allocations per op are the whole process's, as in BenchmarkLiveCommit.
func BenchmarkFollowCommit(b *testing.B) {
	s := runnerStore(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan uint64, 1)
	readErr := make(chan error, 1)
	go func() {
		readErr <- s.Read(ctx, es.Selection{From: 1}, func(lb es.LogBatch) error {
			if len(lb.Commits) > 0 {
				got <- lb.Commits[len(lb.Commits)-1].Seq
			}
			return nil
		})
	}()
	appendEach(b, s, func(ctx context.Context, seq uint64) {
		for read := uint64(0); read < seq; {
			select {
			case read = <-got:
			case err := <-readErr:
				b.Fatalf("read stopped: %v", err)
			case <-ctx.Done():
				b.Fatalf("commit %d not read: %v", seq, ctx.Err())
			}
		}
	})
}

// appendEach appends b.N one-event commits, one at a time, each followed
// by seen(its position), which waits until the commit was taken in.
func appendEach(b *testing.B, s *tljs.Store, seen func(ctx context.Context, seq uint64)) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stream := es.StreamID{Context: "steps", Type: "day", ID: "user-1"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev := &stepsv1.StepsRecorded{UserId: stream.ID, Date: "2026-01-01", Steps: int32(i)}
		res, err := s.Append(ctx, stream, []proto.Message{ev}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err != nil {
			b.Fatal(err)
		}
		seen(ctx, res.Position.Seq)
	}
}
