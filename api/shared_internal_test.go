package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
)

// TestSharedEncodingIsTheMessages checks that a shared message is sent as
// its own encoding and gzip, the gzip computed once for every stream, and
// that messages not shared are encoded as usual.
func TestSharedEncodingIsTheMessages(t *testing.T) {
	enc := newSharedEncodings()
	codec := sharedCodec{enc}
	msg := &dashboardv1.WatchDashboardResponse{Dashboard: &dashboardv1.Dashboard{Position: 7, TimeZone: "Asia/Seoul", Date: "2026-12-02"}}
	other := &dashboardv1.WatchDashboardResponse{Dashboard: &dashboardv1.Dashboard{Position: 8}}
	if err := enc.share(msg); err != nil {
		t.Fatal(err)
	}
	gzipOf := func(raw []byte) []byte {
		t.Helper()
		c := &sharedGzip{shared: enc}
		var out bytes.Buffer
		c.Reset(&out)
		if _, err := bytes.NewBuffer(raw).WriteTo(c); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := gzip.NewReader(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		back, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, raw) {
			t.Fatalf("gzip round trip gives %d bytes, want %d", len(back), len(raw))
		}
		return out.Bytes()
	}
	for _, m := range []*dashboardv1.WatchDashboardResponse{msg, other} {
		raw, err := codec.MarshalAppend([]byte("prefix"), m)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := proto.Marshal(m)
		if !bytes.Equal(raw, append([]byte("prefix"), want...)) {
			t.Fatalf("codec encodes %v as %x, want %x", m, raw, want)
		}
		gzipOf(want)
	}
	raw, _ := proto.Marshal(msg)
	if shared := enc.ofRaw(raw); shared == nil || shared.gz == nil {
		t.Fatal("the shared message's gzip was not kept")
	}
	kept := enc.ofRaw(raw).gz
	if again := gzipOf(raw); !bytes.Equal(again, kept) {
		t.Fatal("the shared message was compressed again")
	}
	enc.unshare(msg)
	if enc.ofMsg(msg) != nil || enc.ofRaw(raw) != nil || len(enc.byMsg) != 0 || len(enc.byHash) != 0 {
		t.Fatal("unshare left the message shared")
	}
}

// feedAt is a read model standing at a position.
type feedAt struct{ pos atomic.Uint64 }

func (f *feedAt) Position() uint64                      { return f.pos.Load() }
func (f *feedAt) WaitFor(context.Context, uint64) error { return nil }
func (f *feedAt) Advanced() <-chan struct{}             { return nil }

// TestWatchersShareOneAnswer has many watchers of one query ask for the
// dashboard together: it is computed once per position and hour, and its
// version moves only when a figure changes.
func TestWatchersShareOneAnswer(t *testing.T) {
	enc := newSharedEncodings()
	feed := &feedAt{}
	var computed atomic.Int32
	placed := atomic.Int32{}
	compute := func(now time.Time) *dashboardv1.Dashboard {
		computed.Add(1)
		return &dashboardv1.Dashboard{Position: feed.Position(), Board: &dashboardv1.Board{Placed: placed.Load()}}
	}
	w := &watchedDashboard{}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	ask := func(now time.Time) uint64 {
		t.Helper()
		var wg sync.WaitGroup
		versions := make([]uint64, 100)
		msgs := make([]*dashboardv1.WatchDashboardResponse, 100)
		for i := range versions {
			wg.Go(func() { msgs[i], versions[i] = w.latest(enc, feed, now, compute) })
		}
		wg.Wait()
		for i := range msgs {
			if msgs[i] != msgs[0] || versions[i] != versions[0] {
				t.Fatalf("watcher %d got another answer", i)
			}
		}
		if enc.ofMsg(msgs[0]) == nil || len(enc.byMsg) != 1 {
			t.Fatalf("%d answers shared, want the latest only", len(enc.byMsg))
		}
		return versions[0]
	}
	steps := []struct {
		name          string
		advance, more bool
		later         time.Duration
		computed      int32
		version       uint64
	}{
		{"first", false, false, 0, 1, 1},
		{"same_position_same_hour", false, false, 30 * time.Minute, 1, 1},
		{"event_changing_nothing", true, false, 30 * time.Minute, 2, 1},
		{"event_changing_a_figure", true, true, 30 * time.Minute, 3, 2},
		{"next_hour", false, false, time.Hour, 4, 2},
	}
	for _, s := range steps {
		if s.advance {
			feed.pos.Add(1)
		}
		if s.more {
			placed.Add(1)
		}
		if v := ask(now.Add(s.later)); v != s.version || computed.Load() != s.computed {
			t.Fatalf("%s: version %d after %d computations, want %d after %d", s.name, v, computed.Load(), s.version, s.computed)
		}
	}
}
