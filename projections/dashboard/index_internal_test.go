package dashboard

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
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

// monthOfDay and monthOfHour agree with the calendar (time in Zone) from
// 1900 to 2199, month ends and leap days included.
func TestMonthOfDay(t *testing.T) {
	for d := int32(-25567); d < 84000; d++ {
		at := time.Unix(int64(d)*86400-zoneOffset, 0)
		if got, want := monthOfDay(d), monthOf(at); got != want {
			t.Fatalf("day %d (%s): month %d, want %d", d, at.In(Zone).Format("2006-01-02"), got, want)
		}
		if got := monthOfHour(int64(d)*24 + 23); got != monthOf(at) {
			t.Fatalf("day %d's last hour: month %d, want %d", d, got, monthOf(at))
		}
	}
}
