// Package projtest measures read models, for their benchmarks.
package projtest

import (
	"runtime"
	"testing"

	"github.com/tideline/tideline/projections"
)

// Footprint builds a model with build, which applies the events of n
// entities (users, orders, riders, ... as the caller states), and reports
// per entity the heap the model holds (B/entity: runtime.MemStats
// HeapAlloc after a GC, before and after the build) and the size of its
// Snapshot (snapshot-B/entity). build must keep nothing but the model.
// Each iteration builds a model, so run it with -benchtime 1x.
func Footprint(b *testing.B, n int, build func() projections.Projection) {
	b.Helper()
	var heap, snap float64
	for b.Loop() {
		before := heapAlloc()
		p := build()
		heap = float64(heapAlloc()) - float64(before)
		data, err := p.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		snap = float64(len(data))
		runtime.KeepAlive(p)
	}
	b.ReportMetric(heap/float64(n), "B/entity")
	b.ReportMetric(snap/float64(n), "snapshot-B/entity")
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
