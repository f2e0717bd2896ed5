package alerts

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestKeyListMatchesASortedSlice inserts keys mostly in order, as alerts
// are raised, some out of order and some at equal times, and removes
// random ones, then checks the list, its parts and newest against a
// sorted slice.
func TestKeyListMatchesASortedSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var l keyList
	var want []listKey
	held := map[listKey]bool{}
	for round := range 40 {
		for i := range 500 {
			sec := int64(round*500 + i)
			if rng.IntN(5) == 0 {
				sec = rng.Int64N(sec + 1) // late
			}
			k := listKey{sec: sec, nsec: rng.IntN(2), id: fmt.Sprintf("a%d", rng.IntN(1_000_000))}
			if held[k] {
				continue
			}
			held[k] = true
			l.insert(k)
			i, _ := slices.BinarySearchFunc(want, k, compareKeys)
			want = slices.Insert(want, i, k)
		}
		for range 100 + rng.IntN(300) {
			if len(want) == 0 {
				break
			}
			i := rng.IntN(len(want))
			l.remove(want[i])
			delete(held, want[i])
			want = slices.Delete(want, i, i+1)
		}
		l.remove(listKey{sec: -1, id: "never"}) // not held: no change
		checkKeyList(t, &l, want)
	}
	for len(want) > 0 { // empty it: parts go as they empty
		l.remove(want[0])
		want = want[1:]
	}
	checkKeyList(t, &l, want)
	if len(l.parts) != 0 {
		t.Errorf("%d parts left in an empty list", len(l.parts))
	}
}

func checkKeyList(t *testing.T, l *keyList, want []listKey) {
	t.Helper()
	var got []listKey
	for pi, p := range l.parts {
		if len(p) == 0 || len(p) > maxListPart {
			t.Fatalf("part %d holds %d keys", pi, len(p))
		}
		got = append(got, p...)
	}
	if !slices.Equal(got, want) || l.len() != len(want) {
		t.Fatalf("list of %d keys (len %d) differs from the %d sorted", len(got), l.len(), len(want))
	}
	for _, limit := range []int{0, 1, 7, maxListPart + 3, len(want) + 1} {
		var newest []listKey
		l.newest(limit, func(k listKey) { newest = append(newest, k) })
		n := min(limit, len(want))
		rev := slices.Clone(want[len(want)-n:])
		slices.Reverse(rev)
		if !slices.Equal(newest, rev) {
			t.Fatalf("newest(%d) gave %d keys, not the last %d reversed", limit, len(newest), n)
		}
	}
}

// TestKeyListInOrderFillsItsParts: keys appended in order, as alerts are
// mostly raised, leave every part but the last full.
func TestKeyListInOrderFillsItsParts(t *testing.T) {
	var l keyList
	const n = 10 * maxListPart
	for i := range n {
		l.insert(listKey{sec: int64(i), id: "a"})
	}
	if len(l.parts) != n/maxListPart {
		t.Errorf("%d keys in order took %d parts, want %d", n, len(l.parts), n/maxListPart)
	}
}
