//go:build unix

package servertest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/adapters/opentelemetry"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// BenchmarkRecordStepsTracing measures RecordSteps (64 callers over
// HTTP/2) on a server with tracing off and on one that traces every call
// (sample 1: the RPC, append and apply spans) and exports to a local
// OTLP receiver that discards what it gets. The two servers take turns,
// 500 writes at a time, alternating which goes first, each turn lasting
// until its steps read model has applied its writes; so both see the same
// machine load. Metrics: each side's throughput and the process's CPU
// time per write during its turns (user + system; the CPU figure holds
// better than throughput on a machine other work loads), and the ratios
// on over off:
//
//	go test ./cmd/tideline/server/servertest/ -run '^$' -bench RecordStepsTracing -benchtime 4000x -count 3
func BenchmarkRecordStepsTracing(b *testing.B) {
	const chunk = 500
	var received atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received.Add(n)
	}))
	b.Cleanup(sink.Close)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p}}
	b.Cleanup(hc.CloseIdleConnections)
	type side struct {
		s        *servertest.Server
		c        stepsv1connect.StepsServiceClient
		tok      string
		n        int
		elapsed  time.Duration
		cpu      time.Duration
		lastSeen atomic.Uint64
	}
	var sides []*side
	for _, traced := range []bool{false, true} {
		var opts []servertest.Option
		if traced {
			opts = append(opts, func(m *server.Main) { m.Config.Tracing = opentelemetry.Config{Endpoint: sink.URL, SampleRatio: 1} })
		}
		s := servertest.Start(b, opts...)
		sides = append(sides, &side{s: s, c: stepsv1connect.NewStepsServiceClient(hc, s.URL), tok: s.Token(b, "shop", auth.Service)})
	}
	ctx := context.Background()
	date := time.Now().UTC().Format(time.DateOnly)
	var k atomic.Int32
	write := func(s *side, n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		cpu0, t0 := cpuTime(b), time.Now()
		for w := range 64 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					req := connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: fmt.Sprintf("w%d", w), Date: date, Steps: k.Add(1) % 200000})
					req.Header().Set("Authorization", "Bearer "+s.tok)
					res, err := s.c.RecordSteps(ctx, req)
					if err != nil {
						b.Error(err)
						return
					}
					for seen := s.lastSeen.Load(); res.Msg.Position > seen && !s.lastSeen.CompareAndSwap(seen, res.Msg.Position); seen = s.lastSeen.Load() {
					}
				}
			})
		}
		wg.Wait()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.s.Runner(stepsmodel.Name).WaitFor(wctx, s.lastSeen.Load()); err != nil {
			b.Fatal(err)
		}
		s.elapsed += time.Since(t0)
		s.cpu += cpuTime(b) - cpu0
		s.n += n
	}
	b.ResetTimer()
	for i, done := 0, 0; done < b.N; i, done = i+1, done+chunk {
		first, second := sides[0], sides[1]
		if i%2 == 1 {
			first, second = second, first
		}
		write(first, min(chunk, b.N-done))
		write(second, min(chunk, b.N-done))
	}
	b.StopTimer()
	rate := func(s *side) float64 { return float64(s.n) / s.elapsed.Seconds() }
	cpuPer := func(s *side) float64 { return float64(s.cpu.Microseconds()) / float64(s.n) }
	b.ReportMetric(rate(sides[0]), "req/s-off")
	b.ReportMetric(rate(sides[1]), "req/s-on")
	b.ReportMetric(rate(sides[1])/rate(sides[0]), "ratio")
	b.ReportMetric(cpuPer(sides[0]), "cpu-µs/req-off")
	b.ReportMetric(cpuPer(sides[1]), "cpu-µs/req-on")
	b.ReportMetric(cpuPer(sides[1])/cpuPer(sides[0]), "cpu-ratio")
	b.ReportMetric(0, "ns/op")
	if received.Load() == 0 && b.N >= 2000 {
		b.Log("the traced server exported nothing yet (batches leave every 5 s)")
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
