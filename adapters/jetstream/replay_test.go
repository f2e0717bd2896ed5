package jetstream_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/projections"
)

// Runners created with one Replay are fed by one pass: each applies what
// a runner of its own would (scoped ones only their subjects, one with a
// snapshot only what follows it), and carries on live once the pass is
// over. A runner that comes after the pass has gone past its position,
// and a rebuild, read on consumers of their own.
func TestReplaySharedPass(t *testing.T) {
	s := runnerStore(t)
	ctx := context.Background()
	appendOther := func() uint64 { t.Helper(); return appendOther(t, s) }
	appendCommits(t, s, 0, 300)
	appendOther()
	mid := appendCommits(t, s, 300, 300)
	otherBefore := 1

	// "ahead" has a snapshot at mid: a runner of its own writes it.
	ahead := newCountingProjection("ahead", 1)
	r := tljs.NewRunner(s, ahead, tljs.RunnerOptions{Logger: quietLogger})
	stop := startRunner(t, r)
	waitFor(t, r, mid)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		appendOther()
		otherBefore++
	}
	last := appendCommits(t, s, 600, 200)

	pass := tljs.NewReplay(s, quietLogger)
	all := newCountingProjection("all", 1)
	scoped := scopedProjection{newCountingProjection("scoped", 1)}
	ahead = newCountingProjection("ahead", 1)
	var runners []*tljs.Runner
	for _, p := range []projections.Projection{all, scoped, ahead} {
		runners = append(runners, tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger, Replay: pass}))
	}
	pass.Gathered()
	for _, r := range runners {
		startRunner(t, r)
	}
	for _, r := range runners {
		waitFor(t, r, last)
	}
	if st := pass.Stats(); st.Joined != 3 || st.Alone != 0 {
		t.Fatalf("after the start: %+v, want all 3 joined", st)
	}
	// Caught up, each leaves the pass for a consumer of its own.
	poll.Until(t, 10*time.Second, "every runner off the pass", func() bool { return pass.Stats().On == 0 })
	wantSteps := eventsIn(0, 800)
	checkModel(t, all.model(), wantSteps+otherBefore)
	checkModel(t, scoped.model(), wantSteps)
	if m := ahead.model(); len(m.Seen) != wantSteps+otherBefore || len(m.Disorder) != 0 {
		t.Fatalf("the runner with a snapshot saw %d events (disorder %v), want %d", len(m.Seen), m.Disorder, wantSteps+otherBefore)
	}

	// Live: each on its own consumer, the scoped one on its subjects.
	appendOther()
	end := appendCommits(t, s, 800, 50)
	for _, r := range runners {
		waitFor(t, r, end)
	}
	wantSteps = eventsIn(0, 850)
	checkModel(t, all.model(), wantSteps+otherBefore+1)
	checkModel(t, scoped.model(), wantSteps)

	// Too late for the pass: a runner of its own.
	late := newCountingProjection("late", 1)
	lr := tljs.NewRunner(s, late, tljs.RunnerOptions{Logger: quietLogger, Replay: pass})
	startRunner(t, lr)
	waitFor(t, lr, end)
	checkModel(t, late.model(), wantSteps+otherBefore+1)
	if err := runners[1].Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	checkModel(t, scoped.model(), wantSteps)
	if st := pass.Stats(); st.Joined != 3 || st.Alone != 2 {
		t.Fatalf("after a late runner and a rebuild: %+v, want 3 joined, 2 alone", st)
	}
	if m := freshModel(t, s, "fresh-all", end); len(m.Seen) != len(all.model().Seen) {
		t.Fatalf("a fresh runner saw %d events, the shared one %d", len(m.Seen), len(all.model().Seen))
	}
}

// dataProjection records the Data of every event it applies.
type dataProjection struct {
	*countingProjection
	mu   sync.Mutex
	data map[es.Position]proto.Message
}

func (p *dataProjection) Apply(e es.Event) {
	p.countingProjection.Apply(e)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.data[e.Position] = e.Data
}

// A pass decodes each commit once for all its runners: every projection
// it feeds gets the same events (Projection.Apply does not change them).
// A runner on a consumer of its own decodes its own.
func TestReplayDecodesOnce(t *testing.T) {
	s := runnerStore(t)
	appendOther(t, s)
	last := appendCommits(t, s, 0, 200)
	pass := tljs.NewReplay(s, quietLogger)
	var ps []*dataProjection
	var runners []*tljs.Runner
	for _, name := range []string{"a", "b", "alone"} {
		p := &dataProjection{countingProjection: newCountingProjection(name, 1), data: map[es.Position]proto.Message{}}
		opts := tljs.RunnerOptions{Logger: quietLogger, Replay: pass}
		if name == "alone" {
			opts.Replay = nil
		}
		ps = append(ps, p)
		runners = append(runners, tljs.NewRunner(s, p, opts))
	}
	pass.Gathered()
	for _, r := range runners {
		startRunner(t, r)
	}
	for _, r := range runners {
		waitFor(t, r, last)
	}
	if st := pass.Stats(); st.Joined != 2 {
		t.Fatalf("%+v, want 2 joined", st)
	}
	a, b, alone := ps[0], ps[1], ps[2]
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	alone.mu.Lock()
	defer alone.mu.Unlock()
	if want := eventsIn(0, 200) + 1; len(a.data) != want || len(b.data) != want || len(alone.data) != want {
		t.Fatalf("applied %d, %d and %d events, want %d each", len(a.data), len(b.data), len(alone.data), want)
	}
	for pos, d := range a.data {
		if d == nil {
			t.Fatalf("event at %v: no data", pos)
		}
		if b.data[pos] != d {
			t.Fatalf("event at %v: the pass's runners got two decodings of it", pos)
		}
		if alone.data[pos] == d || !proto.Equal(alone.data[pos], d) {
			t.Fatalf("event at %v: the runner of its own got %v, want its own decoding of %v", pos, alone.data[pos], d)
		}
	}
}
