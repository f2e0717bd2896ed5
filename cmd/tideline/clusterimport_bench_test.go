package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	nserver "github.com/nats-io/nats-server/v2/server"
	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/es/estest"
)

// BenchmarkClusterImport copies a store of TIDELINE_IMPORT_EVENTS (default
// 100 000) steps commits into a server alone (one replica) and into a
// three-node cluster (three replicas, raised and caught up), through
// 'tideline cluster-import', beside the rate the store was written at
// (16 writers appending). Run it with -benchtime 1x.
func BenchmarkClusterImport(b *testing.B) {
	events := 100_000
	if v := os.Getenv("TIDELINE_IMPORT_EVENTS"); v != "" {
		var err error
		if events, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	start := time.Now()
	writeStore(b, dir, events)
	written := float64(events) / time.Since(start).Seconds() // the baseline: appends from 16 writers
	b.Run("alone", func(b *testing.B) {
		benchImport(b, dir, events, written, func(b *testing.B) string {
			s, err := nserver.NewServer(&nserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, JetStream: true, StoreDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			go s.Start()
			if !s.ReadyForConnections(10 * time.Second) {
				b.Fatal("nats not ready")
			}
			b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
			return s.ClientURL()
		})
	})
	b.Run("cluster3", func(b *testing.B) {
		benchImport(b, dir, events, written, func(b *testing.B) string { return startNATSCluster(b, 3) })
	})
}

func benchImport(b *testing.B, dir string, events int, written float64, target func(*testing.B) string) {
	var took time.Duration
	var out bytes.Buffer
	for range b.N {
		b.StopTimer()
		url := target(b)
		out.Reset()
		b.StartTimer()
		start := time.Now()
		if err := run(context.Background(), []string{"cluster-import", "--data", dir, "--nats-url", url}, &out, &out); err != nil {
			b.Fatalf("import: %v\n%s", err, out.String())
		}
		took += time.Since(start)
	}
	b.Log("\n" + out.String())
	size, err := dirSize(filepath.Join(dir, "jetstream"))
	if err != nil {
		b.Fatal(err)
	}
	secs := took.Seconds() / float64(b.N)
	b.ReportMetric(float64(events)/secs, "events/s")
	b.ReportMetric(float64(size)/1e6/secs, "MB/s")
	b.ReportMetric(secs, "s/import")
	b.ReportMetric(written, "written-events/s")
}

// writeStore writes events steps commits from 16 writers into a store a
// server alone keeps in dir, as 'tideline serve --data dir' would.
func writeStore(tb testing.TB, dir string, events int) {
	tb.Helper()
	ns, err := natsserver.Start(natsserver.Config{StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := natsserver.Connect(ns, "writer")
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	s, err := tljs.Open(ctx, nc, tljs.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	const writers = 16
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			stream := estest.NewStream(tb)
			msg := []proto.Message{estest.Steps(fmt.Sprintf("walker-%d", w), 1000)}
			for i := w; i < events; i += writers {
				if _, err := s.Append(ctx, stream, msg, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	return n, err
}
