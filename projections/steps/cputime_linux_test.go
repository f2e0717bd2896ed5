package steps_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/projtest"
	"github.com/tideline/tideline/projections/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// BenchmarkApplyCPU is BenchmarkApply at 1M users reporting the applying
// thread's CPU time per update (cpu-ns/op), which a busy machine inflates
// less than wall time.
func BenchmarkApplyCPU(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const users = 1_000_000
	bb := newBenchBoard(b, users)
	rng := rand.New(rand.NewPCG(3, 3))
	rec := &stepsv1.StepsRecorded{Date: benchDate}
	start, n := projtest.ThreadCPU(b), 0
	for b.Loop() {
		u := rng.IntN(users)
		bb.steps[u] += 1 + rng.Int32N(100)
		rec.UserId, rec.Steps = bb.ids[u], bb.steps[u]
		n++
		bb.m.Apply(es.Event{Data: rec, Position: es.Position{Seq: uint64(users + n)}})
	}
	b.ReportMetric(float64(projtest.ThreadCPU(b)-start)/float64(n), "cpu-ns/op")
}

// BenchmarkSnapshotStall reports the longest an Apply waits while
// snapshots are taken (projtest.SnapshotStall), at 1M users ranked on
// each of 2 dates, as updates to the newest date stream in, 3 snapshots
// 100k updates apart for each way: before segments, the runner encoded
// the whole model on Apply's goroutine (whole-*); now it captures there
// and encodes on another (segments-*; the first capture hands every
// leaderboard to Encode, so the next Applies copy the chunks they
// write). Run it with -benchtime 1x.
func BenchmarkSnapshotStall(b *testing.B) {
	const users, days, every = 1_000_000, 2, 100_000
	m := historyModel(users, days)
	rng := rand.New(rand.NewPCG(6, 6))
	seq := uint64(users * days)
	tail := make([]es.Event, 0, 9*every)
	for range 9 * every {
		seq++
		rec := &stepsv1.StepsRecorded{Date: benchDay(days - 1), UserId: fmt.Sprintf("user-%07d", rng.IntN(users)), Steps: 20000 + int32(seq)}
		tail = append(tail, es.Event{Data: rec, Position: es.Position{Seq: seq}})
	}
	projtest.SnapshotStall(b, m, tail, 3, nil)
}

var growUsers = flag.Int("grow.users", 2_000_000, "BenchmarkGrowStall: new users")

// BenchmarkGrowStall reports the longest step of the applying thread, in
// CPU time, while -grow.users new users each record one count, and the
// model's tables of users grow from none to all of them.
func BenchmarkGrowStall(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ids := make([]string, *growUsers)
	for i := range ids {
		ids[i] = fmt.Sprintf("01JD%022d", i)
	}
	var longest time.Duration
	for b.Loop() {
		m := steps.New()
		rec := &stepsv1.StepsRecorded{Date: benchDate}
		last := projtest.ThreadCPU(b)
		for i, id := range ids {
			rec.UserId, rec.Steps = id, int32(i%20000)
			m.Apply(es.Event{Data: rec, Position: es.Position{Seq: uint64(i + 1)}})
			now := projtest.ThreadCPU(b)
			longest = max(longest, now-last)
			last = now
		}
	}
	b.ReportMetric(float64(longest.Microseconds())/1000, "longest-cpu-ms")
}
