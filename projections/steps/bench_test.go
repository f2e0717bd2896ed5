package steps_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/procstatus"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/projtest"
	"github.com/tideline/tideline/projections/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

const benchDate = "2025-06-01"

var benchSizes = []struct {
	name  string
	users int
}{{"users=10k", 10_000}, {"users=1M", 1_000_000}}

type benchBoard struct {
	m     *steps.Model
	ids   []string
	steps []int32
}

// newBenchBoard ranks users on benchDate with random counts below 20000.
func newBenchBoard(b *testing.B, users int) *benchBoard {
	b.Helper()
	rng := rand.New(rand.NewPCG(uint64(users), 1))
	bb := &benchBoard{m: steps.New(), ids: make([]string, users), steps: make([]int32, users)}
	rec := &stepsv1.StepsRecorded{Date: benchDate}
	for i := range users {
		bb.ids[i] = fmt.Sprintf("user-%07d", i)
		bb.steps[i] = rng.Int32N(20000)
		rec.UserId, rec.Steps = bb.ids[i], bb.steps[i]
		bb.m.Apply(es.Event{Data: rec, Position: es.Position{Seq: uint64(i + 1)}})
	}
	return bb
}

// BenchmarkApply raises a random ranked user's count: the steady-state
// update: a move from one count to another.
func BenchmarkApply(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			bb := newBenchBoard(b, size.users)
			rng := rand.New(rand.NewPCG(3, 3))
			rec := &stepsv1.StepsRecorded{Date: benchDate}
			for i := 0; b.Loop(); i++ {
				u := rng.IntN(size.users)
				bb.steps[u] += 1 + rng.Int32N(100)
				rec.UserId, rec.Steps = bb.ids[u], bb.steps[u]
				bb.m.Apply(es.Event{Data: rec, Position: es.Position{Seq: uint64(size.users + i + 1)}})
			}
		})
	}
}

func BenchmarkTop10(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			bb := newBenchBoard(b, size.users)
			for b.Loop() {
				if len(bb.m.Top(benchDate, 10)) != 10 {
					b.Fatal("short top")
				}
			}
		})
	}
}

func BenchmarkRank(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			bb := newBenchBoard(b, size.users)
			rng := rand.New(rand.NewPCG(4, 4))
			for b.Loop() {
				if _, ok := bb.m.Rank(benchDate, bb.ids[rng.IntN(size.users)]); !ok {
					b.Fatal("unranked")
				}
			}
		})
	}
}

// BenchmarkSnapshot and BenchmarkRestore show how long a snapshot holds
// the read lock (blocking Apply) and how long a restart restores.
func BenchmarkSnapshot(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			bb := newBenchBoard(b, size.users)
			for b.Loop() {
				data, err := bb.m.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(len(data)), "bytes")
			}
		})
	}
}

func BenchmarkRestore(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(size.name, func(b *testing.B) {
			data, err := newBenchBoard(b, size.users).m.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			m := steps.New()
			for b.Loop() {
				if err := m.Restore(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFootprint reports the model's heap and snapshot per user-day
// (an entity is one user's count on one date; users each record every one
// of days consecutive dates), and per summarised date. With days past the window, the default
// window holds 35 of them and summarises the rest, while window=all (as
// the model did before it had a window) holds every date. Run it with
// -benchtime 1x.
func BenchmarkFootprint(b *testing.B) {
	for _, c := range []struct {
		name        string
		users, days int
		opts        []steps.Option
	}{
		{"users=100k/days=1", 100_000, 1, nil},
		{"users=100k/days=35", 100_000, 35, nil},
		{"users=50k/days=100", 50_000, 100, nil},
		{"users=50k/days=100/window=all", 50_000, 100, []steps.Option{steps.Window(steps.MaxWindow)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			projtest.Footprint(b, c.users*c.days, func() projections.Projection {
				return historyModel(c.users, c.days, c.opts...)
			})
		})
	}
	// An entity here is a date that left the window: 2,000 of them, each
	// of 150 users, all but the newest summarised (a one-day window).
	b.Run("summarised-dates=2000", func(b *testing.B) {
		projtest.Footprint(b, 2000, func() projections.Projection {
			m := steps.New(steps.Window(1))
			rec := &stepsv1.StepsRecorded{}
			seq := uint64(0)
			for d := range 2001 {
				rec.Date = benchDay(d)
				for u := range 150 {
					seq++
					rec.UserId, rec.Steps = fmt.Sprintf("user-%07d", d*1000+u), int32(u)
					m.Apply(es.Event{Data: rec, Position: es.Position{Seq: seq}})
				}
			}
			return m
		})
	})
}

var (
	bigUsers = flag.Int("footprint.users", 0, "BenchmarkFootprintAtScale: users, each recording every date (0 skips it)")
	bigDays  = flag.Int("footprint.days", 30, "BenchmarkFootprintAtScale: consecutive dates")
)

// BenchmarkFootprintAtScale builds historyModel(-footprint.users,
// -footprint.days), with ids as long as a ULID, and reports the live heap
// per user-day, the process's resident memory with the model held
// (rss-MB), with GOMEMLIMIT if the environment sets it, and the build's
// peak (peak-rss-MB). Run it alone, with -benchtime 1x: for 10M users and
// 30 days it takes minutes and about 4 GB.
func BenchmarkFootprintAtScale(b *testing.B) {
	if *bigUsers == 0 {
		b.Skip("set -footprint.users")
	}
	users, days := *bigUsers, *bigDays
	for b.Loop() {
		before := projtest.HeapAlloc()
		m := historyModelIDs(users, days, 26)
		heap := projtest.HeapAlloc() - before
		debug.FreeOSMemory()
		b.ReportMetric(float64(heap)/float64(users*days), "B/user-day")
		b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
		b.ReportMetric(rssMB(b, "VmRSS"), "rss-MB")
		b.ReportMetric(rssMB(b, "VmHWM"), "peak-rss-MB")
		runtime.KeepAlive(m)
	}
}

// rssMB returns the process's status field (VmRSS, VmHWM) in MiB.
func rssMB(b *testing.B, field string) float64 {
	v, err := procstatus.Bytes(procstatus.Self, field)
	if err != nil {
		b.Skip(err)
	}
	return float64(v) / (1 << 20)
}

// historyModel returns a model where users recorded a random count for
// each of days consecutive dates, date after date.
func historyModel(users, days int, opts ...steps.Option) *steps.Model {
	return historyModelIDs(users, days, 12, opts...)
}

// historyModelIDs is historyModel with ids of idLen bytes (at least 12).
func historyModelIDs(users, days, idLen int, opts ...steps.Option) *steps.Model {
	m := steps.New(opts...)
	rng := rand.New(rand.NewPCG(uint64(users), uint64(days)))
	ids := make([]string, users)
	for u := range ids {
		ids[u] = fmt.Sprintf("user-%0*d", idLen-5, u)
	}
	rec := &stepsv1.StepsRecorded{}
	seq := uint64(0)
	for d := range days {
		rec.Date = benchDay(d)
		for _, id := range ids {
			seq++
			rec.UserId, rec.Steps = id, rng.Int32N(20000)
			m.Apply(es.Event{Data: rec, Position: es.Position{Seq: seq}})
		}
	}
	return m
}

// benchDay returns the date d days after benchDate.
func benchDay(d int) string {
	t, _ := time.Parse("2006-01-02", benchDate)
	return t.AddDate(0, 0, d).Format("2006-01-02")
}

// raiseSome raises the newest date's count of n random users of
// historyModel(users, days), from position *seq on.
func raiseSome(m *steps.Model, rng *rand.Rand, users, days, n int, seq *uint64) {
	rec := &stepsv1.StepsRecorded{Date: benchDay(days - 1)}
	for range n {
		*seq++
		rec.UserId, rec.Steps = fmt.Sprintf("user-%07d", rng.IntN(users)), 20000+int32(*seq)
		m.Apply(es.Event{Data: rec, Position: es.Position{Seq: *seq}})
	}
}

// encodeAll encodes a capture's changed segments and returns their bytes.
func encodeAll(b *testing.B, segs []projections.Segment) int {
	n := 0
	for _, s := range segs {
		if s.Encode != nil {
			data, err := s.Encode()
			if err != nil {
				b.Error(err)
			}
			n += len(data)
		}
	}
	return n
}

// BenchmarkSnapshotBytes reports what a snapshot writes per interval in
// which 1% of users raise their count for the newest date, at 100k users
// with 35 dates each: before segments, the whole model (whole-B/interval);
// with them, the segments a capture changed (segments-B/interval), over 100
// intervals, leaderboard rewrites included. Run it with -benchtime 1x.
func BenchmarkSnapshotBytes(b *testing.B) {
	const users, days, intervals = 100_000, 35, 100
	m := historyModel(users, days)
	whole, err := m.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	m.Capture(false) // stored once, as after a restore
	rng := rand.New(rand.NewPCG(5, 5))
	seq := uint64(users * days)
	var written int
	for b.Loop() {
		written = 0
		for range intervals {
			raiseSome(m, rng, users, days, users/100, &seq)
			_, segs := m.Capture(false)
			written += encodeAll(b, segs)
		}
	}
	b.ReportMetric(float64(len(whole)), "whole-B/interval")
	b.ReportMetric(float64(written)/intervals, "segments-B/interval")
	b.ReportMetric(float64(written)/intervals/float64(len(whole)), "ratio")
}
