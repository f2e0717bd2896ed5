package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/es/estest"
	"github.com/tideline/tideline/wire"
)

func TestStoreContract(t *testing.T) {
	estest.Run(t, func(t *testing.T) es.Store { return openStore(t, tljs.Config{}) })
}

func openStore(tb testing.TB, cfg tljs.Config) *tljs.Store {
	tb.Helper()
	_, nc := natstest.Start(tb)
	s, err := tljs.Open(context.Background(), nc, cfg)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	return s
}

func TestOpenProvisionsEventsStream(t *testing.T) {
	cases := []struct {
		name       string
		cfg        tljs.Config
		wantName   string
		wantWindow time.Duration
	}{
		{"defaults", tljs.Config{}, "EVENTS", 2 * time.Minute},
		{"custom_name_and_window", tljs.Config{Stream: "EV2", DuplicateWindow: 10 * time.Second}, "EV2", 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, tc.cfg)
			if s.StreamName() != tc.wantName {
				t.Errorf("StreamName() = %q, want %q", s.StreamName(), tc.wantName)
			}
			st, err := s.JetStream().Stream(context.Background(), tc.wantName)
			if err != nil {
				t.Fatalf("stream %s: %v", tc.wantName, err)
			}
			cfg := st.CachedInfo().Config
			if len(cfg.Subjects) != 1 || cfg.Subjects[0] != "ev.>" {
				t.Errorf("subjects %v, want [ev.>]", cfg.Subjects)
			}
			if cfg.Storage != jetstream.FileStorage {
				t.Errorf("storage %v, want file", cfg.Storage)
			}
			if cfg.Retention != jetstream.LimitsPolicy || cfg.MaxMsgs != -1 || cfg.MaxBytes != -1 || cfg.MaxAge != 0 || cfg.MaxMsgsPerSubject > 0 {
				t.Errorf("limits retention %v msgs %d bytes %d age %v per-subject %d: events must never be discarded",
					cfg.Retention, cfg.MaxMsgs, cfg.MaxBytes, cfg.MaxAge, cfg.MaxMsgsPerSubject)
			}
			if !cfg.AllowDirect || !cfg.DenyDelete || !cfg.DenyPurge {
				t.Errorf("AllowDirect %v DenyDelete %v DenyPurge %v, want all true", cfg.AllowDirect, cfg.DenyDelete, cfg.DenyPurge)
			}
			if cfg.Duplicates != tc.wantWindow {
				t.Errorf("duplicate window %v, want %v", cfg.Duplicates, tc.wantWindow)
			}
			if cfg.Replicas != 1 {
				t.Errorf("replicas %d, want 1", cfg.Replicas)
			}
		})
	}
}

func TestOpenIsIdempotentAndUpdatesWindow(t *testing.T) {
	_, nc := natstest.Start(t)
	ctx := context.Background()
	first, err := tljs.Open(ctx, nc, tljs.Config{})
	if err != nil {
		t.Fatalf("first open: %v", err)
	}
	stream := estest.NewStream(t)
	res := estest.MustAppend(t, first, stream, es.AppendOptions{ExpectedVersion: es.AnyVersion}, estest.Steps("alice", 1))
	second, err := tljs.Open(ctx, nc, tljs.Config{DuplicateWindow: 30 * time.Second})
	if err != nil {
		t.Fatalf("second open: %v", err)
	}
	st, err := second.JetStream().Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if w := st.CachedInfo().Config.Duplicates; w != 30*time.Second {
		t.Errorf("duplicate window after reopen %v, want 30s", w)
	}
	commits, _ := estest.MustLoad(t, second, stream, 0)
	if len(commits) != 1 || commits[0].Seq != res.Position.Seq {
		t.Errorf("after reopen the stream holds %d commits, want the one at %d", len(commits), res.Position.Seq)
	}
}

func TestEventsCannotBeDeletedOrPurged(t *testing.T) {
	s := openStore(t, tljs.Config{})
	ctx := context.Background()
	stream := estest.NewStream(t)
	res := estest.MustAppend(t, s, stream, es.AppendOptions{ExpectedVersion: es.AnyVersion}, estest.Steps("alice", 1))
	st, err := s.JetStream().Stream(ctx, s.StreamName())
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if err := st.DeleteMsg(ctx, res.Position.Seq); err == nil {
		t.Errorf("DeleteMsg succeeded, want it denied")
	}
	if err := st.Purge(ctx); err == nil {
		t.Errorf("Purge succeeded, want it denied")
	}
	commits, _ := estest.MustLoad(t, s, stream, 0)
	if len(commits) != 1 {
		t.Errorf("stream holds %d commits, want 1", len(commits))
	}
}

func TestCommitHeaders(t *testing.T) {
	s := openStore(t, tljs.Config{})
	ctx := context.Background()
	stream := estest.NewStream(t)
	opts := es.AppendOptions{ExpectedVersion: 0, IdempotencyKey: "k1",
		Meta: es.Metadata{CorrelationID: "c", CausationID: "d", Actor: "walker:alice", Source: "edge:phone"}}
	res := estest.MustAppend(t, s, stream, opts, estest.Steps("alice", 1), estest.Steps("alice", 2))
	st, err := s.JetStream().Stream(ctx, s.StreamName())
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	m, err := st.GetMsg(ctx, res.Position.Seq)
	if err != nil {
		t.Fatalf("get msg: %v", err)
	}
	if m.Subject != "ev.estest.walker."+stream.ID {
		t.Errorf("subject %q, want ev.<context>.<type>.<id>", m.Subject)
	}
	want := map[string]string{
		wire.HeaderEventTypes:    "tideline.steps.v1.StepsRecorded,tideline.steps.v1.StepsRecorded",
		wire.HeaderCorrelationID: "c",
		wire.HeaderCausationID:   "d",
		wire.HeaderActor:         "walker:alice",
		wire.HeaderSource:        "edge:phone",
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	// Dedup is stream-wide in JetStream: the key is scoped to the subject.
	if got, want := m.Header.Get(jetstream.MsgIDHeader), m.Subject+"/k1"; got != want {
		t.Errorf("header %s = %q, want %q", jetstream.MsgIDHeader, got, want)
	}
	c, err := wire.DecodeCommit(stream, m.Sequence, m.Header, m.Data)
	if err != nil {
		t.Fatalf("decode commit: %v", err)
	}
	if len(c.Events) != 2 || !proto.Equal(c.Events[1].Data, estest.Steps("alice", 2)) || c.Events[0].Meta != opts.Meta {
		t.Errorf("decoded commit %+v, want both events with metadata", c)
	}
}

func TestDataSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	stream := estest.NewStream(t)

	start := func() (*tljs.Store, func()) {
		t.Helper()
		srv, err := natsserver.Start(natsserver.Config{StoreDir: dir, Name: "restart"})
		if err != nil {
			t.Fatalf("start server: %v", err)
		}
		nc, err := natsserver.Connect(srv, t.Name())
		if err != nil {
			srv.Shutdown()
			t.Fatalf("connect: %v", err)
		}
		stop := func() {
			nc.Close()
			srv.Shutdown()
			srv.WaitForShutdown()
		}
		s, err := tljs.Open(ctx, nc, tljs.Config{})
		if err != nil {
			stop()
			t.Fatalf("open store: %v", err)
		}
		return s, stop
	}

	s, stop := start()
	var seqs []uint64
	version := int64(0)
	for i := range 3 {
		res := estest.MustAppend(t, s, stream, es.AppendOptions{ExpectedVersion: version}, estest.Steps("alice", int32(i)))
		seqs = append(seqs, res.Position.Seq)
		version = int64(res.Position.Seq)
	}
	stop()

	s, stop = start()
	defer stop()
	commits, v := estest.MustLoad(t, s, stream, 0)
	if len(commits) != 3 || v != seqs[2] {
		t.Fatalf("after restart: %d commits at version %d, want 3 at %d", len(commits), v, seqs[2])
	}
	for i, c := range commits {
		if c.Seq != seqs[i] || !proto.Equal(c.Events[0].Data, estest.Steps("alice", int32(i))) {
			t.Errorf("commit %d = seq %d data %v, want seq %d steps %d", i, c.Seq, c.Events[0].Data, seqs[i], i)
		}
	}
	// The version survives too: a stale writer still conflicts.
	if _, err := s.Append(ctx, stream, []proto.Message{estest.Steps("alice", 9)}, es.AppendOptions{ExpectedVersion: int64(seqs[1])}); es.KindOf(err) != es.Conflict {
		t.Errorf("stale append after restart: error %v, want conflict", err)
	}
	estest.MustAppend(t, s, stream, es.AppendOptions{ExpectedVersion: int64(seqs[2])}, estest.Steps("alice", 3))
}

func TestClosedConnectionFailsUnavailable(t *testing.T) {
	_, nc := natstest.Start(t)
	s, err := tljs.Open(context.Background(), nc, tljs.Config{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	stream := estest.NewStream(t)
	estest.MustAppend(t, s, stream, es.AppendOptions{ExpectedVersion: es.AnyVersion}, estest.Steps("alice", 1))
	nc.Close()
	if _, _, err := s.Load(context.Background(), stream, 0); es.KindOf(err) != es.Unavailable {
		t.Errorf("load error %v (kind %v), want unavailable", err, es.KindOf(err))
	}
	if _, err := s.Append(context.Background(), stream, []proto.Message{estest.Steps("alice", 2)}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); es.KindOf(err) != es.Unavailable {
		t.Errorf("append error %v (kind %v), want unavailable", err, es.KindOf(err))
	}
}

// TestOnAppend: the hook hears every append with its outcome: stored, a
// duplicate (a retry by idempotency key), a conflict (a stale expected
// version, which the repository retries).
func TestOnAppend(t *testing.T) {
	type call struct {
		dup bool
		err error
	}
	var calls []call
	s := openStore(t, tljs.Config{OnAppend: func(took time.Duration, dup bool, err error) {
		if took <= 0 {
			t.Errorf("append took %s", took)
		}
		calls = append(calls, call{dup, err})
	}})
	stream := estest.NewStream(t)
	opts := es.AppendOptions{ExpectedVersion: 0, IdempotencyKey: "k1"}
	estest.MustAppend(t, s, stream, opts, estest.Steps("alice", 1))
	estest.MustAppend(t, s, stream, opts, estest.Steps("alice", 1)) // the retry
	_, err := s.Append(context.Background(), stream, []proto.Message{estest.Steps("alice", 2)}, es.AppendOptions{ExpectedVersion: 0})
	if !errors.Is(err, es.ErrConflict) {
		t.Fatalf("stale append: %v, want a conflict", err)
	}
	if len(calls) != 3 || calls[0] != (call{}) || !calls[1].dup || calls[1].err != nil || !errors.Is(calls[2].err, es.ErrConflict) {
		t.Fatalf("OnAppend heard %+v, want stored, duplicate, conflict", calls)
	}
}
