package steps_test

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/es"
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
	start, n := threadCPU(b), 0
	for b.Loop() {
		u := rng.IntN(users)
		bb.steps[u] += 1 + rng.Int32N(100)
		rec.UserId, rec.Steps = bb.ids[u], bb.steps[u]
		n++
		bb.m.Apply(es.Event{Data: rec, Position: es.Position{Seq: uint64(users + n)}})
	}
	b.ReportMetric(float64(threadCPU(b)-start)/float64(n), "cpu-ns/op")
}

// BenchmarkSnapshotStall reports the longest an Apply waits while
// snapshots are taken, at 1M users ranked on each of 2 dates, as updates
// to the newest date stream in: before segments, the runner encoded the
// whole model on Apply's goroutine (whole-*); now it captures there and
// encodes on another (segments-*; the first capture hands every
// leaderboard to Encode, so the next Applies copy the chunks they write).
// Each takes 3 snapshots 100k updates apart, and the same updates without
// snapshots (none-*) show the machine's own hiccups. *-cpu-ms is the
// longest step in CPU time of the applying thread (what the model costs
// it); *-wall-ms in wall time, which on a shared machine also holds the
// time it was not scheduled. Run it with -benchtime 1x.
func BenchmarkSnapshotStall(b *testing.B) {
	const users, days, every = 1_000_000, 2, 100_000
	m := historyModel(users, days)
	rng := rand.New(rand.NewPCG(6, 6))
	seq := uint64(users * days)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// stall applies 3 intervals of updates, calling snap before each, and
	// returns the longest step from one Apply's end to the next's.
	stall := func(snap func()) (wall, cpu time.Duration) {
		lastWall, lastCPU := time.Now(), threadCPU(b)
		for i := range 3 * every {
			if i%every == 0 {
				snap()
			}
			raiseSome(m, rng, users, days, 1, &seq)
			nowWall, nowCPU := time.Now(), threadCPU(b)
			wall, cpu = max(wall, nowWall.Sub(lastWall)), max(cpu, nowCPU-lastCPU)
			lastWall, lastCPU = nowWall, nowCPU
		}
		return wall, cpu
	}
	var none, whole, segmented [2]time.Duration
	for b.Loop() {
		none[0], none[1] = stall(func() {})
		whole[0], whole[1] = stall(func() {
			if _, err := m.Snapshot(); err != nil {
				b.Fatal(err)
			}
		})
		var encoding sync.WaitGroup
		segmented[0], segmented[1] = stall(func() {
			encoding.Wait() // a runner skips the snapshot instead; these are far apart
			_, segs := m.Capture(false)
			encoding.Go(func() { encodeAll(b, segs) })
		})
		encoding.Wait()
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	for _, r := range []struct {
		name string
		d    [2]time.Duration
	}{{"none", none}, {"whole", whole}, {"segments", segmented}} {
		b.ReportMetric(ms(r.d[0]), r.name+"-wall-ms")
		b.ReportMetric(ms(r.d[1]), r.name+"-cpu-ms")
	}
	b.ReportMetric(float64(segmented[1])/float64(whole[1]), "cpu-ratio")
}

// threadCPU returns the CPU time the calling OS thread has used.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
