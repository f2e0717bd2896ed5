package api

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tideline/tideline/internal/poll"
)

// advancingModel is a read model whose advances the test makes.
type advancingModel struct {
	mu  sync.Mutex
	pos uint64
	ch  chan struct{}
}

func (m *advancingModel) Position() uint64                      { m.mu.Lock(); defer m.mu.Unlock(); return m.pos }
func (m *advancingModel) WaitFor(context.Context, uint64) error { return nil }
func (m *advancingModel) Advanced() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ch
}
func (m *advancingModel) advance() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos++
	close(m.ch)
	m.ch = make(chan struct{})
}

// The watchers of one query share one computation per advance, and are
// woken only when the answer's content changes; another query's watchers
// are not woken by its changes; the driver stops with the last watcher.
func TestSharedAnswersWakeOnlyOnChange(t *testing.T) {
	feed := &advancingModel{ch: make(chan struct{})}
	var computes atomic.Int64
	var mu sync.Mutex
	values := map[string]string{"a": "a0", "b": "b0"}
	rt := &runtime{closing: make(chan struct{}), live: new(atomic.Int64)}
	defer close(rt.closing)
	answers := newSharedAnswers(rt, feed, 0, func(k string) *wrapperspb.StringValue {
		computes.Add(1)
		mu.Lock()
		defer mu.Unlock()
		return wrapperspb.String(values[k])
	}, func(a, b *wrapperspb.StringValue) bool { return a.GetValue() == b.GetValue() })
	set := func(k, v string) {
		mu.Lock()
		values[k] = v
		mu.Unlock()
		feed.advance()
	}

	var as []*sharedAnswer[*wrapperspb.StringValue]
	for range 100 {
		as = append(as, answers.join("a"))
	}
	b := answers.join("b")
	if as[0] != as[99] || computes.Load() != 2 {
		t.Fatalf("100 watchers of a and one of b: %d computations, shared %v; want 2, shared", computes.Load(), as[0] == as[99])
	}
	aChanged, bChanged := as[0].Advanced(), b.Advanced()

	// b changes: a's watchers are not woken.
	set("b", "b1")
	select {
	case <-bChanged:
	case <-time.After(5 * time.Second):
		t.Fatal("b's watcher not woken by b's change")
	}
	if msg, v := b.latest(); msg.GetValue() != "b1" || v != 2 {
		t.Fatalf("b's answer %q version %d, want b1 version 2", msg.GetValue(), v)
	}
	poll.Until(t, 5*time.Second, "both drivers computing again", func() bool { return computes.Load() >= 4 })
	select {
	case <-aChanged:
		t.Fatal("a's watchers woken by a change of b only")
	default:
	}
	// a changes: its watchers are woken, by one computation.
	before := computes.Load()
	set("a", "a1")
	select {
	case <-aChanged:
	case <-time.After(5 * time.Second):
		t.Fatal("a's watchers not woken by a's change")
	}
	if msg, _ := as[42].latest(); msg.GetValue() != "a1" {
		t.Fatalf("a's answer %q, want a1", msg.GetValue())
	}
	if n := computes.Load() - before; n > 2 {
		t.Fatalf("%d computations for one advance, want one per query", n)
	}

	// The last watcher of a leaves: its driver stops computing.
	for _, a := range as {
		answers.leave("a", a)
	}
	answers.leave("b", b)
	answers.mu.Lock()
	left := len(answers.byKey)
	answers.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d queries still watched after every watcher left", left)
	}
	time.Sleep(2 * liveMinGap) // let the drivers see their stop; nothing to poll for
	before = computes.Load()
	set("a", "a2")
	time.Sleep(2 * liveMinGap) // a computation, were there one, would have run
	if n := computes.Load() - before; n != 0 {
		t.Fatalf("%d computations after every watcher left", n)
	}
}

// An answer that depends on the time too is computed again every refresh
// without advances, and its watchers woken when that changes it.
func TestSharedAnswersRefresh(t *testing.T) {
	feed := &advancingModel{ch: make(chan struct{})}
	var hour atomic.Int64
	rt := &runtime{closing: make(chan struct{}), live: new(atomic.Int64)}
	defer close(rt.closing)
	answers := newSharedAnswers(rt, feed, 10*time.Millisecond, func(string) *wrapperspb.Int64Value {
		return wrapperspb.Int64(hour.Load())
	}, func(a, b *wrapperspb.Int64Value) bool { return a.GetValue() == b.GetValue() })
	a := answers.join("q")
	defer answers.leave("q", a)
	changed := a.Advanced()
	hour.Store(1)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("not woken when the hour moved, with no advance")
	}
	if msg, v := a.latest(); msg.GetValue() != 1 || v != 2 {
		t.Fatalf("answer %d version %d, want 1 version 2", msg.GetValue(), v)
	}
}
