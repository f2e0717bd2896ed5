package jetstream_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/wire"
)

// Runners created with one Replay are fed by one pass: each applies what
// a runner of its own would (scoped ones only their subjects, one with a
// snapshot only what follows it), and carries on live once the pass is
// over. A runner that comes after the pass has gone past its position,
// and a rebuild, read on consumers of their own (the history is shorter
// than a pass of their own needs: see TestOwnPassReadsFromFiles).
//
// It runs twice: reading through the server, and from the stream's files
// (Config.BlockDir), which give every commit the pass reads.
func TestReplaySharedPass(t *testing.T) {
	t.Run("through the server", func(t *testing.T) { testReplaySharedPass(t, runnerStore(t), false) })
	t.Run("from the files", func(t *testing.T) { testReplaySharedPass(t, blockDirStore(t), true) })
}

// blockDirStore is runnerStore reading replays from the stream's files.
func blockDirStore(tb testing.TB) *tljs.Store {
	tb.Helper()
	s, _ := blockDirStoreAt(tb)
	return s
}

// blockDirStoreAt is blockDirStore, and the stream's directory.
func blockDirStoreAt(tb testing.TB) (*tljs.Store, string) {
	tb.Helper()
	ns, nc := natstest.Start(tb)
	dir := natsserver.StreamDir(ns, wire.EventsStream)
	s, err := tljs.Open(context.Background(), nc, tljs.Config{BlockDir: dir})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	return s, dir
}

func testReplaySharedPass(t *testing.T, s *tljs.Store, files bool) {
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
	if st := pass.Stats(); files && st.Files != int64(last) || !files && st.Files != 0 {
		t.Fatalf("%d commits read from the files, want %d", st.Files, map[bool]uint64{true: last}[files])
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

// Commits appended while the pass reads the stream's files reach every
// runner once, in order: the files give what the stream held when the
// pass began, the server the rest.
func TestReplayFromFilesWithWritesMeanwhile(t *testing.T) {
	s := blockDirStore(t)
	appendOther(t, s)
	before := appendCommits(t, s, 0, 3000)
	pass, all, scoped, runners := allAndScoped(s)
	writes := make(chan uint64, 1)
	go func() {
		last, err := tryAppendCommits(s, 3000, 600)
		if err != nil {
			t.Error(err)
		}
		writes <- last
	}()
	for _, r := range runners {
		startRunner(t, r)
	}
	last := <-writes
	for _, r := range runners {
		waitFor(t, r, last)
	}
	st := pass.Stats()
	if st.Files < int64(before) || st.Files > int64(last) {
		t.Fatalf("%d commits read from the files, want at least the %d stored before the pass and at most %d", st.Files, before, last)
	}
	want := eventsIn(0, 3600)
	checkModel(t, all.model(), want+1)
	checkModel(t, scoped.model(), want)
	if m := freshModel(t, s, "fresh", last); len(m.Seen) != len(all.model().Seen) {
		t.Fatalf("a runner through the server saw %d events, the one fed from the files %d", len(m.Seen), len(all.model().Seen))
	}
}

// The pass's consumer starts only once the last commit read from the
// files has been delivered, however slow the delivering goroutine: here
// each of its batches waits, and commits the consumer is to give are
// already stored, so a consumer that started early would hand them on
// first.
func TestReplayFromFilesDeliveredBeforeConsumer(t *testing.T) {
	s := blockDirStore(t)
	before := appendCommits(t, s, 0, 3000)
	var once sync.Once
	appended := make(chan uint64, 1)
	tljs.SetFileDeliverPause(t, func() {
		once.Do(func() {
			last, err := tryAppendCommits(s, 3000, 200)
			if err != nil {
				t.Error(err)
			}
			appended <- last
		})
		time.Sleep(20 * time.Millisecond) // a slow batch, not a wait for anything
	})
	pass, all, scoped, runners := allAndScoped(s)
	for _, r := range runners {
		startRunner(t, r)
	}
	var last uint64
	select {
	case last = <-appended:
	case <-time.After(30 * time.Second):
		t.Fatal("the pass delivered nothing from the files in 30 s")
	}
	if last != before+200 {
		t.Fatalf("appended through %d, want %d", last, before+200)
	}
	for _, r := range runners {
		waitFor(t, r, last)
	}
	if st := pass.Stats(); st.Files != int64(before) {
		t.Fatalf("%d commits read from the files, want the %d stored before the pass", st.Files, before)
	}
	want := eventsIn(0, 3200)
	checkModel(t, all.model(), want)
	checkModel(t, scoped.model(), want)
}

// A pass whose runners all stop while it reads the files ends there: a
// runner that comes later reads on a consumer of its own.
func TestReplayFromFilesLeftEarly(t *testing.T) {
	s := blockDirStore(t)
	last := appendCommits(t, s, 0, 3000)
	pass := tljs.NewReplay(s, quietLogger)
	first := tljs.NewRunner(s, newCountingProjection("first", 1), tljs.RunnerOptions{Logger: quietLogger, Replay: pass})
	pass.Gathered()
	stop := startRunner(t, first)
	poll.Until(t, 10*time.Second, "the pass under way", func() bool { return pass.Stats().Files > 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the pass left", func() bool { return pass.Stats().On == 0 })
	late := newCountingProjection("late", 1)
	lr := tljs.NewRunner(s, late, tljs.RunnerOptions{Logger: quietLogger, Replay: pass})
	startRunner(t, lr)
	waitFor(t, lr, last)
	checkModel(t, late.model(), eventsIn(0, 3000))
	if st := pass.Stats(); st.Alone != 1 {
		t.Fatalf("%+v: want the late runner alone", st)
	}
}

// A record the files cannot vouch for (here a flipped byte on disk, where
// the server still has the block in memory) stops the read from the
// files just before it; the pass goes on through the server from there,
// and every runner gets every commit once.
func TestReplayFromFilesStopsAtDamage(t *testing.T) {
	s, dir := blockDirStoreAt(t)
	appendOther(t, s)
	last := appendCommits(t, s, 0, 999)
	// Flip the last byte of the 500th record's payload.
	path := filepath.Join(dir, "msgs", "1.blk")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := 0
	for range 499 {
		at += int(binary.LittleEndian.Uint32(b[at:]) &^ (1 << 31))
	}
	end := at + int(binary.LittleEndian.Uint32(b[at:])&^(1<<31)) - 8 - 1
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{b[end] ^ 0x01}, int64(end)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	pass, all, scoped, runners := allAndScoped(s)
	for _, r := range runners {
		startRunner(t, r)
	}
	for _, r := range runners {
		waitFor(t, r, last)
	}
	if st := pass.Stats(); st.Files != 499 {
		t.Fatalf("%d commits read from the files, want the 499 before the damaged one", st.Files)
	}
	checkModel(t, all.model(), eventsIn(0, 999)+1)
	checkModel(t, scoped.model(), eventsIn(0, 999))
}

// allAndScoped returns a pass, gathered, and two runners on it not yet
// started: one of every event and one scoped to the steps context.
func allAndScoped(s *tljs.Store) (*tljs.Replay, *countingProjection, scopedProjection, []*tljs.Runner) {
	pass := tljs.NewReplay(s, quietLogger)
	all := newCountingProjection("all", 1)
	scoped := scopedProjection{newCountingProjection("scoped", 1)}
	var runners []*tljs.Runner
	for _, p := range []projections.Projection{all, scoped} {
		runners = append(runners, tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger, Replay: pass}))
	}
	pass.Gathered()
	return pass, all, scoped, runners
}

// A runner alone, or rebuilding, on a store that reads its stream's files
// replays from them on a pass of its own: its model is whole, and the
// files gave what they held.
func TestOwnPassReadsFromFiles(t *testing.T) {
	s := blockDirStore(t)
	first := appendCommits(t, s, 0, 5000)
	all := newCountingProjection("all", 1)
	r := tljs.NewRunner(s, all, tljs.RunnerOptions{Logger: quietLogger})
	startRunner(t, r)
	waitFor(t, r, first)
	checkModel(t, all.model(), eventsIn(0, 5000))
	if got := s.FilesRead(); got != int64(first) {
		t.Fatalf("a lone runner's replay read %d commits from the files, want %d", got, first)
	}

	last := appendCommits(t, s, 5000, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, last)
	checkModel(t, all.model(), eventsIn(0, 5100))
	if got := s.FilesRead() - int64(first); got != int64(last) {
		t.Fatalf("the rebuild read %d commits from the files, want %d", got, last)
	}
}
