package jetstream_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
)

// TestRunnerNeverRecordsAPositionPastTheStreamEnd: a min_position no
// append returned (past the end, up to 2^64-1) is refused at once and
// changes nothing: position, lag, the snapshot, and a restart all see
// only what was written.
func TestRunnerNeverRecordsAPositionPastTheStreamEnd(t *testing.T) {
	type projection interface {
		projections.Projection
		model() countingModel
	}
	for _, scoped := range []bool{true, false} {
		for _, farthest := range []bool{false, true} {
			t.Run(fmt.Sprintf("scoped=%v/farthest=%v", scoped, farthest), func(t *testing.T) {
				s := runnerStore(t)
				newProjection := func() projection {
					if scoped {
						return scopedProjection{newCountingProjection("counts", 1)}
					}
					return newCountingProjection("counts", 1)
				}
				p := newProjection()
				r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})
				stop := startRunner(t, r)
				last := appendCommits(t, s, 0, 10)
				waitFor(t, r, last)

				bogus := last + 1000
				if farthest {
					bogus = math.MaxUint64
				}
				ctx := shortCtx(t)
				if err := r.WaitFor(ctx, bogus); es.KindOf(err) != es.OutOfRange || ctx.Err() != nil {
					t.Fatalf("WaitFor(%d) = %v (kind %v), want out of range at once", bogus, err, es.KindOf(err))
				}
				if pos := r.Position(); pos != last {
					t.Fatalf("position %d after WaitFor(%d), want %d", pos, bogus, last)
				}

				more := appendCommits(t, s, 10, 5)
				waitFor(t, r, more)
				if st := r.Status(context.Background()); st.Position != more || st.Lag != 0 {
					t.Fatalf("status %+v, want position %d lag 0", st, more)
				}
				if err := stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				if pos := snapshotMeta(t, s, "projections", "counts")["tideline-position"]; pos != strconv.FormatUint(more, 10) {
					t.Fatalf("snapshot at %s, want %d", pos, more)
				}

				p2 := newProjection()
				r2 := tljs.NewRunner(s, p2, tljs.RunnerOptions{Logger: quietLogger})
				startRunner(t, r2)
				end := appendCommits(t, s, 15, 5)
				waitFor(t, r2, end)
				checkModel(t, p2.model(), eventsIn(0, 20))
				if err := r2.Rebuild(shortCtx(t)); err != nil {
					t.Fatalf("Rebuild after restart: %v", err)
				}
				checkModel(t, p2.model(), eventsIn(0, 20))
			})
		}
	}
}

// TestRunnerDiscardsSnapshotPastTheStreamEnd: a snapshot that claims a
// position the stream never reached (an older bug stored one) would hide
// every write up to it; it is discarded and the model rebuilt.
func TestRunnerDiscardsSnapshotPastTheStreamEnd(t *testing.T) {
	s := runnerStore(t)
	opts := tljs.RunnerOptions{Logger: quietLogger}
	r1 := tljs.NewRunner(s, newCountingProjection("counts", 1), opts)
	stop := startRunner(t, r1)
	last := appendCommits(t, s, 0, 10)
	waitFor(t, r1, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	obs := snapshotBucket(t, s)
	ctx := context.Background()
	info, err := obs.GetInfo(ctx, "counts")
	if err != nil {
		t.Fatal(err)
	}
	data, err := obs.GetBytes(ctx, "counts")
	if err != nil {
		t.Fatal(err)
	}
	info.Metadata["tideline-position"] = strconv.FormatUint(last+100, 10)
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: "counts", Metadata: info.Metadata}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}

	more := appendCommits(t, s, 10, 5)
	p2 := newCountingProjection("counts", 1)
	r2 := tljs.NewRunner(s, p2, opts)
	stop = startRunner(t, r2)
	waitFor(t, r2, more)
	checkModel(t, p2.model(), eventsIn(0, 15))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if pos := snapshotMeta(t, s, "projections", "counts")["tideline-position"]; pos != strconv.FormatUint(more, 10) {
		t.Fatalf("snapshot at %s after the rebuild, want %d", pos, more)
	}
}
