package jetstream_test

import (
	"context"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// publishGarbage stores bytes that are no commit on a stream's subject,
// as a producer with a bug (or an older, incompatible one) could, and
// returns their position.
func publishGarbage(tb testing.TB, s *tljs.Store) uint64 {
	tb.Helper()
	ack, err := s.JetStream().Publish(context.Background(), "ev.steps.day.user-1", []byte("\xff\xff not protobuf"))
	if err != nil {
		tb.Fatalf("publish garbage: %v", err)
	}
	return ack.Sequence
}

func waitState(tb testing.TB, r *tljs.Runner, want tljs.RunnerState) tljs.RunnerStatus {
	tb.Helper()
	var st tljs.RunnerStatus
	poll.Until(tb, 10*time.Second, "state "+want.String(), func() bool {
		st = r.Status(context.Background())
		return st.State == want
	})
	return st
}

func TestRunnerStopsAtUndecodableCommit(t *testing.T) {
	s := runnerStore(t)
	ctx := context.Background()
	p := newCountingProjection("counts", 1)
	r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, r)
	before := appendCommits(t, s, 0, 5)
	waitFor(t, r, before)
	bad := publishGarbage(t, s)
	after := appendCommits(t, s, 5, 5)

	// Another node's runner of the same projection stops there too.
	other := tljs.NewRunner(s, newCountingProjection("counts", 1), tljs.RunnerOptions{Bucket: "node2", Logger: quietLogger})
	startRunner(t, other)

	st := waitState(t, r, tljs.Stopped)
	if st.StoppedAt != bad || st.Position != bad-1 || !strings.Contains(st.Reason, "decode") || st.Lag != after-(bad-1) {
		t.Fatalf("status %+v, want stopped at %d, position %d, a decode reason, lag %d", st, bad, bad-1, after-(bad-1))
	}
	if got := p.model(); len(got.Seen) != eventsIn(0, 5) {
		t.Fatalf("stopped model saw %d events, want the %d before the commit", len(got.Seen), eventsIn(0, 5))
	}
	if err := r.WaitFor(shortCtx(t), bad-1); err != nil {
		t.Fatalf("WaitFor(%d), before the stop: %v", bad-1, err)
	}
	wctx := shortCtx(t)
	if err := r.WaitFor(wctx, after); es.KindOf(err) != es.Unavailable || wctx.Err() != nil {
		t.Fatalf("WaitFor(%d) past the stop = %v (kind %v), want unavailable at once", after, err, es.KindOf(err))
	}
	waitState(t, other, tljs.Stopped)

	refusals := []struct {
		name string
		do   func() error
		want es.Kind
	}{
		{"resume_stops_again", func() error { return r.Resume(shortCtx(t)) }, es.FailedPrecondition},
		{"skip_another_position", func() error { _, err := r.Skip(shortCtx(t), bad+1, "not this one", es.Metadata{}); return err }, es.FailedPrecondition},
		{"skip_without_reason", func() error { _, err := r.Skip(shortCtx(t), bad, "", es.Metadata{}); return err }, es.Invalid},
	}
	for _, tc := range refusals {
		if err := tc.do(); es.KindOf(err) != tc.want {
			t.Errorf("%s: %v (kind %v), want %v", tc.name, err, es.KindOf(err), tc.want)
		}
	}
	if st := r.Status(ctx); st.State != tljs.Stopped || st.StoppedAt != bad {
		t.Fatalf("after refusals: %+v, want still stopped at %d", st, bad)
	}

	decision, err := r.Skip(shortCtx(t), bad, "garbage written by a test", es.Metadata{Actor: "admin:ops", Source: "api"})
	if err != nil {
		t.Fatalf("Skip(%d): %v", bad, err)
	}
	waitFor(t, r, decision.Seq)
	if st := r.Status(ctx); st.State != tljs.Running || st.StoppedAt != 0 || st.Reason != "" || st.Lag != 0 {
		t.Fatalf("after skip: %+v, want running and caught up", st)
	}
	live := p.model()
	// Every commit but the skipped one, and the decision itself (the
	// counting projection reads every stream).
	checkModel(t, live, eventsIn(0, 10)+1)
	if live.Counts["ev.admin.projection.counts"] != 1 {
		t.Errorf("model counts %v, want the decision once", live.Counts)
	}
	commits, _, err := s.Load(ctx, es.StreamID{Context: "admin", Type: "projection", ID: "counts"}, 0)
	if err != nil || len(commits) != 1 {
		t.Fatalf("decisions stored: %v, %v; want one", commits, err)
	}
	got, ok := commits[0].Events[0].Data.(*adminv1.ProjectionCommitSkipped)
	want := &adminv1.ProjectionCommitSkipped{Projection: "counts", Position: bad, Reason: "garbage written by a test", Error: st.Reason, Version: 1}
	if !ok || !proto.Equal(got, want) || commits[0].Events[0].Meta.Actor != "admin:ops" {
		t.Errorf("decision %v by %q, want %v by admin:ops", got, commits[0].Events[0].Meta.Actor, want)
	}

	// The other node learns the decision when resumed.
	if err := other.Resume(shortCtx(t)); err != nil {
		t.Fatalf("resume the other node's runner: %v", err)
	}
	waitFor(t, other, decision.Seq)

	// Replays from position 1 know the decision before they reach the
	// commit: a fresh runner, a rebuild, and a restart.
	if fresh := freshModel(t, s, "counts", decision.Seq); !reflect.DeepEqual(fresh, live) {
		t.Errorf("fresh rebuild differs from the live model:\ngot  %v\nwant %v", fresh.Counts, live.Counts)
	}
	if err := r.Rebuild(shortCtx(t)); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if got := p.model(); !reflect.DeepEqual(got, live) {
		t.Errorf("rebuilt model differs from the live one:\ngot  %v\nwant %v", got.Counts, live.Counts)
	}
	// Decisions are per projection: another one stops at the commit.
	stranger := tljs.NewRunner(s, newCountingProjection("stranger", 1), tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, stranger)
	if st := waitState(t, stranger, tljs.Stopped); st.StoppedAt != bad {
		t.Errorf("another projection: %+v, want stopped at %d", st, bad)
	}
}

// poisonSteps is the step count whose Apply panics while poisoned.
const poisonSteps = 7777

// panickyProjection is a counting projection whose Apply panics on
// poisonSteps until fixed: code with a bug, then the fixed code.
type panickyProjection struct {
	*countingProjection
	fixed *atomic.Bool
}

func (p panickyProjection) Apply(e es.Event) {
	if s, ok := e.Data.(*stepsv1.StepsRecorded); ok && s.GetSteps() == poisonSteps && !p.fixed.Load() {
		panic("cannot handle 7777 steps")
	}
	p.countingProjection.Apply(e)
}

// appendPoison appends one commit of three events whose second is poison.
func appendPoison(tb testing.TB, s *tljs.Store) uint64 {
	tb.Helper()
	stream := es.StreamID{Context: "steps", Type: "day", ID: "user-9"}
	res, err := s.Append(context.Background(), stream, []proto.Message{
		&stepsv1.StepsRecorded{UserId: "user-9", Date: "2026-01-01", Steps: 1},
		&stepsv1.StepsRecorded{UserId: "user-9", Date: "2026-01-02", Steps: poisonSteps},
		&stepsv1.StepsRecorded{UserId: "user-9", Date: "2026-01-03", Steps: 3},
	}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
	if err != nil {
		tb.Fatal(err)
	}
	return res.Position.Seq
}

// TestRunnerStopsWhereApplyPanics: a panic in Apply stops the projection
// at the commit, like an undecodable one, and the server goes on. Apply
// had already taken the commit's first event, so the model is restored
// from its snapshot before the commit is retried, by Resume or restart.
func TestRunnerStopsWhereApplyPanics(t *testing.T) {
	cases := []struct {
		name   string
		resume func(t *testing.T, r *tljs.Runner, stop func() error)
	}{
		{"resume", func(t *testing.T, r *tljs.Runner, _ func() error) {
			if err := r.Resume(shortCtx(t)); err != nil {
				t.Fatalf("Resume after the fix: %v", err)
			}
		}},
		{"restart", func(t *testing.T, r *tljs.Runner, stop func() error) {
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			startRunner(t, r)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := runnerStore(t)
			p := panickyProjection{newCountingProjection("counts", 1), &atomic.Bool{}}
			// Snapshots after every few events, so one lies before the poison.
			r := tljs.NewRunner(s, p, tljs.RunnerOptions{SnapshotAfter: 5, Logger: quietLogger})
			stop := startRunner(t, r)
			waitFor(t, r, appendCommits(t, s, 0, 10))
			bad := appendPoison(t, s)
			last := appendCommits(t, s, 10, 5)

			st := waitState(t, r, tljs.Stopped)
			if st.StoppedAt != bad || st.Position != bad-1 || !strings.Contains(st.Reason, "cannot handle 7777 steps") {
				t.Fatalf("status %+v, want stopped at %d with the panic", st, bad)
			}
			if err := r.Resume(shortCtx(t)); es.KindOf(err) != es.FailedPrecondition {
				t.Fatalf("Resume before the fix = %v, want failed precondition", err)
			}

			p.fixed.Store(true)
			tc.resume(t, r, stop)
			waitFor(t, r, last)
			live := p.model()
			checkModel(t, live, eventsIn(0, 15)+3)
			if fresh := freshModel(t, s, "counts", last); !reflect.DeepEqual(live, fresh) {
				t.Errorf("model after the fix differs from a fresh one:\ngot  %v\nwant %v", live.Steps, fresh.Steps)
			}
		})
	}
}

func TestRunnerResumeAndSkipNeedAStop(t *testing.T) {
	s := runnerStore(t)
	r := tljs.NewRunner(s, newCountingProjection("counts", 1), tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, r)
	last := appendCommits(t, s, 0, 3)
	waitFor(t, r, last)
	if err := r.Resume(shortCtx(t)); es.KindOf(err) != es.FailedPrecondition {
		t.Errorf("Resume of a running runner = %v, want failed precondition", err)
	}
	if _, err := r.Skip(shortCtx(t), last, "nothing wrong", es.Metadata{}); es.KindOf(err) != es.FailedPrecondition {
		t.Errorf("Skip on a running runner = %v, want failed precondition", err)
	}
	if got, err := s.LastPosition(context.Background()); err != nil || got != last {
		t.Errorf("stream ends at %d (%v), want %d: a refused skip records nothing", got, err, last)
	}
}
