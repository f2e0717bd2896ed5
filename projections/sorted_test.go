package projections_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tideline/tideline/projections"
)

type key struct {
	at int64
	id string
}

func compareKeys(a, b key) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id)) }

// to returns the comparison of an element to k.
func to(k key) func(key) int { return func(e key) int { return compareKeys(e, k) } }

// TestSortedMatchesASortedSlice inserts keys mostly in order, as events
// arrive, some out of order and some at equal times, and removes random
// ones, then checks the list, its parts, Index, All and Backward against
// a sorted slice.
func TestSortedMatchesASortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var l projections.Sorted[key]
	var want []key
	held := map[key]bool{}
	for round := range 40 {
		for i := range 500 {
			at := int64(round*500 + i)
			if rng.IntN(5) == 0 {
				at = rng.Int64N(at + 1) // late
			}
			k := key{at: at, id: fmt.Sprintf("a%d", rng.IntN(1_000_000))}
			if held[k] {
				continue
			}
			held[k] = true
			l.Insert(k, to(k))
			i, _ := slices.BinarySearchFunc(want, k, compareKeys)
			want = slices.Insert(want, i, k)
		}
		for range 100 + rng.IntN(300) {
			i := rng.IntN(len(want))
			if !l.Remove(to(want[i])) {
				t.Fatalf("Remove of a held key reported false")
			}
			delete(held, want[i])
			want = slices.Delete(want, i, i+1)
		}
		if l.Remove(to(key{at: -1, id: "never"})) {
			t.Fatal("Remove of a key never held reported true")
		}
		checkSorted(t, &l, want)
	}
	for len(want) > 0 { // empty it: parts go as they empty
		l.Remove(to(want[0]))
		want = want[1:]
	}
	checkSorted(t, &l, want)
	if len(l.Parts()) != 0 || !l.Empty() {
		t.Errorf("%d parts left in an empty list", len(l.Parts()))
	}
}

func checkSorted(t *testing.T, l *projections.Sorted[key], want []key) {
	t.Helper()
	for pi, n := range l.Parts() {
		if n == 0 || n > projections.SortedPart {
			t.Fatalf("part %d holds %d keys", pi, n)
		}
	}
	got := slices.Collect(l.All())
	if !slices.Equal(got, want) || l.Len() != len(want) {
		t.Fatalf("list of %d keys (Len %d) differs from the %d sorted", len(got), l.Len(), len(want))
	}
	back := slices.Collect(l.Backward())
	slices.Reverse(back)
	if !slices.Equal(back, want) {
		t.Fatal("Backward is not All reversed")
	}
	for i := 0; i < len(want); i += 1 + len(want)/50 {
		if got := l.Index(to(want[i])); got != i {
			t.Fatalf("Index of key %d = %d", i, got)
		}
	}
}

// TestSortedInOrderFillsItsParts: elements appended in order, with Insert
// or Append, leave every part but the last full.
func TestSortedInOrderFillsItsParts(t *testing.T) {
	var ins, app projections.Sorted[key]
	const n = 10 * projections.SortedPart
	for i := range n {
		ins.Insert(key{at: int64(i)}, to(key{at: int64(i)}))
		app.Append(key{at: int64(i)})
	}
	for _, l := range []*projections.Sorted[key]{&ins, &app} {
		if parts := l.Parts(); len(parts) != n/projections.SortedPart {
			t.Errorf("%d elements in order took %d parts, want %d", n, len(parts), n/projections.SortedPart)
		}
		checkSorted(t, l, slices.Collect(ins.All()))
	}
}

func TestNilSortedIsEmpty(t *testing.T) {
	var l *projections.Sorted[key]
	if l.Len() != 0 || !l.Empty() || len(slices.Collect(l.All())) != 0 || len(slices.Collect(l.Backward())) != 0 {
		t.Error("a nil list is not empty")
	}
}

// TestSortedMove moves keys a few places (within a part, mostly) and far
// (across parts), up and down, to their own place, and moves a key the
// list does not hold (inserted): the list equals a sorted slice after
// each round.
func TestSortedMove(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var l projections.Sorted[key]
	var want []key
	held := map[key]bool{}
	for len(want) < 5*projections.SortedPart {
		k := key{at: rng.Int64N(100_000), id: fmt.Sprint(rng.IntN(1000))}
		if !held[k] {
			held[k] = true
			l.Insert(k, to(k))
			i, _ := slices.BinarySearchFunc(want, k, compareKeys)
			want = slices.Insert(want, i, k)
		}
	}
	for range 20 {
		for range 500 {
			old := want[rng.IntN(len(want))]
			v := old
			switch rng.IntN(4) {
			case 0: // a few places
				v.at += rng.Int64N(41) - 20
			case 1: // anywhere
				v.at = rng.Int64N(100_000)
			case 2: // its own place
			case 3: // a key not held: inserted
				old = key{at: -1, id: "absent"}
				v.at = rng.Int64N(100_000)
			}
			if v != old && held[v] {
				continue
			}
			if got := l.Move(to(old), v, to(v)); got != held[old] {
				t.Fatalf("Move of %v reported %v, want %v", old, got, held[old])
			}
			if held[old] {
				i, _ := slices.BinarySearchFunc(want, old, compareKeys)
				want = slices.Delete(want, i, i+1)
				delete(held, old)
			}
			i, _ := slices.BinarySearchFunc(want, v, compareKeys)
			want = slices.Insert(want, i, v)
			held[v] = true
		}
		checkSorted(t, &l, want)
	}
}
