// Package projtest measures read models, for their benchmarks.
package projtest

import (
	"fmt"
	"iter"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/projections"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
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
		before := HeapAlloc()
		p := build()
		heap = float64(HeapAlloc()) - float64(before)
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

// HeapAlloc collects garbage and returns the live heap, in bytes.
func HeapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// DangerEvents yields riders × each danger events as riders' devices
// report them, every field set: rider r's i-th event is detected i hours
// after start (plus r seconds), severity HIGH, ids unique.
func DangerEvents(riders, each int, start time.Time) iter.Seq[*safetyv1.DangerDetected] {
	return func(yield func(*safetyv1.DangerDetected) bool) {
		for i := range each {
			for r := range riders {
				d := &safetyv1.DangerDetected{
					EventId: fmt.Sprintf("01JD%022d", i*riders+r), DeviceId: fmt.Sprintf("bike-%04d", r), RiderId: fmt.Sprintf("rider-%04d", r),
					Kind: safetyv1.DangerKind_DANGER_KIND_CRASH, Severity: safetyv1.Severity_SEVERITY_HIGH,
					PeakAccelG: 4.2, PeakGyroDps: 210, DurationMs: 1800, Location: &safetyv1.Location{Lat: 37.5, Lng: 127.0},
					DetectedAt: timestamppb.New(start.Add(time.Duration(i)*time.Hour + time.Duration(r)*time.Second)),
				}
				if !yield(d) {
					return
				}
			}
		}
	}
}
