package api_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/internal/poll"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// stalledClient is an HTTP/2 client on its own connection whose streams
// accept window bytes each before the server must wait for the reader,
// as a phone's client with a stalled UI thread would.
func stalledClient(window int) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p, HTTP2: &http.HTTP2Config{
		MaxReceiveBufferPerStream:     window,
		MaxReceiveBufferPerConnection: max(window, 64<<10),
	}}}
}

// stream is a live stream as a client reads it.
type stream interface {
	Receive() bool
	Err() error
}

// stallWatchers opens n live streams (WatchLeaderboard and StreamSteps in
// turn, of date), each on its own connection, that never read. Closing
// ctx ends them.
func stallWatchers(tb testing.TB, ctx context.Context, f *servertest.Server, n, window int, date string) []stream {
	tb.Helper()
	users := make([]string, 64)
	for i := range users {
		users[i] = fmt.Sprintf("w%d", i)
	}
	var out []stream
	for i := range n {
		hc := stalledClient(window)
		tok := f.Token(tb, fmt.Sprintf("watcher-%d", i), auth.Walker)
		if i%2 == 0 {
			s, err := stepsv1connect.NewStepsServiceClient(hc, f.URL).WatchLeaderboard(ctx, withToken(&stepsv1.WatchLeaderboardRequest{Date: date, Limit: 100}, tok))
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, s)
			continue
		}
		s, err := stepconnect.NewStepServiceClient(hc, f.URL).StreamSteps(ctx, withToken(&steppb.GetStepsByUuidsInput{UserIds: users, Date: date}, tok))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

var (
	benchWatchers  = flag.Int("watchers.n", 100, "live streams BenchmarkRecordStepsWithWatchers opens")
	benchYesterday = flag.Bool("watchers.yesterday", false, "BenchmarkRecordStepsWithWatchers' streams watch yesterday, which the writes do not change")
)

// BenchmarkRecordStepsWithWatchers measures RecordSteps throughput (64
// callers, each write changing the leaderboard) on a server without live
// streams and on one with -watchers.n (100) whose clients never read (1
// MiB windows, so they stay open through the run), half watching the
// leaderboard, half users' counts (of today, which every write changes,
// or with -watchers.yesterday of yesterday, which none does). The two servers take turns, 500
// writes at a time, so both see the same machine load; the ratio metric
// is the throughput with watchers over without:
//
//	go test ./api/ -run '^$' -bench RecordStepsWithWatchers -benchtime 20000x -count 3 -args -watchers.n=500
func BenchmarkRecordStepsWithWatchers(b *testing.B) {
	const chunk = 500
	type side struct {
		c       stepsv1connect.StepsServiceClient
		tok     string
		n       int
		elapsed time.Duration
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sides []*side
	for _, watchers := range []int{0, *benchWatchers} {
		f := start(b)
		date := today()
		if *benchYesterday {
			date = time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02")
		}
		stallWatchers(b, ctx, f, watchers, 1<<20, date)
		sides = append(sides, &side{c: stepsv1connect.NewStepsServiceClient(h2c, f.URL), tok: f.Token(b, "shop", auth.Service)})
	}
	var k atomic.Int32
	write := func(s *side, n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range 64 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					req := withToken(&stepsv1.RecordStepsRequest{UserId: fmt.Sprintf("w%d", w), Date: today(), Steps: k.Add(1) % 200000}, s.tok)
					if _, err := s.c.RecordSteps(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		s.elapsed += time.Since(t0)
		s.n += n
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		for _, s := range sides {
			write(s, min(chunk, b.N-done))
		}
	}
	b.StopTimer()
	rate := func(s *side) float64 { return float64(s.n) / s.elapsed.Seconds() }
	b.ReportMetric(rate(sides[0]), "req/s-0-watchers")
	b.ReportMetric(rate(sides[1]), "req/s-watchers")
	b.ReportMetric(rate(sides[1])/rate(sides[0]), "ratio")
	b.ReportMetric(0, "ns/op")
}

// TestStalledWatchersDoNotStallWrites opens 100 live streams whose
// clients never read and keeps recording steps until the server has
// dropped every one of them (its Sends blocked past SendTimeout). Every
// write completes within a bound, the heap stays bounded, and each
// watcher's stream, once read, ends with an error instead of hanging.
func TestStalledWatchersDoNotStallWrites(t *testing.T) {
	const sendTimeout = time.Second
	f := start(t, servertest.API(func(d *api.Config) { d.SendTimeout = sendTimeout }))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peak := heapPeak(t)
	watchers := stallWatchers(t, ctx, f, 100, 16<<10, today())
	if !poll.Within(5*time.Second, func() bool { return f.API().LiveStreams() == 100 }) {
		t.Fatalf("%d live streams open, want 100", f.API().LiveStreams())
	}

	c := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	tok := f.Token(t, "shop", auth.Service)
	var writes, slowest atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for k := int32(1); ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				_, err := c.RecordSteps(wctx, withToken(&stepsv1.RecordStepsRequest{UserId: fmt.Sprintf("w%d", (w*4+int(k))%64), Date: today(), Steps: k}, tok))
				wcancel()
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
				writes.Add(1)
				for d := time.Since(t0).Nanoseconds(); ; {
					if s := slowest.Load(); d <= s || slowest.CompareAndSwap(s, d) {
						break
					}
				}
			}
		})
	}
	dropped := poll.Within(30*time.Second, func() bool { return f.API().LiveStreams() == 0 })
	close(stop)
	wg.Wait()
	t.Logf("%d writes while 100 watchers stalled; slowest %v; %d still open", writes.Load(), time.Duration(slowest.Load()), f.API().LiveStreams())
	if !dropped {
		t.Fatalf("%d of 100 stalled watchers still open after 30 s of writes", f.API().LiveStreams())
	}
	if slowest.Load() > int64(5*time.Second) {
		t.Errorf("a write took %v with stalled watchers", time.Duration(slowest.Load()))
	}
	// Each stalled client, reading at last, gets what was buffered and
	// then the end of its stream, an error.
	ended := make(chan error, len(watchers))
	for _, w := range watchers {
		go func() {
			for w.Receive() {
			}
			ended <- w.Err()
		}()
	}
	timeout := time.After(10 * time.Second)
	for range watchers {
		select {
		case err := <-ended:
			if err == nil {
				t.Error("a dropped watcher's stream ended without an error")
			}
		case <-timeout:
			t.Fatal("a watcher's stream did not end: it was not dropped")
		}
	}
	if grown := peak(); grown > 64<<20 {
		t.Errorf("heap grew by %.1f MiB, want < 64 MiB", float64(grown)/(1<<20))
	}
}
