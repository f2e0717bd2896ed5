package jetstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// countingProjection counts events per stream and records every position
// it sees, in order. applies counts Apply calls since construction and is
// not part of the model.
type countingProjection struct {
	name    string
	version int
	applies atomic.Int64

	mu sync.Mutex
	m  countingModel
}

type countingModel struct {
	Counts map[string]int
	Steps  map[string]int32 // per stream: the sum of StepsRecorded.steps
	Seen   []es.Position
	// Disorder records any position that did not follow the previous one.
	Disorder []es.Position
}

func newCountingProjection(name string, version int) *countingProjection {
	p := &countingProjection{name: name, version: version}
	p.Reset()
	return p
}

func (p *countingProjection) Name() string { return p.name }
func (p *countingProjection) Version() int { return p.version }

func (p *countingProjection) Apply(e es.Event) {
	p.applies.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.m.Seen); n > 0 {
		prev := p.m.Seen[n-1]
		if e.Position.Seq < prev.Seq || (e.Position.Seq == prev.Seq && e.Position.Index != prev.Index+1) {
			p.m.Disorder = append(p.m.Disorder, e.Position)
		}
	}
	p.m.Seen = append(p.m.Seen, e.Position)
	p.m.Counts[e.Stream.String()]++
	if s, ok := e.Data.(*stepsv1.StepsRecorded); ok {
		p.m.Steps[e.Stream.String()] += s.GetSteps()
	}
}

func (p *countingProjection) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m = countingModel{Counts: map[string]int{}, Steps: map[string]int32{}, Seen: []es.Position{}, Disorder: []es.Position{}}
}

func (p *countingProjection) Snapshot() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal(p.m)
}

func (p *countingProjection) Restore(data []byte) error {
	var m countingModel
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m = m
	return nil
}

func (p *countingProjection) model() countingModel {
	p.mu.Lock()
	defer p.mu.Unlock()
	data, _ := json.Marshal(p.m)
	var m countingModel
	_ = json.Unmarshal(data, &m)
	return m
}

func runnerStore(tb testing.TB) *tljs.Store {
	tb.Helper()
	_, nc := natstest.Start(tb)
	s, err := tljs.Open(context.Background(), nc, tljs.Config{})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	return s
}

var quietLogger = slog.New(slog.DiscardHandler)

// startRunner runs r until the returned stop is called (or the test ends)
// and returns Run's result from stop.
func startRunner(tb testing.TB, r *tljs.Runner) (stop func() error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10s of cancel")
			}
		})
		return err
	}
	tb.Cleanup(func() { _ = stop() })
	return stop
}

// appendCommits appends n commits over a few streams; every third commit
// holds three events. It returns the last position.
func appendCommits(tb testing.TB, s *tljs.Store, from, n int) uint64 {
	tb.Helper()
	last, err := tryAppendCommits(s, from, n)
	if err != nil {
		tb.Fatal(err)
	}
	return last
}

// tryAppendCommits is appendCommits for goroutines other than the test's.
func tryAppendCommits(s *tljs.Store, from, n int) (uint64, error) {
	var last uint64
	for i := from; i < from+n; i++ {
		stream := es.StreamID{Context: "steps", Type: "day", ID: "user-" + strconv.Itoa(i%5)}
		events := []proto.Message{&stepsv1.StepsRecorded{UserId: stream.ID, Date: "2026-01-01", Steps: int32(i)}}
		if i%3 == 0 {
			events = append(events,
				&stepsv1.StepsRecorded{UserId: stream.ID, Date: "2026-01-02", Steps: int32(i + 1)},
				&stepsv1.StepsRecorded{UserId: stream.ID, Date: "2026-01-03", Steps: int32(i + 2)})
		}
		res, err := s.Append(context.Background(), stream, events, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err != nil {
			return 0, fmt.Errorf("append commit %d: %w", i, err)
		}
		last = res.Position.Seq
	}
	return last, nil
}

func waitFor(tb testing.TB, r *tljs.Runner, pos uint64) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, pos); err != nil {
		tb.Fatalf("WaitFor(%d): %v (position %d)", pos, err, r.Position())
	}
}

// freshModel builds a counting model named name from position 1 up to
// upTo, with a runner using its own snapshot bucket.
func freshModel(tb testing.TB, s *tljs.Store, name string, upTo uint64) countingModel {
	tb.Helper()
	p := newCountingProjection(name, 1)
	r := tljs.NewRunner(s, p, tljs.RunnerOptions{Bucket: "fresh", Logger: quietLogger})
	stop := startRunner(tb, r)
	waitFor(tb, r, upTo)
	if err := stop(); err != nil {
		tb.Fatalf("fresh runner: %v", err)
	}
	return p.model()
}

func checkModel(tb testing.TB, got countingModel, wantEvents int) {
	tb.Helper()
	if len(got.Disorder) > 0 {
		tb.Errorf("positions out of order: %v", got.Disorder)
	}
	if len(got.Seen) != wantEvents {
		tb.Errorf("saw %d events, want %d", len(got.Seen), wantEvents)
	}
}

// eventsIn returns how many events appendCommits(from, n) writes.
func eventsIn(from, n int) int {
	total := 0
	for i := from; i < from+n; i++ {
		if i%3 == 0 {
			total += 3
		} else {
			total++
		}
	}
	return total
}

func TestRunnerLiveModelEqualsRebuiltModel(t *testing.T) {
	cases := []struct {
		name    string
		rebuild func(t *testing.T, s *tljs.Store, r *tljs.Runner, p *countingProjection, last uint64) countingModel
	}{
		{"fresh_runner", func(t *testing.T, s *tljs.Store, _ *tljs.Runner, _ *countingProjection, last uint64) countingModel {
			return freshModel(t, s, "counts", last)
		}},
		{"rebuild_on_demand", func(t *testing.T, _ *tljs.Store, r *tljs.Runner, p *countingProjection, last uint64) countingModel {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.Rebuild(ctx); err != nil {
				t.Fatalf("Rebuild: %v", err)
			}
			if r.Position() < last {
				t.Fatalf("Rebuild returned at position %d, before %d", r.Position(), last)
			}
			return p.model()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := runnerStore(t)
			p := newCountingProjection("counts", 1)
			r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})
			startRunner(t, r)

			const n = 300
			var wg sync.WaitGroup
			lasts := make([]uint64, 4)
			errs := make([]error, 4)
			for w := range 4 {
				wg.Go(func() { lasts[w], errs[w] = tryAppendCommits(s, w*n/4, n/4) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			last := max(lasts[0], lasts[1], lasts[2], lasts[3])
			waitFor(t, r, last)
			live := p.model()
			checkModel(t, live, eventsIn(0, n))

			rebuilt := tc.rebuild(t, s, r, p, last)
			if !reflect.DeepEqual(live, rebuilt) {
				t.Errorf("live model differs from rebuilt model:\nlive    %v\nrebuilt %v", live.Counts, rebuilt.Counts)
			}
		})
	}
}

// snapshotMeta returns the stored snapshot's metadata, or nil if none.
func snapshotMeta(tb testing.TB, s *tljs.Store, bucket, name string) map[string]string {
	tb.Helper()
	ctx := context.Background()
	obs, err := s.JetStream().ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatalf("object store %s: %v", bucket, err)
	}
	info, err := obs.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatalf("snapshot info %s: %v", name, err)
	}
	return info.Metadata
}

// shortCtx returns a context that ends in 10s or with the test.
func shortCtx(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func snapshotBucket(tb testing.TB, s *tljs.Store) jetstream.ObjectStore {
	tb.Helper()
	obs, err := s.JetStream().ObjectStore(context.Background(), "projections")
	if err != nil {
		tb.Fatal(err)
	}
	return obs
}

func TestRunnerRestartResumesFromSnapshot(t *testing.T) {
	s := runnerStore(t)
	opts := tljs.RunnerOptions{Logger: quietLogger}
	p1 := newCountingProjection("counts", 1)
	r1 := tljs.NewRunner(s, p1, opts)
	stop := startRunner(t, r1)
	last := appendCommits(t, s, 0, 40)
	waitFor(t, r1, last)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	meta := snapshotMeta(t, s, "projections", "counts")
	if want := strconv.FormatUint(last, 10); meta["tideline-position"] != want || meta["tideline-projection-version"] != "1" {
		t.Fatalf("snapshot metadata %v, want position %s version 1", meta, want)
	}

	p2 := newCountingProjection("counts", 1)
	r2 := tljs.NewRunner(s, p2, opts)
	startRunner(t, r2)
	waitFor(t, r2, last)
	if n := p2.applies.Load(); n != 0 {
		t.Errorf("restored runner re-applied %d old events", n)
	}
	if !reflect.DeepEqual(p2.model(), p1.model()) {
		t.Errorf("restored model differs from the one snapshotted")
	}

	last = appendCommits(t, s, 40, 10)
	waitFor(t, r2, last)
	if n, want := p2.applies.Load(), int64(eventsIn(40, 10)); n != want {
		t.Errorf("applied %d new events, want %d", n, want)
	}
	checkModel(t, p2.model(), eventsIn(0, 50))
}

func TestRunnerVersionChangeRebuilds(t *testing.T) {
	cases := []struct {
		name        string
		version     int
		wantApplies int
	}{
		{"same_version_restores", 1, 0},
		{"new_version_rebuilds_from_1", 2, eventsIn(0, 40)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := runnerStore(t)
			opts := tljs.RunnerOptions{Logger: quietLogger}
			p1 := newCountingProjection("counts", 1)
			stop := startRunner(t, tljs.NewRunner(s, p1, opts))
			last := appendCommits(t, s, 0, 40)
			poll.Until(t, 10*time.Second, "first model", func() bool { return len(p1.model().Seen) == eventsIn(0, 40) })
			if err := stop(); err != nil {
				t.Fatalf("Run v1: %v", err)
			}

			p2 := newCountingProjection("counts", tc.version)
			if err := p2.Restore([]byte(`{"Counts":{"stale":1}}`)); err != nil { // must be reset, or replaced by the snapshot
				t.Fatal(err)
			}
			r2 := tljs.NewRunner(s, p2, opts)
			stop = startRunner(t, r2)
			waitFor(t, r2, last)
			if n := p2.applies.Load(); n != int64(tc.wantApplies) {
				t.Errorf("applied %d events, want %d", n, tc.wantApplies)
			}
			got := p2.model()
			checkModel(t, got, eventsIn(0, 40))
			if !reflect.DeepEqual(got, p1.model()) {
				t.Errorf("model differs from version 1's:\ngot  %v\nwant %v", got.Counts, p1.model().Counts)
			}
			if got.Seen[0] != (es.Position{Seq: 1}) {
				t.Errorf("first position %v, want {1 0}", got.Seen[0])
			}
			if st := r2.Status(context.Background()); st.State != tljs.Running || st.Version != tc.version {
				t.Errorf("status %+v, want version %d running", st, tc.version)
			}
			if err := stop(); err != nil {
				t.Fatalf("Run v%d: %v", tc.version, err)
			}
			if v := snapshotMeta(t, s, "projections", "counts")["tideline-projection-version"]; v != strconv.Itoa(tc.version) {
				t.Errorf("snapshot version %s after stop, want %d", v, tc.version)
			}
		})
	}
}

func TestRunnerSnapshotsWhileRunning(t *testing.T) {
	cases := []struct {
		name string
		opts tljs.RunnerOptions
	}{
		{"after_n_events", tljs.RunnerOptions{SnapshotAfter: 10, Logger: quietLogger}},
		{"every_interval", tljs.RunnerOptions{SnapshotEvery: 10 * time.Millisecond, Logger: quietLogger}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := runnerStore(t)
			r := tljs.NewRunner(s, newCountingProjection("counts", 1), tc.opts)
			startRunner(t, r)
			last := appendCommits(t, s, 0, 30)
			waitFor(t, r, last)
			poll.Until(t, 10*time.Second, "a snapshot while running", func() bool {
				pos, _ := strconv.ParseUint(snapshotMeta(t, s, "projections", "counts")["tideline-position"], 10, 64)
				return pos > 0 && pos <= last
			})
		})
	}
}

func TestRunnerWaitForAndAdvanced(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, s *tljs.Store, r *tljs.Runner)
	}{
		{"wait_returns_once_applied", func(t *testing.T, s *tljs.Store, r *tljs.Runner) {
			last := appendCommits(t, s, 0, 5)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.WaitFor(ctx, last); err != nil {
				t.Fatalf("WaitFor(%d): %v", last, err)
			}
			if r.Position() < last {
				t.Errorf("WaitFor(%d) returned at position %d", last, r.Position())
			}
		}},
		{"wait_fails_at_once_past_the_stream_end", func(t *testing.T, s *tljs.Store, r *tljs.Runner) {
			last := appendCommits(t, s, 0, 5)
			waitFor(t, r, last)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.WaitFor(ctx, last+1); es.KindOf(err) != es.OutOfRange || ctx.Err() != nil {
				t.Errorf("WaitFor(%d) = %v (kind %v), want out of range before the deadline", last+1, err, es.KindOf(err))
			}
		}},
		{"advanced_closes_on_advance", func(t *testing.T, s *tljs.Store, r *tljs.Runner) {
			ch := r.Advanced()
			select {
			case <-ch:
				t.Fatal("Advanced() closed before any event")
			default:
			}
			appendCommits(t, s, 0, 1)
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatal("Advanced() not closed after an append")
			}
			if next := r.Advanced(); next == ch {
				t.Error("Advanced() returned the closed channel again")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := runnerStore(t)
			r := tljs.NewRunner(s, newCountingProjection("counts", 1), tljs.RunnerOptions{Logger: quietLogger})
			startRunner(t, r)
			tc.run(t, s, r)
		})
	}
}

func TestRunnerLag(t *testing.T) {
	s := runnerStore(t)
	ctx := context.Background()
	last := appendCommits(t, s, 0, 20)
	r := tljs.NewRunner(s, newCountingProjection("counts", 1), tljs.RunnerOptions{Logger: quietLogger})
	if lag, err := r.Lag(ctx); err != nil || lag != last {
		t.Errorf("Lag before Run = %d, %v; want %d", lag, err, last)
	}
	startRunner(t, r)
	waitFor(t, r, last)
	if lag, err := r.Lag(ctx); err != nil || lag != 0 {
		t.Errorf("Lag when idle and caught up = %d, %v; want 0", lag, err)
	}
	want := tljs.RunnerStatus{Name: "counts", Version: 1, Position: last, State: tljs.Running}
	if st := r.Status(ctx); st != want {
		t.Errorf("Status = %+v, want %+v", st, want)
	}
}

func TestRunnerRebuildWhileAppending(t *testing.T) {
	s := runnerStore(t)
	p := newCountingProjection("counts", 1)
	r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, r)
	waitFor(t, r, appendCommits(t, s, 0, 100))

	// Append in batches of 5 commits until told to stop; commits counts
	// the commits appended so far.
	var commits atomic.Int64
	commits.Store(100)
	stopAppends := make(chan struct{})
	var appendErr error
	var appended sync.WaitGroup
	appended.Go(func() {
		for {
			select {
			case <-stopAppends:
				return
			default:
			}
			if _, appendErr = tryAppendCommits(s, int(commits.Load()), 5); appendErr != nil {
				return
			}
			commits.Add(5)
		}
	})
	poll.Until(t, 10*time.Second, "appends under way", func() bool { return commits.Load() > 100 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before, err := s.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Rebuild(ctx); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if pos := r.Position(); pos < before {
		t.Errorf("Rebuild returned at position %d, before the stream's %d at the call", pos, before)
	}
	afterRebuild := commits.Load()
	poll.Until(t, 10*time.Second, "appends after the rebuild", func() bool { return commits.Load() > afterRebuild })
	close(stopAppends)
	appended.Wait()
	if appendErr != nil {
		t.Fatal(appendErr)
	}

	last, err := s.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, last)
	if st := r.Status(ctx); st.State != tljs.Running || st.Lag != 0 {
		t.Errorf("status after rebuild %+v, want caught up", st)
	}
	live := p.model()
	checkModel(t, live, eventsIn(0, int(commits.Load())))
	if fresh := freshModel(t, s, "counts", last); !reflect.DeepEqual(live, fresh) {
		t.Errorf("model rebuilt while appending differs from a fresh rebuild:\ngot  %v\nwant %v", live.Counts, fresh.Counts)
	}
}

// TestRunnerSkipsMessagesOnNonStreamSubjects: no aggregate owns such a
// subject, so no projection could read what is on it. (A message on a
// stream's subject that does not decode stops the runner instead: see
// TestRunnerStopsAtUndecodableCommit.)
func TestRunnerSkipsMessagesOnNonStreamSubjects(t *testing.T) {
	s := runnerStore(t)
	ctx := context.Background()
	p := newCountingProjection("counts", 1)
	r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, r)

	for _, m := range []struct{ subject, data string }{
		{"ev.not-a-stream", "x"},
		{"ev.steps.day.bad!id", "x"},
	} {
		if _, err := s.JetStream().Publish(ctx, m.subject, []byte(m.data)); err != nil {
			t.Fatalf("publish %s: %v", m.subject, err)
		}
	}
	last := appendCommits(t, s, 1, 1)
	waitFor(t, r, last)
	got := p.model()
	want := map[string]int{"ev.steps.day.user-1": 1}
	if !reflect.DeepEqual(got.Counts, want) || len(got.Seen) != 1 || got.Seen[0].Seq != last {
		t.Errorf("model %+v, want only the commit at %d: %v", got, last, want)
	}
}

// selectiveProjection reads only StepsRecorded.
type selectiveProjection struct{ *countingProjection }

func (selectiveProjection) EventTypes() []string { return []string{"tideline.steps.v1.StepsRecorded"} }

func TestRunnerSelectiveProjectionSkipsOtherTypesAndStampsRecordedAt(t *testing.T) {
	s := runnerStore(t)
	before := time.Now()
	ctx := context.Background()
	other := es.StreamID{Context: "other", Type: "thing", ID: "x"}
	for range 3 {
		if _, err := s.Append(ctx, other, []proto.Message{wrapperspb.String("not steps")}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
			t.Fatal(err)
		}
	}
	last := appendCommits(t, s, 0, 4) // 4 commits of StepsRecorded (6 events)
	for range 2 {
		res, err := s.Append(ctx, other, []proto.Message{wrapperspb.String("not steps")}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position.Seq
	}
	p := selectiveProjection{newCountingProjection("selective", 1)}
	r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, r)
	waitFor(t, r, last) // position passes the skipped commits too

	m := p.model()
	if m.Counts[other.String()] != 0 || len(m.Seen) != eventsIn(0, 4) {
		t.Fatalf("applied %d events, %d of another type; want %d and 0", len(m.Seen), m.Counts[other.String()], eventsIn(0, 4))
	}
	commits, _, err := s.Load(ctx, other, 0)
	if err != nil {
		t.Fatal(err)
	}
	if at := commits[0].Events[0].RecordedAt; at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("Load's RecordedAt = %v, want about %v", at, before)
	}
}

func TestRunnerStampsRecordedAt(t *testing.T) {
	s := runnerStore(t)
	before := time.Now().Add(-time.Second)
	last := appendCommits(t, s, 0, 1)
	var got time.Time
	p := &recordedAtProjection{countingProjection: newCountingProjection("stamps", 1), at: &got}
	r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, r)
	waitFor(t, r, last)
	p.mu.Lock()
	defer p.mu.Unlock()
	if got.Before(before) || got.After(time.Now().Add(time.Second)) {
		t.Fatalf("RecordedAt = %v, want the store's time (after %v)", got, before)
	}
}

type recordedAtProjection struct {
	*countingProjection
	at *time.Time
}

func (p *recordedAtProjection) Apply(e es.Event) {
	p.countingProjection.Apply(e)
	p.mu.Lock()
	*p.at = e.RecordedAt
	p.mu.Unlock()
}

// scopedProjection reads only ev.steps.> streams.
type scopedProjection struct{ *countingProjection }

func (scopedProjection) Subjects() []string { return []string{"ev.steps.>"} }

// otherStream is a stream of no steps projection's.
var otherStream = es.StreamID{Context: "other", Type: "thing", ID: "x"}

// appendOther appends a commit to otherStream and returns its position.
func appendOther(tb testing.TB, s *tljs.Store) uint64 {
	tb.Helper()
	res, err := s.Append(context.Background(), otherStream, []proto.Message{wrapperspb.String("not steps")}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
	if err != nil {
		tb.Fatal(err)
	}
	return res.Position.Seq
}

func TestRunnerScopedProjection(t *testing.T) {
	s := runnerStore(t)
	ctx := context.Background()
	other := otherStream
	appendOther := func() uint64 { t.Helper(); return appendOther(t, s) }
	p := scopedProjection{newCountingProjection("scoped", 1)}
	r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})

	first := appendOther()            // 1
	mine := appendCommits(t, s, 0, 1) // 2: a steps commit
	last := appendOther()             // 3

	// Not running yet: nothing applied. Position 1 holds nothing of ours,
	// so waiting for it succeeds; 3 has our commit at 2 before it.
	if err := r.WaitFor(ctx, first); err != nil {
		t.Fatalf("WaitFor(%d), no event of ours before it: %v", first, err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := r.WaitFor(short, last); err == nil {
		t.Fatalf("WaitFor(%d) returned before our commit at %d was applied", last, mine)
	}

	startRunner(t, r)
	waitFor(t, r, last)
	m := p.model()
	if m.Counts[other.String()] != 0 || len(m.Seen) != eventsIn(0, 1) {
		t.Fatalf("a scoped runner applied %v", m.Counts)
	}
	if lag, err := r.Lag(ctx); err != nil || lag != 0 {
		t.Fatalf("idle lag = %d, %v; want 0 although other streams moved on", lag, err)
	}
	after := appendOther()
	if err := r.WaitFor(ctx, after); err != nil || r.Position() < after {
		t.Fatalf("WaitFor(%d) = %v, position %d", after, err, r.Position())
	}
	// Caught up, the runner follows only its subjects: its own new events
	// still arrive.
	more := appendCommits(t, s, 1, 2)
	waitFor(t, r, more)
	if m := p.model(); len(m.Seen) != eventsIn(0, 3) || len(m.Disorder) != 0 {
		t.Fatalf("after catching up the model saw %d events (disorder %v), want %d", len(m.Seen), m.Disorder, eventsIn(0, 3))
	}

	// A rebuild replays only our events and finishes though the last
	// position belongs to another stream.
	if err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(ctx); st.State != tljs.Running || st.Position < after || st.Lag != 0 {
		t.Fatalf("after rebuild: %+v", st)
	}
	if m := p.model(); len(m.Seen) != eventsIn(0, 3) {
		t.Fatalf("rebuilt model saw %d events, want %d", len(m.Seen), eventsIn(0, 3))
	}
}

// A snapshot whose metadata names chunks that are gone (as on a cluster
// node whose replica is behind its peers' purge) stalls when read: the
// runner reads it again a few times, then rebuilds from the events,
// rather than wait out the read's deadline with the model at 0.
func TestRunnerSnapshotReadStalls(t *testing.T) {
	stall, pause := tljs.SetSnapshotStall(300*time.Millisecond, 100*time.Millisecond)
	t.Cleanup(func() { tljs.SetSnapshotStall(stall, pause) })
	s := runnerStore(t)
	p1 := newCountingProjection("counts", 1)
	r1 := tljs.NewRunner(s, p1, tljs.RunnerOptions{Logger: quietLogger})
	stop := startRunner(t, r1)
	last := appendCommits(t, s, 0, 40)
	waitFor(t, r1, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx := shortCtx(t)
	info, err := snapshotBucket(t, s).GetInfo(ctx, "counts")
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.JetStream().Stream(ctx, "OBJ_projections")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("$O.projections.C."+info.NUID)); err != nil {
		t.Fatal(err)
	}

	p2 := newCountingProjection("counts", 1)
	r2 := tljs.NewRunner(s, p2, tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, r2)
	waitFor(t, r2, last)
	if n := p2.applies.Load(); n != int64(eventsIn(0, 40)) {
		t.Errorf("rebuilt runner applied %d events, want all %d", n, eventsIn(0, 40))
	}
	if !reflect.DeepEqual(p2.model(), p1.model()) {
		t.Errorf("rebuilt model differs from the one snapshotted")
	}
	if st := r2.Status(ctx); st.Rebuilds != 1 {
		t.Errorf("status %+v; want one rebuild", st)
	}
}
