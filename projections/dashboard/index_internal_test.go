package dashboard

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

// moveSorted keeps the list sorted and equal to removing old and
// inserting v, for moves up, down and in place.
func TestMoveSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var s []int
	for range 200 {
		s = insertSorted(s, r.IntN(100), cmp.Compare[int])
	}
	for k := range 5000 {
		old := s[r.IntN(len(s))]
		v := r.IntN(100)
		want := insertSorted(removeSorted(slices.Clone(s), old, cmp.Compare[int]), v, cmp.Compare[int])
		s = moveSorted(s, old, v, cmp.Compare[int])
		if !slices.Equal(s, want) {
			t.Fatalf("move %d: %d to %d: %v, want %v", k, old, v, s, want)
		}
	}
	if got := moveSorted([]int{1, 3}, 2, 2, cmp.Compare[int]); !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("moving an entry not there: %v, want it inserted", got)
	}
}
