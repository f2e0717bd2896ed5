package jetstream_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
)

// startLimited returns an in-process connection to a server alone whose
// JetStream may store at most maxStore bytes.
func startLimited(tb testing.TB, maxStore int64) *nats.Conn {
	tb.Helper()
	s, err := nserver.NewServer(&nserver.Options{ServerName: "limited", DontListen: true, NoSigs: true,
		JetStream: true, StoreDir: tb.TempDir(), JetStreamMaxStore: maxStore})
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats not ready")
	}
	tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// fill creates stream name on js with n messages of size bytes.
func fill(tb testing.TB, js jetstream.JetStream, name string, n, size int) {
	tb.Helper()
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{strings.ToLower(name) + ".>"}}); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, fmt.Sprintf("%s.%d", strings.ToLower(name), i), bytes.Repeat([]byte{'x'}, size)); err != nil {
			tb.Fatal(err)
		}
	}
}

func streamNames(tb testing.TB, js jetstream.JetStream) []string {
	tb.Helper()
	var names []string
	l := js.StreamNames(context.Background())
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		tb.Fatal(err)
	}
	return names
}

// CopyStreams leaves the target as it found it when it refuses (a stream
// of that name is there) and when a copy fails half-way (the target's
// disk allowance is too small for the second stream).
func TestCopyStreamsCopiesAllOrNothing(t *testing.T) {
	ctx := context.Background()
	_, src := natstest.Start(t)
	sjs, err := jetstream.New(src)
	if err != nil {
		t.Fatal(err)
	}
	fill(t, sjs, "AAA", 10, 100)
	fill(t, sjs, "ZZZ", 200, 10_000)

	t.Run("target_has_a_stream", func(t *testing.T) {
		_, dst := natstest.Start(t)
		djs, _ := jetstream.New(dst)
		fill(t, djs, "ZZZ", 1, 1)
		_, err := tljs.CopyStreams(ctx, src, dst, 1, nil)
		if es.KindOf(err) != es.FailedPrecondition || !strings.Contains(err.Error(), "already has stream ZZZ") {
			t.Fatalf("copy: %v, want FailedPrecondition naming ZZZ", err)
		}
		if got := streamNames(t, djs); fmt.Sprint(got) != "[ZZZ]" {
			t.Errorf("target's streams after the refusal: %v, want [ZZZ]", got)
		}
	})
	t.Run("copy_fails_half_way", func(t *testing.T) {
		dst := startLimited(t, 1<<20)
		djs, _ := jetstream.New(dst)
		copied, err := tljs.CopyStreams(ctx, src, dst, 1, nil)
		if err == nil || !strings.Contains(err.Error(), "copy stream ZZZ") {
			t.Fatalf("copy into 1 MiB: %v, %v; want ZZZ's copy to fail", copied, err)
		}
		if got := streamNames(t, djs); len(got) != 0 {
			t.Errorf("target's streams after the failed copy: %v, want none", got)
		}
	})
	t.Run("copies", func(t *testing.T) {
		_, dst := natstest.Start(t)
		copied, err := tljs.CopyStreams(ctx, src, dst, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%s %d %d-%d, %s %d %d-%d", copied[0].Name, copied[0].Msgs, copied[0].FirstSeq, copied[0].LastSeq,
			copied[1].Name, copied[1].Msgs, copied[1].FirstSeq, copied[1].LastSeq); got != "AAA 10 1-10, ZZZ 200 1-200" {
			t.Errorf("copied %s", got)
		}
	})
}
