package reactions_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/internal/poll"
	alertsmodel "github.com/tideline/tideline/projections/alerts"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/wire"
)

// fakeNotifier records notifications and fails the first failures calls.
type fakeNotifier struct {
	mu       sync.Mutex
	failures int
	calls    int
	notified map[string]int
}

func (f *fakeNotifier) Notify(_ context.Context, a *safetyv1.AlertRaisedV2) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.failures {
		return errors.New("webhook down")
	}
	f.notified[a.AlertId]++
	return nil
}

func (f *fakeNotifier) count() (alerts, total int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.notified {
		total += n
	}
	return len(f.notified), total
}

type env struct {
	ns     *server.Server
	store  *tljs.Store
	model  *alertsmodel.Model
	runner *tljs.Runner
	svc    *safety.Service
}

func setup(t testing.TB) *env {
	t.Helper()
	ns, nc := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	store, err := tljs.Open(ctx, nc, tljs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	model := alertsmodel.New(alertsmodel.Rules{})
	runner := tljs.NewRunner(store, model, tljs.RunnerOptions{})
	done := make(chan struct{})
	go func() { runner.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &env{ns: ns, store: store, model: model, runner: runner, svc: safety.NewService(store)}
}

func (e *env) engine(t testing.TB, rs ...reactions.Reaction) *reactions.Engine {
	t.Helper()
	return e.engineWith(t, reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 3}, rs...)
}

// engineWith runs rs with cfg (Conn, Decode and Logger filled in).
func (e *env) engineWith(t testing.TB, cfg reactions.Config, rs ...reactions.Reaction) *reactions.Engine {
	t.Helper()
	nc, err := natsserver.Connect(e.ns, "reactions")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close) // after the engine's (cleanups run last first)
	cfg.Conn, cfg.Decode, cfg.Logger = nc, wire.DecodeCommit, slog.New(slog.DiscardHandler)
	eng, err := reactions.New(context.Background(), cfg, rs...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, eng)
	return eng
}

// run runs eng until the test ends, and returns once it consumes.
func run(t testing.TB, eng *reactions.Engine) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- eng.Run(context.Background()) }()
	select {
	case <-eng.Running():
	case err := <-done:
		t.Fatalf("engine stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("engine did not start")
	}
	t.Cleanup(func() { eng.Close(); <-done })
}

func (e *env) raiseAndNotify(n reactions.Notifier) []reactions.Reaction {
	return []reactions.Reaction{
		reactions.RaiseAlerts(e.svc, reactions.AlertRules{WaitFor: e.runner.WaitFor, Triggered: e.model.Triggered}),
		reactions.NotifyAlerts(n),
	}
}

var rider = auth.Principal{Subject: "r1", Role: auth.Rider}

func danger(id, riderID string, sev safetyv1.Severity, at time.Time) *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: id, RiderId: riderID, Kind: safetyv1.DangerKind_DANGER_KIND_HARD_BRAKE,
		Severity: sev, PeakAccelG: 1.2, DetectedAt: timestamppb.New(at)}
}

func TestAlertsRaisedOnceAndNotified(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	n := &fakeNotifier{failures: 2, notified: map[string]int{}} // the webhook is down at first
	e.engine(t, e.raiseAndNotify(n)...)
	now := time.Now().Add(-10 * time.Minute)
	// r1: three low events within the window, reported from the phone.
	for i := range 3 {
		if _, err := e.svc.Report(ctx, rider, danger(fmt.Sprintf("p%d", i), "r1", safetyv1.Severity_SEVERITY_LOW, now.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	// r2: one high event from an edge device, plus its CRITICAL upgrade.
	dev := es.StreamID{Context: "safety", Type: "device", ID: "dev1"}
	for _, d := range []*safetyv1.DangerDetected{
		danger("dev1:crash-1:high", "r2", safetyv1.Severity_SEVERITY_HIGH, now),
		danger("dev1:crash-1:critical", "r2", safetyv1.Severity_SEVERITY_CRITICAL, now.Add(5*time.Second)),
	} {
		if _, err := e.store.Append(ctx, dev, []proto.Message{d}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 10*time.Second, "two alerts notified", func() bool { a, _ := n.count(); return a == 2 })
	if list, _ := e.model.List("", false, 10); len(list) != 2 {
		t.Fatalf("alerts = %v", list)
	}
	// The same events again (a resend beyond any dedup window) and a
	// restarted engine raise nothing new.
	if _, err := e.store.Append(ctx, dev, []proto.Message{danger("dev1:crash-1:high", "r2", safetyv1.Severity_SEVERITY_HIGH, now)}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	e.engine(t, e.raiseAndNotify(n)...)
	if _, err := e.svc.Report(ctx, rider, danger("p9", "r1", safetyv1.Severity_SEVERITY_LOW, now.Add(4*time.Minute))); err != nil {
		t.Fatal(err)
	}
	last, err := e.store.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "rules caught up", func() bool { return e.model.Position() >= last })
	if list, total := e.model.List("", false, 10); total != 2 {
		t.Fatalf("alerts after redelivery = %v", list)
	}
	if a, total := n.count(); a != 2 || total > 4 {
		t.Fatalf("notified %d alerts %d times", a, total)
	}
}

func TestFailingReactionIsPoisoned(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	var mu sync.Mutex
	var handled []uint64
	outcomes := map[string]int{}
	cfg := reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 3, OnOutcome: func(r string, o reactions.Outcome) {
		mu.Lock()
		outcomes[r+" "+o.String()]++
		mu.Unlock()
	}}
	e.engineWith(t, cfg, reactions.Reaction{
		Name:     "flaky",
		Subjects: []string{"ev.test.>"},
		Handle: func(_ context.Context, c es.Commit) error {
			if c.Events[0].Data.(*safetyv1.DangerDetected).EventId == "bad" {
				return errors.New("cannot handle")
			}
			mu.Lock()
			handled = append(handled, c.Seq)
			mu.Unlock()
			return nil
		},
	})
	for _, id := range []string{"bad", "good"} {
		if _, err := e.store.Append(ctx, es.StreamID{Context: "test", Type: "x", ID: id}, []proto.Message{danger(id, "r", 1, time.Now())}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
			t.Fatal(err)
		}
	}
	// The bad commit does not block the good one behind it.
	poll.Until(t, 10*time.Second, "good commit handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 1 })
	js, err := jetstream.New(e.store.JetStream().Conn())
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "bad commit poisoned", func() bool {
		s, err := js.Stream(ctx, reactions.PoisonStream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})
	s, _ := js.Stream(ctx, reactions.PoisonStream)
	m, err := s.GetLastMsgForSubject(ctx, reactions.PoisonSubjectPrefix+".flaky")
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("reason_poisoned") == "" {
		t.Fatalf("poisoned message headers = %v", m.Header)
	}
	// OnOutcome saw it all: the good commit handled, the bad one tried
	// four times (MaxRetries 3) and poisoned.
	want := map[string]int{"flaky handled": 1, "flaky failed": 4, "flaky poisoned": 1}
	if !poll.Within(5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return maps.Equal(outcomes, want) }) {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("outcomes %v, want %v", outcomes, want)
	}
}

// Commits that cannot be decoded go to the poison queue without retries:
// twenty of them ahead of a good commit delay it by no more than their one
// attempt each (with the default five retries each, from 100 ms doubling,
// they held it up about a minute). The bound, half that minute, is loose
// enough for a loaded CI machine (a few seconds there) and still fails
// with retries.
func TestUndecodableCommitsPoisonedAtOnce(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	handled := make(chan time.Time, 1)
	e.engineWith(t, reactions.Config{}, reactions.Reaction{ // default retries
		Name:     "watch",
		Subjects: []string{"ev.test.>"},
		Handle: func(_ context.Context, c es.Commit) error {
			handled <- time.Now()
			return nil
		},
	})
	for range 20 {
		if _, err := e.store.JetStream().Publish(ctx, "ev.test.x.junk", []byte("0123456789")); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now()
	if _, err := e.store.Append(ctx, es.StreamID{Context: "test", Type: "x", ID: "good"}, []proto.Message{danger("crit", "r1", safetyv1.Severity_SEVERITY_CRITICAL, at)}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	select {
	case done := <-handled:
		t.Logf("good commit handled %v after it was appended, behind 20 undecodable ones", done.Sub(at))
		if done.Sub(at) > 30*time.Second {
			t.Fatalf("good commit handled after %v", done.Sub(at))
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the good commit was not handled within 45s behind 20 undecodable ones")
	}
	js, _ := jetstream.New(e.store.JetStream().Conn())
	poll.Until(t, 10*time.Second, "20 commits poisoned", func() bool {
		s, err := js.Stream(ctx, reactions.PoisonStream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 20
	})
}

// A reaction that finds the store or a read model unavailable is tried
// again later, as often as it takes, and never poisons the commit: an
// operator fixing a stopped projection loses no alert.
func TestUnavailableIsRetriedLaterNotPoisoned(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	var mu sync.Mutex
	calls := 0
	handled := make(chan struct{})
	e.engineWith(t, reactions.Config{RetryInterval: 5 * time.Millisecond, MaxRetries: 2, RedeliverDelay: 10 * time.Millisecond}, reactions.Reaction{
		Name:     "patient",
		Subjects: []string{"ev.test.>"},
		Handle: func(context.Context, es.Commit) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls <= 10 { // several redeliveries' worth of in-process retries
				return es.Errorf(es.Unavailable, "read model alerts is stopped")
			}
			if calls == 11 {
				close(handled)
			}
			return nil
		},
	})
	if _, err := e.store.Append(ctx, es.StreamID{Context: "test", Type: "x", ID: "a"}, []proto.Message{danger("a", "r", 1, time.Now())}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatalf("not handled after %d calls", calls)
	}
	js, err := jetstream.New(e.store.JetStream().Conn())
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, reactions.PoisonStream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("poison stream holds %v (%v), want nothing", info.State.Msgs, err)
	}
}

// A reaction of Concurrency 2 works on two commits at once.
func TestConcurrentReaction(t *testing.T) {
	e := setup(t)
	in := make(chan struct{}, 2)
	both := make(chan struct{})
	var once sync.Once
	e.engine(t, reactions.Reaction{Name: "wide", Subjects: []string{"ev.safety.>"}, Concurrency: 2,
		Handle: func(ctx context.Context, c es.Commit) error {
			in <- struct{}{}
			if len(in) == 2 {
				once.Do(func() { close(both) })
			}
			select { // each waits for the other: one at a time would never get here
			case <-both:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
	for i := range 2 {
		if _, err := e.store.Append(context.Background(), es.StreamID{Context: "safety", Type: "rider", ID: fmt.Sprint("r", i)},
			[]proto.Message{&safetyv1.DangerDetected{EventId: fmt.Sprint("e", i)}}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-both:
	case <-time.After(10 * time.Second):
		t.Fatal("the two commits were not handled at once")
	}
}

// TestNewProvisionsEveryConsumer: New makes each reaction's durable
// consumer, on the reaction's subjects, before the engine runs (all at
// once, rather than one by one as the router subscribes).
func TestNewProvisionsEveryConsumer(t *testing.T) {
	e := setup(t)
	nc, err := natsserver.Connect(e.ns, "reactions")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close) // after the engine's
	noop := func(context.Context, es.Commit) error { return nil }
	rs := []reactions.Reaction{
		{Name: "one", Subjects: []string{"events.a.>"}, Handle: noop},
		{Name: "two", Subjects: []string{"events.b.>", "events.c.>"}, Handle: noop, Concurrency: 3},
	}
	eng, err := reactions.New(context.Background(), reactions.Config{Conn: nc, Decode: wire.DecodeCommit, Logger: slog.New(slog.DiscardHandler)}, rs...)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		c, err := js.Consumer(context.Background(), e.store.StreamName(), "reaction-"+r.Name)
		if err != nil {
			t.Fatalf("reaction %s: no consumer before Run: %v", r.Name, err)
		}
		if got := c.CachedInfo().Config.FilterSubjects; !slices.Equal(got, r.Subjects) {
			t.Errorf("reaction %s: consumer on %v, want %v", r.Name, got, r.Subjects)
		}
	}
	run(t, eng) // and the consumers made serve it
}
