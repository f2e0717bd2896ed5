package projtest

import (
	"bytes"
	"sync"
	"testing"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
)

// SegmentedModel is a read model with a segmented snapshot.
type SegmentedModel interface {
	projections.Projection
	projections.Segmented
}

// Segments checks a Segmented model's snapshots against its whole
// Snapshot, which must be deterministic. It applies first to a new model,
// captures, and applies next while the capture's segments are encoded on
// another goroutine (run it with -race: an Apply must not change what an
// Encode reads). It captures again after next, then applies later, which
// must change only some of the segments, and captures again. After each
// capture, the segments stored so far (each capture's encoded ones
// replacing the older) must restore a new model whose Snapshot equals the
// model's at that capture. Last, it checks that a segment missing, or
// stored under another segment's name, fails RestoreSegments and leaves
// the model unchanged.
func Segments(t *testing.T, newModel func() SegmentedModel, first, next, later []es.Event) {
	t.Helper()
	m := newModel()
	apply := func(evs []es.Event) {
		for _, e := range evs {
			m.Apply(e)
		}
	}
	stored := map[string][]byte{}
	var lastNames []string // the names of the last capture
	// capture captures, checks the restore, and returns what it encoded
	// and left unchanged; while its segments are encoded, during runs.
	capture := func(during func()) (encoded, unchanged int) {
		t.Helper()
		pos, segs := m.Capture(false)
		want, err := m.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		out := make([][]byte, len(segs))
		errs := make([]error, len(segs))
		wg.Go(func() {
			for i, s := range segs {
				if s.Encode != nil {
					out[i], errs[i] = s.Encode()
				}
			}
		})
		during()
		wg.Wait()
		names := make([]string, len(segs))
		for i, s := range segs {
			names[i] = s.Name
			if s.Encode == nil {
				unchanged++
				if _, ok := stored[s.Name]; !ok {
					t.Fatalf("segment %s unchanged but never encoded", s.Name)
				}
				continue
			}
			if errs[i] != nil {
				t.Fatalf("encode %s: %v", s.Name, errs[i])
			}
			encoded++
			stored[s.Name] = out[i]
		}
		r := newModel()
		if err := r.RestoreSegments(pos, names, read(stored)); err != nil {
			t.Fatalf("restore segments: %v", err)
		}
		got, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("restored from segments (%d encoded, %d unchanged): snapshot of %d bytes, want the model's %d", encoded, unchanged, len(got), len(want))
		}
		if p, ok := r.(interface{ Position() uint64 }); ok && p.Position() != pos {
			t.Fatalf("restored position %d, want %d", p.Position(), pos)
		}
		lastNames = names
		return encoded, unchanged
	}
	apply(first)
	capture(func() { apply(next) })
	capture(func() {})
	apply(later)
	if encoded, unchanged := capture(func() {}); encoded == 0 || unchanged == 0 {
		t.Fatalf("after later: %d segments encoded, %d unchanged; want some of each", encoded, unchanged)
	}

	r := newModel()
	r.Apply(es.Event{Position: es.Position{Seq: 1}}) // a change a failed restore must keep
	before, err := r.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RestoreSegments(9, lastNames[1:], read(stored)); err == nil {
		t.Errorf("restore without segment %s: no error", lastNames[0])
	}
	swapped := map[string][]byte{}
	for k, v := range stored {
		swapped[k] = v
	}
	a, b := lastNames[0], lastNames[len(lastNames)-1]
	swapped[a], swapped[b] = stored[b], stored[a]
	if err := r.RestoreSegments(9, lastNames, read(swapped)); err == nil {
		t.Errorf("restore with segments %s and %s swapped: no error", a, b)
	}
	if after, _ := r.Snapshot(); !bytes.Equal(after, before) {
		t.Error("a failed restore changed the model")
	}
}

func read(stored map[string][]byte) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		b, ok := stored[name]
		if !ok {
			return nil, errMissing(name)
		}
		return b, nil
	}
}

type errMissing string

func (e errMissing) Error() string { return "segment " + string(e) + " missing" }
