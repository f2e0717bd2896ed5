package api_test

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/internal/poll"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

var (
	manyWatchers = flag.Int("many.watchers", 10000, "live streams BenchmarkWritesUnderManyWatchers opens")
	manyRate     = flag.Int("many.rate", 1000, "writes a second BenchmarkWritesUnderManyWatchers sends")
	manyTime     = flag.Duration("many.time", 10*time.Second, "how long each phase of BenchmarkWritesUnderManyWatchers writes")
)

// BenchmarkWritesUnderManyWatchers: RecordSteps sent at a fixed rate
// (-many.rate, 1,000 a second, 64 callers) for -many.time, first with no
// live stream open, then with -many.watchers (10,000, the server's
// default limit) open and reading: half WatchLeaderboard of today (each
// walker's own, so as many distinct queries), half StreamSteps of 8 of
// the 64 users written. Every write changes answers. A write's latency is
// counted from when it was due, so a server falling behind shows. It
// reports each phase's write p50 and p99, the rate achieved, the
// process's CPU per write (server, watchers' clients and writers
// together), and the updates the watchers received while the writes ran:
//
//	go test ./api/ -run '^$' -bench WritesUnderManyWatchers -benchtime 1x
func BenchmarkWritesUnderManyWatchers(b *testing.B) {
	for range b.N {
		f := start(b)
		ctx, cancel := context.WithCancel(context.Background())
		writer := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
		tok := f.Token(b, "shop", auth.Service)
		var k atomic.Int32
		phase := func(name string) (p50, p99 time.Duration, rate, cpuPerWrite float64) {
			n := int(manyTime.Seconds() * float64(*manyRate))
			interval := time.Second / time.Duration(*manyRate)
			due := make(chan time.Time, n)
			lat := make([]time.Duration, n)
			var next atomic.Int64
			var wg sync.WaitGroup
			cpu, t0 := cpuTime(b), time.Now()
			for range 64 {
				wg.Go(func() {
					for d := range due {
						if w := time.Until(d); w > 0 {
							time.Sleep(w) // pacing: the write is due then
						}
						i := k.Add(1)
						req := withToken(&stepsv1.RecordStepsRequest{UserId: fmt.Sprintf("w%d", i%64), Date: today(), Steps: i % 200000}, tok)
						if _, err := writer.RecordSteps(ctx, req); err != nil {
							b.Error(err)
							return
						}
						lat[next.Add(1)-1] = time.Since(d)
					}
				})
			}
			for i := range n {
				due <- t0.Add(time.Duration(i) * interval)
			}
			close(due)
			wg.Wait()
			took, spent := time.Since(t0), cpuTime(b)-cpu
			done := lat[:next.Load()]
			b.Logf("%s: %d writes in %v", name, len(done), took.Round(time.Millisecond))
			return percentile(done, 0.5), percentile(done, 0.99), float64(len(done)) / took.Seconds(), spent.Seconds() / float64(len(done)) * 1e3
		}
		p50a, p99a, ratea, cpua := phase("no watchers")

		// The watchers, over the server's HTTP/2 connections (100 streams
		// each: the client opens as many as it needs).
		users := make([]string, 8)
		for i := range users {
			users[i] = fmt.Sprintf("w%d", i*8)
		}
		got := make([]atomic.Int64, *manyWatchers)
		var open sync.WaitGroup
		for i := range *manyWatchers {
			wtok := f.Token(b, fmt.Sprintf("watcher-%d", i), auth.Walker)
			open.Go(func() {
				var s stream
				if i%2 == 0 {
					ls, err := stepsv1connect.NewStepsServiceClient(h2c, f.URL).WatchLeaderboard(ctx, withToken(&stepsv1.WatchLeaderboardRequest{Date: today(), Limit: 10}, wtok))
					if err != nil {
						b.Error(err)
						return
					}
					s = ls
				} else {
					ss, err := stepconnect.NewStepServiceClient(h2c, f.URL).StreamSteps(ctx, withToken(&steppb.GetStepsByUuidsInput{UserIds: users, Date: today()}, wtok))
					if err != nil {
						b.Error(err)
						return
					}
					s = ss
				}
				go func() {
					for s.Receive() {
						got[i].Add(1)
					}
				}()
			})
		}
		open.Wait()
		if !poll.Within(60*time.Second, func() bool { return f.API().LiveStreams() == int64(*manyWatchers) }) {
			b.Fatalf("%d live streams open, want %d", f.API().LiveStreams(), *manyWatchers)
		}
		if !poll.Within(60*time.Second, func() bool {
			for i := range got {
				if got[i].Load() == 0 {
					return false
				}
			}
			return true
		}) {
			b.Fatal("not every watcher has its first answer after 60 s")
		}
		before := make([]int64, len(got))
		for i := range got {
			before[i] = got[i].Load()
		}
		p50b, p99b, rateb, cpub := phase(fmt.Sprintf("%d watchers", *manyWatchers))
		// Leaderboard watchers get one message per update; StreamSteps
		// watchers one per user whose count changed.
		var updates, counts []int64
		for i := range got {
			if i%2 == 0 {
				updates = append(updates, got[i].Load()-before[i])
			} else {
				counts = append(counts, got[i].Load()-before[i])
			}
		}
		slices.Sort(updates)
		slices.Sort(counts)
		if f.API().LiveStreams() != int64(*manyWatchers) {
			b.Errorf("%d of %d live streams still open after the writes", f.API().LiveStreams(), *manyWatchers)
		}
		b.Logf("no watchers: p50 %v, p99 %v, %.0f writes/s, %.2f ms CPU per write", p50a, p99a, ratea, cpua)
		b.Logf("%d watchers: p50 %v, p99 %v, %.0f writes/s, %.2f ms CPU per write", *manyWatchers, p50b, p99b, rateb, cpub)
		b.Logf("during the writes, each leaderboard watcher got min %d, median %d, max %d updates; each StreamSteps watcher min %d, median %d, max %d counts",
			updates[0], updates[len(updates)/2], updates[len(updates)-1], counts[0], counts[len(counts)/2], counts[len(counts)-1])
		b.ReportMetric(float64(p50a.Microseconds())/1e3, "p50-ms-0-watchers")
		b.ReportMetric(float64(p99a.Microseconds())/1e3, "p99-ms-0-watchers")
		b.ReportMetric(float64(p50b.Microseconds())/1e3, "p50-ms-watchers")
		b.ReportMetric(float64(p99b.Microseconds())/1e3, "p99-ms-watchers")
		b.ReportMetric(rateb/ratea, "rate-ratio")
		b.ReportMetric(float64(updates[len(updates)/2]), "leaderboard-updates")
		b.ReportMetric(0, "ns/op")
		cancel()
	}
}
