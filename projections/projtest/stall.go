package projtest

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/projtest/city"
)

// SnapshotStall reports the longest an Apply waits while snapshots are
// taken of m, a model already holding a history, as tail streams in. It
// applies a third of tail three ways, taking snapshots times snapshots
// evenly spread in each: with none (none-*: the machine's own hiccups);
// whole, encoding m.Snapshot on the applying goroutine, as a runner does
// for a model that is not Segmented (whole-*); and segmented, capturing
// on the applying goroutine and encoding on another, as a runner does
// for a Segmented one (segments-*). *-cpu-ms is the longest step of the
// applying thread in CPU time (what the model costs it, where the
// platform can tell: Linux); *-wall-ms in wall time, which on a shared
// machine also holds time it was not scheduled. apply applies an event
// (nil: m.Apply). Run it with -benchtime 1x.
func SnapshotStall(b *testing.B, m SegmentedModel, tail []es.Event, snapshots int, apply func(es.Event)) {
	b.Helper()
	if apply == nil {
		apply = m.Apply
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	third := len(tail) / 3
	every := max(third/snapshots, 1)
	// stall applies evs, calling snap every so often, and returns the
	// longest step from one Apply's end to the next's. Before snap it
	// calls settle, untimed.
	stall := func(evs []es.Event, settle, snap func()) (wall, cpu time.Duration) {
		lastWall, lastCPU := time.Now(), ThreadCPU(b)
		for i, e := range evs {
			if i%every == 0 {
				settle()
				lastWall, lastCPU = time.Now(), ThreadCPU(b)
				snap()
			}
			apply(e)
			nowWall, nowCPU := time.Now(), ThreadCPU(b)
			wall, cpu = max(wall, nowWall.Sub(lastWall)), max(cpu, nowCPU-lastCPU)
			lastWall, lastCPU = nowWall, nowCPU
		}
		return wall, cpu
	}
	var none, whole, segmented [2]time.Duration
	var wholeBytes, captures int
	var longestCapture time.Duration
	var segBytes atomic.Int64
	for b.Loop() {
		none[0], none[1] = stall(tail[:third], func() {}, func() {})
		whole[0], whole[1] = stall(tail[third:2*third], func() {}, func() {
			data, err := m.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			wholeBytes += len(data)
		})
		// A runner skips a snapshot while the last one is written; here
		// the applying waits for it, untimed, so that every snapshot is
		// taken.
		var encoding sync.WaitGroup
		full := true
		segmented[0], segmented[1] = stall(tail[2*third:3*third], encoding.Wait, func() {
			began := time.Now()
			_, segs := m.Capture(full)
			longestCapture = max(longestCapture, time.Since(began))
			full = false
			captures++
			encoding.Go(func() {
				for _, s := range segs {
					if s.Encode == nil {
						continue
					}
					data, err := s.Encode()
					if err != nil {
						b.Error(err)
						return
					}
					segBytes.Add(int64(len(data)))
				}
			})
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
	if whole[1] > 0 {
		b.ReportMetric(float64(segmented[1])/float64(whole[1]), "cpu-ratio")
	}
	// Bytes written per snapshot: the whole model every time, against
	// what changed (the first capture is full).
	b.ReportMetric(float64(wholeBytes)/float64(b.N*snapshots), "whole-B/snapshot")
	b.ReportMetric(float64(segBytes.Load())/float64(max(captures, 1)), "segments-B/snapshot")
	b.ReportMetric(float64(captures)/float64(b.N), "captures")
	b.ReportMetric(ms(longestCapture), "capture-ms")
}

// CityHistory applies the first n-tail of n events of city.Delivery, from
// start, with positions from 1, and returns the last tail of them: a
// history for SnapshotStall.
func CityHistory(n, tail int, start time.Time, apply func(es.Event)) []es.Event {
	var end time.Time
	out := make([]es.Event, 0, tail)
	seq := uint64(0)
	for msg := range city.Delivery(n, start, &end) {
		seq++
		e := es.Event{Type: string(msg.ProtoReflect().Descriptor().FullName()), Data: msg, Position: es.Position{Seq: seq}, RecordedAt: end}
		if int(seq) > n-tail {
			out = append(out, e)
			continue
		}
		apply(e)
	}
	return out
}
