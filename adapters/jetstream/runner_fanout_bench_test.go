package jetstream_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	tljs "github.com/tideline/tideline/adapters/jetstream"
)

// namedTally is a tallyProjection under a name of its own, so that many
// run side by side (each runner owns its snapshot object).
type namedTally struct {
	tallyProjection
	name string
}

func (p *namedTally) Name() string { return p.name }

// BenchmarkRebuildManyVsOne measures what a start without snapshots pays
// for feeding each projection from its own ordered consumer: it
// alternates a raw replay, one runner's rebuild, and benchProjections
// runners rebuilding at once, and reports each one's throughput and the
// ratios. One pass feeding every projection would cost about one
// rebuild (plus the projections' own Apply time, trivial here).
func BenchmarkRebuildManyVsOne(b *testing.B) {
	for _, n := range []int{5, 13} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := filledStore(b)
			runners := make([]*tljs.Runner, n)
			for i := range runners {
				runners[i] = tljs.NewRunner(s, &namedTally{name: "tally-" + strconv.Itoa(i)},
					tljs.RunnerOptions{SnapshotAfter: 1 << 30, SnapshotEvery: time.Hour, HistoryEvery: -1, Logger: quietLogger})
				startRunner(b, runners[i])
			}
			for _, r := range runners {
				waitCaughtUp(b, r)
			}
			b.ResetTimer()
			var raw, one, many time.Duration
			events := 0
			for ; events < b.N; events += benchCommits {
				start := time.Now()
				replayRaw(b, s, benchCommits)
				raw += time.Since(start)
				start = time.Now()
				rebuild(b, runners[0])
				one += time.Since(start)
				start = time.Now()
				var wg sync.WaitGroup
				for _, r := range runners {
					wg.Go(func() { rebuild(b, r) })
				}
				wg.Wait()
				many += time.Since(start)
			}
			b.ReportMetric(float64(events)/raw.Seconds(), "raw-events/s")
			b.ReportMetric(float64(events)/one.Seconds(), "one-rebuild-events/s")
			b.ReportMetric(float64(events*n)/many.Seconds(), "many-applied-events/s")
			b.ReportMetric(many.Seconds()/one.Seconds(), "many/one-time")
			b.ReportMetric(raw.Seconds()/one.Seconds(), "one/raw-throughput")
			b.ReportMetric(raw.Seconds()/many.Seconds(), "many/raw-throughput")
		})
	}
}

func waitCaughtUp(b *testing.B, r *tljs.Runner) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.WaitFor(ctx, benchCommits); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkStartShared measures a start without snapshots: n runners
// (trivial projections) replay the whole stream from nothing, each on a
// consumer of its own ("alone") and all on one shared Replay ("shared"),
// alternating with a raw replay of the same stream. shared/raw is the
// issue's "one replay pass ≥ 0.8 of raw replay".
func BenchmarkStartShared(b *testing.B) {
	for _, n := range []int{5, 13} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			s := filledStore(b)
			start := func(round int, mode string, pass *tljs.Replay) time.Duration {
				runners := make([]*tljs.Runner, n)
				for i := range runners {
					name := "tally-" + mode + "-" + strconv.Itoa(round) + "-" + strconv.Itoa(i) // no snapshot to restore
					runners[i] = tljs.NewRunner(s, &namedTally{name: name}, tljs.RunnerOptions{
						SnapshotAfter: 1 << 30, SnapshotEvery: time.Hour, HistoryEvery: -1, Logger: quietLogger, Replay: pass})
				}
				if pass != nil {
					pass.Gathered()
				}
				began := time.Now()
				stops := make([]func() error, n)
				for i, r := range runners {
					stops[i] = startRunner(b, r)
				}
				for _, r := range runners {
					waitCaughtUp(b, r)
				}
				took := time.Since(began)
				for _, stop := range stops {
					_ = stop()
				}
				return took
			}
			b.ResetTimer()
			var raw, alone, shared time.Duration
			events, round := 0, 0
			for ; events < b.N; events += benchCommits {
				began := time.Now()
				replayRaw(b, s, benchCommits)
				raw += time.Since(began)
				alone += start(round, "alone", nil)
				shared += start(round, "shared", tljs.NewReplay(s, quietLogger))
				round++
			}
			b.ReportMetric(float64(events)/raw.Seconds(), "raw-events/s")
			b.ReportMetric(raw.Seconds()/alone.Seconds(), "alone/raw")
			b.ReportMetric(raw.Seconds()/shared.Seconds(), "shared/raw")
			b.ReportMetric(alone.Seconds()/shared.Seconds(), "shared/alone")
		})
	}
}
