package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/projections"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// recordSteps appends each user's count for date, one commit each, on
// the users' streams, and returns the last position.
func recordSteps(tb testing.TB, s *tljs.Store, date string, steps int32, users ...string) uint64 {
	tb.Helper()
	var last uint64
	for _, u := range users {
		last = appendEvents(tb, s, es.StreamID{Context: "steps", Type: "user", ID: u},
			&stepsv1.StepsRecorded{UserId: u, Date: date, Steps: steps})
	}
	return last
}

func walkers(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, "walker-"+strconv.Itoa(i))
	}
	return out
}

// segmentObjects waits until the stored snapshot of projection name is
// at pos and returns its segment objects; with stopped (no snapshot in
// flight to remove old objects) it fails on delete markers.
func segmentObjects(tb testing.TB, s *tljs.Store, name string, pos uint64, stopped bool) map[string]bool {
	tb.Helper()
	ctx := context.Background()
	var obs jetstream.ObjectStore
	poll.Until(tb, 10*time.Second, fmt.Sprintf("a snapshot at %d", pos), func() bool {
		var err error
		if obs, err = s.JetStream().ObjectStore(ctx, "projections"); err != nil {
			return false
		}
		info, err := obs.GetInfo(ctx, name)
		return err == nil && info.Metadata["tideline-position"] == strconv.FormatUint(pos, 10)
	})
	// A list watches the bucket until it has seen every object, and it
	// can miss its end while a running snapshot writes and removes
	// objects (it waited 9 minutes in ci80): each try is bounded.
	var infos []*jetstream.ObjectInfo
	poll.Until(tb, time.Minute, "the bucket's objects listed", func() bool {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		infos, err = obs.List(lctx, jetstream.ListObjectsShowDeleted())
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			tb.Fatal(err)
		}
		return err == nil
	})
	out := map[string]bool{}
	for _, info := range infos {
		if strings.HasPrefix(info.Name, name+"/") {
			if info.Deleted && stopped {
				tb.Errorf("object %s is deleted but its marker is kept", info.Name)
			}
			out[info.Name] = true
		}
	}
	return out
}

func segmentOf(object string) string { return strings.Split(object, "/")[1] }

func segmentNames(objects map[string]bool) []string {
	var out []string
	for o := range objects {
		out = append(out, segmentOf(o))
	}
	slices.Sort(out)
	return out
}

// TestRunnerWritesOnlyChangedSegments: a steps runner stores its model as
// segments; after a restart that restores them, a change to a few counts
// adds one delta object and rewrites nothing else; a change to most of a
// date's counts rewrites that date's leaderboard and removes its old
// objects. (Each phase ends with the final snapshot of a stopped runner.)
func TestRunnerWritesOnlyChangedSegments(t *testing.T) {
	s := runnerStore(t)
	// No snapshot history: the first snapshot it keeps is a full one, and
	// whether a phase's runner has read the history before its final
	// snapshot depends on timing.
	opts := tljs.RunnerOptions{SnapshotEvery: time.Hour, HistoryEvery: -1, Logger: quietLogger}
	var model *stepsmodel.Model
	phase := func(record func() uint64) map[string]bool {
		t.Helper()
		model = stepsmodel.New()
		r := tljs.NewRunner(s, model, opts)
		stop := startRunner(t, r)
		last := record()
		waitFor(t, r, last)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		return segmentObjects(t, s, stepsmodel.Name, last, true)
	}
	dates := []string{"2026-03-01", "2026-03-02", "2026-03-03"}
	first := phase(func() (last uint64) {
		for i, date := range dates {
			last = recordSteps(t, s, date, int32(100*i), walkers(0, 40)...)
		}
		return last
	})
	if got, want := segmentNames(first), []string{"date-2026-03-01", "date-2026-03-02", "date-2026-03-03", "window"}; !slices.Equal(got, want) {
		t.Fatalf("segments %v, want %v", got, want)
	}

	second := phase(func() uint64 { return recordSteps(t, s, dates[2], 600, "walker-1", "walker-2") })
	added := slices.DeleteFunc(slices.Collect(maps.Keys(second)), func(o string) bool { return first[o] })
	if len(added) != 1 || segmentOf(added[0]) != "date-2026-03-03+1" || len(second) != len(first)+1 {
		t.Errorf("after two counts changed, objects went from %v to %v: want the same and one delta", segmentNames(first), segmentNames(second))
	}

	third := phase(func() uint64 { return recordSteps(t, s, dates[2], 700, walkers(0, 30)...) })
	if got := segmentNames(third); !slices.Equal(got, segmentNames(first)) {
		t.Errorf("after most of a date's counts changed, segments %v: want its leaderboard alone", got)
	}
	for o := range second {
		if keep := !strings.HasPrefix(segmentOf(o), "date-2026-03-03"); third[o] != keep {
			t.Errorf("object %s kept: %v, want %v", o, third[o], keep)
		}
	}

	restored := stepsmodel.New()
	r := tljs.NewRunner(s, restored, opts)
	startRunner(t, r)
	last, err := s.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, last)
	if !bytes.Equal(snapshotOf(t, restored), snapshotOf(t, model)) {
		t.Error("restored model differs from the one that wrote the segments")
	}
}

// TestRunnerRemovesLeftoverSegments: objects of the projection that its
// stored snapshot does not list, as a crash between writing segments and
// the manifest (or before removing the old ones) leaves them, are removed
// after the next snapshot of a later Run.
func TestRunnerRemovesLeftoverSegments(t *testing.T) {
	s := runnerStore(t)
	opts := tljs.RunnerOptions{SnapshotEvery: 20 * time.Millisecond, Logger: quietLogger}
	stop := startRunner(t, tljs.NewRunner(s, stepsmodel.New(), opts))
	last := recordSteps(t, s, "2026-03-01", 10, walkers(0, 5)...)
	segmentObjects(t, s, stepsmodel.Name, last, false)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	stray := stepsmodel.Name + "/date-2026-03-01/LEFTOVER"
	if _, err := snapshotBucket(t, s).PutBytes(context.Background(), stray, []byte("half a snapshot")); err != nil {
		t.Fatal(err)
	}
	model := stepsmodel.New()
	r := tljs.NewRunner(s, model, opts)
	startRunner(t, r)
	last = recordSteps(t, s, "2026-03-01", 20, "walker-0")
	waitFor(t, r, last)
	segmentObjects(t, s, stepsmodel.Name, last, false)
	poll.Until(t, 10*time.Second, "the leftover removed, delete marker and all", func() bool {
		_, err := snapshotBucket(t, s).GetInfo(context.Background(), stray, jetstream.GetObjectInfoShowDeleted())
		return errors.Is(err, jetstream.ErrObjectNotFound)
	})
	if n, _ := model.Steps("walker-1", "2026-03-01"); n != 10 {
		t.Errorf("restored model has %d for walker-1, want 10", n)
	}
}

// TestRunnerRebuildsOverDamagedSegments: a segment that is missing, or
// whose bytes are not those the manifest lists, discards the snapshot: the
// model is rebuilt from position 1, equal to the one that wrote it.
func TestRunnerRebuildsOverDamagedSegments(t *testing.T) {
	for _, damage := range []struct {
		name string
		do   func(obs jetstream.ObjectStore, object string) error
	}{
		{"missing", func(obs jetstream.ObjectStore, object string) error { return obs.Delete(context.Background(), object) }},
		{"other_bytes", func(obs jetstream.ObjectStore, object string) error {
			data, err := obs.GetBytes(context.Background(), object)
			if err == nil {
				data[len(data)-1]++
				_, err = obs.PutBytes(context.Background(), object, data)
			}
			return err
		}},
	} {
		t.Run(damage.name, func(t *testing.T) {
			s := runnerStore(t)
			want := stepsmodel.New()
			opts := tljs.RunnerOptions{SnapshotEvery: 20 * time.Millisecond, Logger: quietLogger}
			r0 := tljs.NewRunner(s, want, opts)
			stop := startRunner(t, r0)
			recordSteps(t, s, "2026-03-01", 10, walkers(0, 20)...)
			last := recordSteps(t, s, "2026-03-02", 20, walkers(0, 20)...)
			waitFor(t, r0, last)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			objs := segmentObjects(t, s, stepsmodel.Name, last, true)
			for o := range objs {
				if segmentOf(o) == "date-2026-03-01" {
					if err := damage.do(snapshotBucket(t, s), o); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := stepsmodel.New()
			r := tljs.NewRunner(s, got, opts)
			startRunner(t, r)
			waitFor(t, r, last)
			if !bytes.Equal(snapshotOf(t, got), snapshotOf(t, want)) {
				t.Error("model over a damaged segment differs from the one that wrote it")
			}
			more := recordSteps(t, s, "2026-03-02", 30, "walker-0")
			segmentObjects(t, s, stepsmodel.Name, more, false) // snapshots again
		})
	}
}

// failingSegments is a steps model whose next fail captures hand the
// runner a segment that fails to encode.
type failingSegments struct {
	*stepsmodel.Model
	fail atomic.Int32
}

func (f *failingSegments) Capture(full bool) (uint64, []projections.Segment) {
	pos, segs := f.Model.Capture(full)
	if f.fail.Add(-1) >= 0 {
		for i := range segs {
			if segs[i].Encode != nil {
				segs[i].Encode = func() ([]byte, error) { return nil, errors.New("no space for this segment") }
				break
			}
		}
	}
	return pos, segs
}

// TestRunnerRecoversFromFailedSegmentWrites: after a snapshot that failed
// part-way (its capture's changes never stored), the next one stores
// every segment, and restores to the live model.
func TestRunnerRecoversFromFailedSegmentWrites(t *testing.T) {
	s := runnerStore(t)
	live := &failingSegments{Model: stepsmodel.New()}
	opts := tljs.RunnerOptions{SnapshotEvery: 20 * time.Millisecond, Logger: quietLogger}
	stop := startRunner(t, tljs.NewRunner(s, live, opts))
	last := recordSteps(t, s, "2026-03-01", 10, walkers(0, 20)...)
	segmentObjects(t, s, stepsmodel.Name, last, false)
	live.fail.Store(2)
	last = recordSteps(t, s, "2026-03-01", 20, "walker-3") // a delta, which fails
	poll.Until(t, 10*time.Second, "the failing captures", func() bool { return live.fail.Load() < 0 })
	last = recordSteps(t, s, "2026-03-02", 5, "walker-4")
	segmentObjects(t, s, stepsmodel.Name, last, false)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := stepsmodel.New()
	r := tljs.NewRunner(s, got, opts)
	startRunner(t, r)
	waitFor(t, r, last)
	if n, _ := got.Steps("walker-3", "2026-03-01"); n != 20 || !bytes.Equal(snapshotOf(t, got), snapshotOf(t, live.Model)) {
		t.Errorf("restored model differs from the live one (walker-3 has %d, want 20)", n)
	}
}

// TestRunnerRebuildsStepsOfAnotherWindow: a steps model configured with
// another window than the stored snapshot's discards it and rebuilds.
func TestRunnerRebuildsStepsOfAnotherWindow(t *testing.T) {
	s := runnerStore(t)
	opts := tljs.RunnerOptions{SnapshotEvery: time.Hour, Logger: quietLogger}
	r := tljs.NewRunner(s, stepsmodel.New(), opts)
	stop := startRunner(t, r)
	recordSteps(t, s, "2026-03-01", 10, "walker-0")
	last := recordSteps(t, s, "2026-03-09", 20, "walker-0")
	waitFor(t, r, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := stepsmodel.New(stepsmodel.Window(7))
	r = tljs.NewRunner(s, got, opts)
	startRunner(t, r)
	waitFor(t, r, last)
	if _, ok := got.Steps("walker-0", "2026-03-01"); ok || got.Horizon() != "2026-03-03" {
		t.Errorf("a 7-day model holds 2026-03-01 (horizon %s): restored from a 35-day snapshot", got.Horizon())
	}
}

// TestRunnerStepsLiveEqualsRebuilt: a steps model whose window moves
// through 40 dates, built live with frequent segmented snapshots and
// restarts that restore them, equals one rebuilt from position 1; late
// records for dates already past the window are ignored alike.
func TestRunnerStepsLiveEqualsRebuilt(t *testing.T) {
	s := runnerStore(t)
	var warnings bytes.Buffer // a restore that fails warns, and rebuilds
	opts := tljs.RunnerOptions{SnapshotEvery: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&warnings, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	live := stepsmodel.New(stepsmodel.Window(7))
	var last uint64
	for batch := range 4 {
		r := tljs.NewRunner(s, live, opts)
		stop := startRunner(t, r)
		for d := batch * 10; d < batch*10+10; d++ {
			date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d).Format("2006-01-02")
			late := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d-9).Format("2006-01-02")
			recordSteps(t, s, date, int32(100+d), walkers(d%5, d%5+8)...)
			last = recordSteps(t, s, late, int32(9000+d), walkers(0, 2)...)
		}
		waitFor(t, r, last)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		live = stepsmodel.New(stepsmodel.Window(7)) // the next Run restores it
	}
	r := tljs.NewRunner(s, live, opts)
	startRunner(t, r)
	waitFor(t, r, last)
	rebuilt := stepsmodel.New(stepsmodel.Window(7))
	fresh := tljs.NewRunner(s, rebuilt, tljs.RunnerOptions{Bucket: "fresh", Logger: quietLogger})
	startRunner(t, fresh)
	waitFor(t, fresh, last)
	if !bytes.Equal(snapshotOf(t, live), snapshotOf(t, rebuilt)) {
		t.Error("live model differs from the rebuilt one")
	}
	if warnings.Len() > 0 {
		t.Errorf("runner warned:\n%s", &warnings)
	}
	if live.Horizon() != "2026-02-03" || live.Total("2026-01-05") == 0 {
		t.Errorf("horizon %s, %d ranked on 2026-01-05: the window did not move as expected", live.Horizon(), live.Total("2026-01-05"))
	}
}
