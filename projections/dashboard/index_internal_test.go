package dashboard

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

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

// The index's rankings (riders by rating, each month's riders by danger
// events) follow ratings and danger events as sorting every rider again
// would, for more riders than one part of a projections.Sorted holds.
func TestIndexRankings(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := newIndex()
	ratings := map[string]rating{}
	totals := map[int32]map[string]int32{}
	day := int32(20400) // a KST day number; months from its month on
	for k := range 20000 {
		rider := fmt.Sprintf("rider-%04d", r.IntN(3000))
		if r.IntN(2) == 0 {
			old := ratings[rider]
			next := rating{Stars: old.Stars + int64(1+r.IntN(5)), N: old.N + 1}
			x.rate(rider, old, next)
			ratings[rider] = next
		} else {
			d := day + int32(r.IntN(60))
			n := int32(1 + r.IntN(2))
			x.danger(rider, d, n)
			month := monthOfDay(d)
			if totals[month] == nil {
				totals[month] = map[string]int32{}
			}
			totals[month][rider] += n
		}
		if k%4999 != 0 {
			continue
		}
		var want []rankedRider
		for id, rt := range ratings {
			want = append(want, rankedOf(id, rt))
		}
		slices.SortFunc(want, compareRanked)
		if got := slices.Collect(x.ranked.All()); !slices.Equal(got, want) {
			t.Fatalf("after %d events: the rating ranking differs from a sort of every rider (%d riders, %d ranked)", k+1, len(want), len(got))
		}
		if len(x.months) != len(totals) {
			t.Fatalf("after %d events: %d months, want %d", k+1, len(x.months), len(totals))
		}
		for month, ts := range totals {
			var want []riderTotal
			for id, n := range ts {
				want = append(want, riderTotal{id, n})
			}
			slices.SortFunc(want, compareTotals)
			md := x.months[month]
			if got := slices.Collect(md.ranked.All()); !slices.Equal(got, want) || !maps.Equal(md.total, ts) {
				t.Fatalf("after %d events: month %d's danger ranking differs from a sort of every rider", k+1, month)
			}
		}
	}
}
