package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/procstatus"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	analyticsv1 "github.com/tideline/tideline/schemas/gen/tideline/analytics/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/analytics/v1/analyticsv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// exportEvents is how many events BenchmarkExport fills the stream with:
// go test ./cmd/tideline -run '^$' -bench Export -benchtime 1x -export.events 1000000
var exportEvents = flag.Int("export.events", 100000, "events BenchmarkExport exports")

// BenchmarkExport fills a server's stream with DangerDetected events, then
// each op reads them all with a raw ordered consumer and exports them
// with `tideline export` as JSON Lines and as Parquet, and subscribes
// from position 1 until caught up. It reports each rate, the exports'
// rates over the raw replay's, and the peak RSS of the export's CLI
// process.
func BenchmarkExport(b *testing.B) {
	f := servertest.Start(b)
	n := *exportEvents
	fillDanger(b, f, n)
	settleProjections(b, f)
	n = int(f.Last(b)) // the reactions append too: every commit is read
	dir := b.TempDir()
	bin := buildTideline(b)
	var raw, jsonl, parquet, catchUp time.Duration
	var rssJSONL, rssParquet int64
	for b.Loop() {
		raw += timed(func() { rawReplay(b, f, n) })
		var rss int64
		jsonl += timed(func() { rss = runExport(b, bin, f, "jsonl", filepath.Join(dir, "e.jsonl")) })
		rssJSONL = max(rssJSONL, rss)
		parquet += timed(func() { rss = runExport(b, bin, f, "parquet", filepath.Join(dir, "pq")) })
		rssParquet = max(rssParquet, rss)
		catchUp += timed(func() { subscribeUntilCaughtUp(b, f, n) })
	}
	ops := float64(b.N)
	rate := func(d time.Duration) float64 { return ops * float64(n) / d.Seconds() }
	b.ReportMetric(rate(raw), "raw-events/s")
	b.ReportMetric(rate(jsonl), "jsonl-events/s")
	b.ReportMetric(rate(parquet), "parquet-events/s")
	b.ReportMetric(rate(catchUp), "catchup-events/s")
	b.ReportMetric(raw.Seconds()/jsonl.Seconds(), "jsonl/raw")
	b.ReportMetric(raw.Seconds()/parquet.Seconds(), "parquet/raw")
	b.ReportMetric(float64(rssJSONL)/1024, "jsonl-cli-peak-rss-MB")
	b.ReportMetric(float64(rssParquet)/1024, "parquet-cli-peak-rss-MB")
}

// BenchmarkSubscribeLatency measures append → received on a live
// subscription, one append at a time: p50 and p99.
func BenchmarkSubscribeLatency(b *testing.B) {
	f := servertest.Start(b)
	c := analyticsv1connect.NewAnalyticsServiceClient(h2cClient(), f.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.Subscribe(ctx, adminRequest(&analyticsv1.SubscribeRequest{Filter: &analyticsv1.EventFilter{Contexts: []string{"safety"}}}, f.Token(b, "bench", auth.Admin)))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for s.Receive() && !s.Msg().CaughtUp {
	}
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		appendDanger(b, f, i)
		for got := 0; got == 0; {
			if !s.Receive() {
				b.Fatal(s.Err())
			}
			got = len(s.Msg().Events)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func appendDanger(tb testing.TB, f *servertest.Server, i int) {
	rider := "r" + strconv.Itoa(i%1000)
	_, err := f.Store.Append(context.Background(), es.StreamID{Context: "safety", Type: "rider", ID: rider}, []proto.Message{&safetyv1.DangerDetected{
		EventId: "e" + strconv.Itoa(i), DeviceId: "d" + rider, RiderId: rider, Kind: safetyv1.DangerKind(1 + i%4),
		Severity: safetyv1.Severity(1 + i%3), PeakAccelG: float64(i%50) / 10, PeakGyroDps: float64(i % 360),
	}}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
	if err != nil {
		tb.Fatal(err)
	}
}

func fillDanger(tb testing.TB, f *servertest.Server, n int) {
	const writers = 64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				appendDanger(tb, f, i)
			}
		})
	}
	wg.Wait()
}

// settleProjections waits until every projection has caught up with the stream, so
// the measurements do not share the machine with them.
func settleProjections(tb testing.TB, f *servertest.Server) {
	admin := adminv1connect.NewAdminServiceClient(http.DefaultClient, f.URL)
	tok := f.Token(tb, "bench", auth.Admin)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		res, err := admin.ListProjections(context.Background(), adminRequest(&adminv1.ListProjectionsRequest{}, tok))
		if err != nil {
			tb.Fatal(err)
		}
		behind := false
		for _, p := range res.Msg.Projections {
			behind = behind || p.Lag > 0
		}
		if !behind {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatal("projections still behind after 5 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func rawReplay(tb testing.TB, f *servertest.Server, n int) {
	cons, err := f.Store.JetStream().OrderedConsumer(context.Background(), f.Store.StreamName(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	read := 0
	cc, err := cons.Consume(func(jetstream.Msg) {
		if read++; read == n {
			close(done)
		}
	}, jetstream.PullMaxMessages(2048))
	if err != nil {
		tb.Fatal(err)
	}
	defer cc.Stop()
	<-done
}

// runExport runs `tideline export` (bin) as its own process and returns
// its peak RSS in KiB: its VmHWM, read until it exits. (Its rusage's
// maxrss would count the test process it was forked from.)
func runExport(tb testing.TB, bin string, f *servertest.Server, format, out string) int64 {
	cmd := exec.Command(bin, "export", "--server", f.URL, "--data", f.Config.DataDir, "--format", format, "--out", out)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var hwm int64
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if b, err := procstatus.Bytes(cmd.Process.Pid, "VmHWM"); err == nil {
			hwm = max(hwm, b>>10)
		}
		select {
		case err := <-done:
			if err != nil {
				tb.Fatalf("export: %v\n%s", err, stderr.String())
			}
			return hwm
		case <-t.C:
		}
	}
}

func subscribeUntilCaughtUp(tb testing.TB, f *servertest.Server, n int) {
	c := analyticsv1connect.NewAnalyticsServiceClient(h2cClient(), f.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.Subscribe(ctx, adminRequest(&analyticsv1.SubscribeRequest{}, f.Token(tb, "bench", auth.Admin)))
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	got := 0
	for s.Receive() {
		got += len(s.Msg().Events)
		if s.Msg().CaughtUp {
			break
		}
	}
	if got != n {
		tb.Fatalf("caught up after %d of %d events: %v", got, n, s.Err())
	}
}
