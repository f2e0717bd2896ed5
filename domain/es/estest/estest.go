// Package estest is the contract test of the es.Store port: every
// implementation runs Run against a fresh store and must pass it.
package estest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/tideline/tideline/domain/es"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// Run runs the es.Store contract. newStore returns an empty or shared
// store; every case writes to streams of its own.
//
// The contract assumes, as DESIGN.md states for the EVENTS stream, that
// Position.Seq is one store-wide sequence with no gaps: that is how a case
// proves that a rejected append stored nothing anywhere.
func Run(t *testing.T, newStore func(t *testing.T) es.Store) {
	t.Run("append_then_load_round_trips", func(t *testing.T) { appendThenLoadRoundTrips(t, newStore(t)) })
	t.Run("load_after_returns_only_newer", func(t *testing.T) { loadAfterReturnsOnlyNewer(t, newStore(t)) })
	t.Run("load_spans_direct_get_batches", func(t *testing.T) { loadSpansBatches(t, newStore(t)) })
	t.Run("expected_version_conflict", func(t *testing.T) { expectedVersionConflict(t, newStore(t)) })
	t.Run("new_stream_expected_version_zero", func(t *testing.T) { newStreamExpectedVersionZero(t, newStore(t)) })
	t.Run("idempotency_key_dedups", func(t *testing.T) { idempotencyKeyDedups(t, newStore(t)) })
	t.Run("idempotent_retry_with_expected_version", func(t *testing.T) { idempotentRetryWithExpectedVersion(t, newStore(t)) })
	t.Run("idempotency_key_is_scoped_to_stream", func(t *testing.T) { idempotencyKeyScopedToStream(t, newStore(t)) })
	t.Run("invalid_input_is_rejected", func(t *testing.T) { invalidInputIsRejected(t, newStore(t)) })
	t.Run("concurrent_appends_to_distinct_streams", func(t *testing.T) { concurrentAppends(t, newStore(t)) })
	t.Run("unknown_event_type_decodes_with_nil_data", func(t *testing.T) { unknownEventType(t, newStore(t)) })
}

var streamSeq atomic.Uint64

// NewStream returns a stream id no other call in this process returns.
func NewStream(tb testing.TB) es.StreamID {
	tb.Helper()
	return es.StreamID{Context: "estest", Type: "walker", ID: fmt.Sprintf("s%d-%d", time.Now().UnixNano(), streamSeq.Add(1))}
}

// Steps returns a test event.
func Steps(user string, n int32) *stepsv1.StepsRecorded {
	return &stepsv1.StepsRecorded{UserId: user, Date: "2026-03-04", Steps: n}
}

// MustAppend appends events and fails the test on error.
func MustAppend(tb testing.TB, s es.Store, stream es.StreamID, opts es.AppendOptions, events ...proto.Message) es.AppendResult {
	tb.Helper()
	res, err := s.Append(context.Background(), stream, events, opts)
	if err != nil {
		tb.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

// MustLoad loads stream after a position and fails the test on error.
func MustLoad(tb testing.TB, s es.Store, stream es.StreamID, after uint64) ([]es.Commit, uint64) {
	tb.Helper()
	commits, version, err := s.Load(context.Background(), stream, after)
	if err != nil {
		tb.Fatalf("load %s after %d: %v", stream, after, err)
	}
	return commits, version
}

func anyVersion() es.AppendOptions { return es.AppendOptions{ExpectedVersion: es.AnyVersion} }

func appendThenLoadRoundTrips(t *testing.T, s es.Store) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600))
	meta := es.Metadata{CorrelationID: "corr-1", CausationID: "cause-1", Actor: "walker:alice", Source: "api"}
	cases := []struct {
		name   string
		events []proto.Message
		opts   es.AppendOptions
	}{
		{"one_event_with_metadata", []proto.Message{Steps("alice", 10)},
			es.AppendOptions{ExpectedVersion: es.AnyVersion, Meta: meta, Now: now}},
		{"three_events_one_commit", []proto.Message{Steps("alice", 1), Steps("alice", 2), Steps("alice", 3)},
			es.AppendOptions{ExpectedVersion: es.AnyVersion, Now: now}},
		{"no_metadata_zero_now_stamps_wall_clock", []proto.Message{Steps("bob", 7)},
			es.AppendOptions{ExpectedVersion: es.AnyVersion}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := NewStream(t)
			before := time.Now()
			res := MustAppend(t, s, stream, tc.opts, tc.events...)
			after := time.Now()
			if res.Duplicate || res.Position.Seq == 0 || res.Position.Index != 0 {
				t.Fatalf("append result = %+v, want a fresh commit at {Seq>0, Index 0}", res)
			}
			commits, version := MustLoad(t, s, stream, 0)
			if len(commits) != 1 {
				t.Fatalf("loaded %d commits, want 1 (a multi-event append is one commit)", len(commits))
			}
			c := commits[0]
			if c.Seq != res.Position.Seq || version != c.Seq || c.Stream != stream {
				t.Fatalf("commit seq %d stream %v, version %d; want seq and version %d on %v", c.Seq, c.Stream, version, res.Position.Seq, stream)
			}
			if len(c.Events) != len(tc.events) {
				t.Fatalf("commit has %d events, want %d", len(c.Events), len(tc.events))
			}
			ids := map[string]bool{}
			for i, e := range c.Events {
				if !isULID(e.ID) {
					t.Errorf("event %d id %q is not a ULID", i, e.ID)
				}
				if ids[e.ID] {
					t.Errorf("event %d id %q repeats", i, e.ID)
				}
				ids[e.ID] = true
				want := tc.events[i]
				if wt := string(want.ProtoReflect().Descriptor().FullName()); e.Type != wt {
					t.Errorf("event %d type %q, want %q", i, e.Type, wt)
				}
				if !proto.Equal(e.Data, want) {
					t.Errorf("event %d data %v, want %v", i, e.Data, want)
				}
				if e.Position != (es.Position{Seq: res.Position.Seq, Index: uint32(i)}) {
					t.Errorf("event %d position %+v, want {%d %d}", i, e.Position, res.Position.Seq, i)
				}
				if e.Stream != stream {
					t.Errorf("event %d stream %v, want %v", i, e.Stream, stream)
				}
				if e.Meta != tc.opts.Meta {
					t.Errorf("event %d meta %+v, want %+v", i, e.Meta, tc.opts.Meta)
				}
				if tc.opts.Now.IsZero() {
					if e.OccurredAt.Before(before) || e.OccurredAt.After(after) {
						t.Errorf("event %d occurred at %v, want the append's wall clock in [%v, %v]", i, e.OccurredAt, before, after)
					}
				} else if !e.OccurredAt.Equal(tc.opts.Now) {
					t.Errorf("event %d occurred at %v, want opts.Now %v", i, e.OccurredAt, tc.opts.Now)
				}
			}
		})
	}
}

func loadAfterReturnsOnlyNewer(t *testing.T, s es.Store) {
	stream := NewStream(t)
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, MustAppend(t, s, stream, anyVersion(), Steps("alice", int32(i))).Position.Seq)
	}
	cases := []struct {
		name        string
		stream      es.StreamID
		after       uint64
		wantSeqs    []uint64
		wantVersion uint64
	}{
		{"from_start", stream, 0, seqs, seqs[4]},
		{"after_second", stream, seqs[1], seqs[2:], seqs[4]},
		{"after_last", stream, seqs[4], nil, seqs[4]},
		{"unknown_stream", NewStream(t), 0, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			commits, version := MustLoad(t, s, tc.stream, tc.after)
			if got := commitSeqs(commits); !slices.Equal(got, tc.wantSeqs) {
				t.Errorf("loaded seqs %v, want %v", got, tc.wantSeqs)
			}
			if version != tc.wantVersion {
				t.Errorf("version %d, want %d", version, tc.wantVersion)
			}
		})
	}
}

// loadSpansBatches writes more commits than one JetStream batch Direct
// Get returns (256), interleaved with commits on another stream.
func loadSpansBatches(t *testing.T, s es.Store) {
	const n = 600
	stream, other := NewStream(t), NewStream(t)
	seqs := make([]uint64, n)
	for i := range n {
		seqs[i] = MustAppend(t, s, stream, anyVersion(), Steps("alice", int32(i))).Position.Seq
		MustAppend(t, s, other, anyVersion(), Steps("bob", int32(i)))
	}
	for _, from := range []int{0, 300} {
		t.Run(fmt.Sprintf("after_commit_%d", from), func(t *testing.T) {
			after := uint64(0)
			if from > 0 {
				after = seqs[from-1]
			}
			commits, version := MustLoad(t, s, stream, after)
			if len(commits) != n-from {
				t.Fatalf("loaded %d commits, want %d", len(commits), n-from)
			}
			for i, c := range commits {
				want := from + i
				if c.Seq != seqs[want] || c.Stream != stream {
					t.Fatalf("commit %d at seq %d on %v, want seq %d on %v", i, c.Seq, c.Stream, seqs[want], stream)
				}
				if !proto.Equal(c.Events[0].Data, Steps("alice", int32(want))) {
					t.Fatalf("commit %d data %v, want alice's step %d", i, c.Events[0].Data, want)
				}
			}
			if version != seqs[n-1] {
				t.Errorf("version %d, want %d", version, seqs[n-1])
			}
		})
	}
}

func expectedVersionConflict(t *testing.T, s es.Store) {
	cases := []struct {
		name     string
		expected func(first, last, otherStreamLast uint64) int64
	}{
		{"stale_version", func(first, _, _ uint64) int64 { return int64(first) }},
		{"version_ahead", func(_, last, _ uint64) int64 { return int64(last) + 100 }},
		{"zero_on_existing_stream", func(_, _, _ uint64) int64 { return 0 }},
		{"another_streams_version", func(_, _, o uint64) int64 { return int64(o) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := NewStream(t)
			first := MustAppend(t, s, stream, anyVersion(), Steps("alice", 1)).Position.Seq
			last := MustAppend(t, s, stream, anyVersion(), Steps("alice", 2)).Position.Seq
			otherLast := MustAppend(t, s, NewStream(t), anyVersion(), Steps("bob", 1)).Position.Seq

			_, err := s.Append(context.Background(), stream, []proto.Message{Steps("alice", 3)},
				es.AppendOptions{ExpectedVersion: tc.expected(first, last, otherLast)})
			if !errors.Is(err, es.ErrConflict) || es.KindOf(err) != es.Conflict {
				t.Fatalf("append error %v (kind %v), want es.ErrConflict", err, es.KindOf(err))
			}
			commits, version := MustLoad(t, s, stream, 0)
			if got := commitSeqs(commits); !slices.Equal(got, []uint64{first, last}) || version != last {
				t.Errorf("after the conflict stream holds %v at version %d, want [%d %d] at %d", got, version, first, last, last)
			}
		})
	}
}

func newStreamExpectedVersionZero(t *testing.T, s es.Store) {
	stream := NewStream(t)
	first, err := s.Append(context.Background(), stream, []proto.Message{Steps("alice", 1)}, es.AppendOptions{ExpectedVersion: 0})
	if err != nil {
		t.Fatalf("first writer with ExpectedVersion 0: %v", err)
	}
	_, err = s.Append(context.Background(), stream, []proto.Message{Steps("alice", 2)}, es.AppendOptions{ExpectedVersion: 0})
	if !errors.Is(err, es.ErrConflict) {
		t.Fatalf("second writer with ExpectedVersion 0: error %v, want es.ErrConflict", err)
	}
	next, err := s.Append(context.Background(), stream, []proto.Message{Steps("alice", 3)},
		es.AppendOptions{ExpectedVersion: int64(first.Position.Seq)})
	if err != nil {
		t.Fatalf("writer with the current version: %v", err)
	}
	commits, version := MustLoad(t, s, stream, 0)
	if got := commitSeqs(commits); !slices.Equal(got, []uint64{first.Position.Seq, next.Position.Seq}) || version != next.Position.Seq {
		t.Errorf("stream holds %v at version %d, want [%d %d]", got, version, first.Position.Seq, next.Position.Seq)
	}
}

func idempotencyKeyDedups(t *testing.T, s es.Store) {
	cases := []struct {
		name   string
		opts   es.AppendOptions
		events int
	}{
		{"one_event", es.AppendOptions{ExpectedVersion: es.AnyVersion, IdempotencyKey: "key-one"}, 1},
		{"multi_event_commit", es.AppendOptions{ExpectedVersion: es.AnyVersion, IdempotencyKey: "key-multi"}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream := NewStream(t)
			tc.opts.IdempotencyKey += stream.ID // keys are unique per case even on a shared store
			events := make([]proto.Message, tc.events)
			for i := range events {
				events[i] = Steps("alice", int32(i))
			}
			first := MustAppend(t, s, stream, tc.opts, events...)
			second := MustAppend(t, s, stream, tc.opts, events...)
			if first.Duplicate || !second.Duplicate {
				t.Errorf("duplicate flags %v then %v, want false then true", first.Duplicate, second.Duplicate)
			}
			if second.Position != first.Position {
				t.Errorf("duplicate position %+v, want the original's %+v", second.Position, first.Position)
			}
			other := MustAppend(t, s, stream, es.AppendOptions{ExpectedVersion: es.AnyVersion, IdempotencyKey: tc.opts.IdempotencyKey + "-b"}, Steps("alice", 1))
			if other.Duplicate {
				t.Errorf("a different key was reported as a duplicate")
			}
			commits, _ := MustLoad(t, s, stream, 0)
			if got := commitSeqs(commits); !slices.Equal(got, []uint64{first.Position.Seq, other.Position.Seq}) {
				t.Errorf("stream holds commits %v, want [%d %d]", got, first.Position.Seq, other.Position.Seq)
			}
		})
	}
}

// idempotentRetryWithExpectedVersion is a client retrying an append whose
// outcome it did not learn (say its context ended): the same key and the
// same expected version must report the original, not a conflict.
func idempotentRetryWithExpectedVersion(t *testing.T, s es.Store) {
	stream := NewStream(t)
	base := MustAppend(t, s, stream, anyVersion(), Steps("alice", 1)).Position.Seq
	opts := es.AppendOptions{ExpectedVersion: int64(base), IdempotencyKey: "retry-" + stream.ID}
	first := MustAppend(t, s, stream, opts, Steps("alice", 2))
	// Another writer appends before the retry arrives.
	later := MustAppend(t, s, stream, anyVersion(), Steps("alice", 3)).Position.Seq
	retry, err := s.Append(context.Background(), stream, []proto.Message{Steps("alice", 2)}, opts)
	if err != nil {
		t.Fatalf("retry with the same key and expected version: %v, want the original's result", err)
	}
	if !retry.Duplicate || retry.Position != first.Position {
		t.Errorf("retry result %+v, want duplicate of %+v", retry, first.Position)
	}
	// A different command on the now stale version still conflicts.
	_, err = s.Append(context.Background(), stream, []proto.Message{Steps("alice", 3)},
		es.AppendOptions{ExpectedVersion: int64(base), IdempotencyKey: "other-" + stream.ID})
	if !errors.Is(err, es.ErrConflict) {
		t.Errorf("other key on a stale version: error %v, want es.ErrConflict", err)
	}
	commits, _ := MustLoad(t, s, stream, 0)
	if got := commitSeqs(commits); !slices.Equal(got, []uint64{base, first.Position.Seq, later}) {
		t.Errorf("stream holds commits %v, want [%d %d %d]", got, base, first.Position.Seq, later)
	}
}

// idempotencyKeyScopedToStream: keys come from clients, and two clients
// may pick the same one; one's commit must not swallow the other's.
func idempotencyKeyScopedToStream(t *testing.T, s es.Store) {
	a, b := NewStream(t), NewStream(t)
	opts := es.AppendOptions{ExpectedVersion: es.AnyVersion, IdempotencyKey: "shared-" + a.ID}
	ra := MustAppend(t, s, a, opts, Steps("alice", 1))
	rb := MustAppend(t, s, b, opts, Steps("bob", 1))
	if rb.Duplicate || rb.Position == ra.Position {
		t.Fatalf("append to %v with %v's key = %+v, want a fresh commit", b, a, rb)
	}
	commits, _ := MustLoad(t, s, b, 0)
	if len(commits) != 1 || !proto.Equal(commits[0].Events[0].Data, Steps("bob", 1)) {
		t.Errorf("stream %v holds %d commits, want bob's one", b, len(commits))
	}
}

func invalidInputIsRejected(t *testing.T, s es.Store) {
	valid := NewStream(t)
	long := strings.Repeat("a", es.MaxTokenLen+1)
	withID := func(id string) es.StreamID { return es.StreamID{Context: valid.Context, Type: valid.Type, ID: id} }
	cases := []struct {
		name   string
		stream es.StreamID
		events []proto.Message
		opts   es.AppendOptions
		load   bool // Load must reject the stream id too
	}{
		{"empty_id", withID(""), []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"empty_context", es.StreamID{Type: "walker", ID: "x"}, []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"empty_type", es.StreamID{Context: "estest", ID: "x"}, []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"dot_in_id", withID("a.b"), []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"star_in_id", withID("*"), []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"gt_in_id", withID(">"), []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"space_in_id", withID("a b"), []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"dot_in_context", es.StreamID{Context: "a.b", Type: "walker", ID: "x"}, []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"id_over_64_bytes", withID(long), []proto.Message{Steps("a", 1)}, anyVersion(), true},
		{"no_events", valid, nil, anyVersion(), false},
		{"empty_events", valid, []proto.Message{}, anyVersion(), false},
		{"idempotency_key_with_newline", valid, []proto.Message{Steps("a", 1)},
			es.AppendOptions{ExpectedVersion: es.AnyVersion, IdempotencyKey: "k\r\nNats-Expected-Stream: x"}, false},
		{"idempotency_key_over_128_bytes", valid, []proto.Message{Steps("a", 1)},
			es.AppendOptions{ExpectedVersion: es.AnyVersion, IdempotencyKey: strings.Repeat("k", es.MaxIdempotencyKeyLen+1)}, false},
		{"expected_version_below_any", valid, []proto.Message{Steps("a", 1)}, es.AppendOptions{ExpectedVersion: -2}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := MustAppend(t, s, valid, anyVersion(), Steps("probe", 1)).Position.Seq
			_, err := s.Append(context.Background(), tc.stream, tc.events, tc.opts)
			if es.KindOf(err) != es.Invalid {
				t.Errorf("append error %v (kind %v), want kind invalid", err, es.KindOf(err))
			}
			after := MustAppend(t, s, valid, anyVersion(), Steps("probe", 2)).Position.Seq
			if after != before+1 {
				t.Errorf("probe commits at %d and %d: the rejected append stored something in between", before, after)
			}
			if tc.load {
				if _, _, err := s.Load(context.Background(), tc.stream, 0); es.KindOf(err) != es.Invalid {
					t.Errorf("load error %v (kind %v), want kind invalid", err, es.KindOf(err))
				}
			}
		})
	}
}

func concurrentAppends(t *testing.T, s es.Store) {
	const writers, perWriter = 32, 5
	streams := make([]es.StreamID, writers)
	seqs := make([][]uint64, writers)
	var wg sync.WaitGroup
	for w := range writers {
		streams[w] = NewStream(t)
		wg.Go(func() {
			version := int64(0)
			for i := range perWriter {
				res, err := s.Append(context.Background(), streams[w], []proto.Message{Steps("w", int32(i))}, es.AppendOptions{ExpectedVersion: version})
				if err != nil {
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				version = int64(res.Position.Seq)
				seqs[w] = append(seqs[w], res.Position.Seq)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[uint64]int{}
	for w, stream := range streams {
		for _, seq := range seqs[w] {
			if prev, dup := seen[seq]; dup {
				t.Errorf("writers %d and %d both got position %d", prev, w, seq)
			}
			seen[seq] = w
		}
		commits, version := MustLoad(t, s, stream, 0)
		if got := commitSeqs(commits); !slices.Equal(got, seqs[w]) || version != seqs[w][perWriter-1] {
			t.Errorf("writer %d: stream holds %v at version %d, want %v", w, got, version, seqs[w])
		}
	}
}

// unknownEventType appends an event whose type this binary has not
// registered, as a newer version of the service would write it.
func unknownEventType(t *testing.T, s es.Store) {
	future := futureEvent(t)
	future.Set(future.Descriptor().Fields().ByName("note"), protoreflect.ValueOfString("from a newer release"))
	stream := NewStream(t)
	res := MustAppend(t, s, stream, anyVersion(), Steps("alice", 1), future)
	commits, _ := MustLoad(t, s, stream, 0)
	if len(commits) != 1 || len(commits[0].Events) != 2 {
		t.Fatalf("loaded %d commits, want 1 with 2 events", len(commits))
	}
	known, unknown := commits[0].Events[0], commits[0].Events[1]
	if !proto.Equal(known.Data, Steps("alice", 1)) {
		t.Errorf("known event data %v, want alice's steps", known.Data)
	}
	if unknown.Data != nil {
		t.Errorf("unknown event data %v, want nil", unknown.Data)
	}
	if unknown.Type != futureTypeName || unknown.Position != (es.Position{Seq: res.Position.Seq, Index: 1}) || !isULID(unknown.ID) {
		t.Errorf("unknown event = type %q position %+v id %q, want type %q at {%d 1} with a ULID", unknown.Type, unknown.Position, unknown.ID, futureTypeName, res.Position.Seq)
	}
}

const futureTypeName = "tideline.estest.v1.FromTheFuture"

func futureEvent(tb testing.TB) *dynamicpb.Message {
	tb.Helper()
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:    proto.String("tideline/estest/v1/future.proto"),
		Package: proto.String("tideline.estest.v1"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("FromTheFuture"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name:   proto.String("note"),
				Number: proto.Int32(1),
				Type:   descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
				Label:  descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}},
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		tb.Fatalf("build unregistered message type: %v", err)
	}
	md := fd.Messages().ByName("FromTheFuture")
	if _, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
		tb.Fatalf("%s is registered; the case needs an unknown type", md.FullName())
	}
	return dynamicpb.NewMessage(md)
}

func commitSeqs(commits []es.Commit) []uint64 {
	var seqs []uint64
	for _, c := range commits {
		seqs = append(seqs, c.Seq)
	}
	return seqs
}

// isULID reports whether s is a canonical ULID: 26 Crockford base32
// characters, the first at most '7' (48-bit time).
func isULID(s string) bool {
	if len(s) != 26 || s[0] > '7' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("0123456789ABCDEFGHJKMNPQRSTVWXYZ", rune(s[i])) {
			return false
		}
	}
	return true
}
