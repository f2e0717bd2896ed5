package jetstream_test

import (
	"context"
	"flag"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
)

var memSubjects = flag.Int("mem.subjects", 100_000, "subjects in BenchmarkSubjectMemory")

// BenchmarkSubjectMemory measures what nats-server keeps in memory per
// subject of the events stream, each aggregate being one: the heap of an
// embedded server holding N one-message subjects less that of one holding
// N messages on a single subject (the same bytes stored), over N.
// `go test ./adapters/jetstream -run '^$' -bench SubjectMemory -benchtime 1x -mem.subjects 100000`.
func BenchmarkSubjectMemory(b *testing.B) {
	n := *memSubjects
	for b.Loop() {
		distinct := heapGrowth(b, n, func(i int) string { return "ev.mem.user.s" + strconv.Itoa(i) })
		one := heapGrowth(b, n, func(int) string { return "ev.mem.user.s0" })
		b.ReportMetric(float64(distinct)/float64(n), "B/msg-distinct")
		b.ReportMetric(float64(one)/float64(n), "B/msg-one-subject")
		b.ReportMetric(float64(distinct-one)/float64(n), "B/subject")
	}
}

// heapGrowth publishes n messages on subject(i) to a fresh events stream
// and returns how much the live heap grew, the server still running.
func heapGrowth(b *testing.B, n int, subject func(i int) string) int64 {
	b.Helper()
	ns, nc := natstest.Start(b)
	defer ns.Shutdown()
	defer nc.Close()
	s, err := tljs.Open(context.Background(), nc, tljs.Config{})
	if err != nil {
		b.Fatal(err)
	}
	js := s.JetStream()
	before := liveHeap()
	payload := make([]byte, 300)
	for i := range n {
		if _, err := js.PublishAsync(subject(i), payload, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("publishes not acknowledged in 5 minutes")
	}
	last, err := s.LastPosition(context.Background())
	if err != nil || last != uint64(n) {
		b.Fatalf("stream at %d (%v), want %d", last, err, n)
	}
	return liveHeap() - before
}

func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
