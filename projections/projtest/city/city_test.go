package city_test

import (
	"testing"
	"time"

	"github.com/tideline/tideline/projections/projtest/city"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// Mixed yields exactly n commits, half of them step counts spread over
// Days dates ending today, each walker once per date when they divide.
func TestMixed(t *testing.T) {
	now := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	const n, walkers, days = 6001, 100, 30 // 3,001 counts: one walker twice
	total, stepCount := 0, 0
	dates := map[string]int{}
	seen := map[string]int{}
	for c := range city.Mixed(n, city.Mix{Walkers: walkers, Days: days, DeliveryStart: now.AddDate(0, 0, -5)}, now) {
		total++
		if c.Stream.ID == "" || c.Event == nil {
			t.Fatalf("commit %d: %+v, want a stream and an event", total, c)
		}
		if s, ok := c.Event.(*stepsv1.StepsRecorded); ok {
			stepCount++
			dates[s.Date]++
			seen[s.UserId+"/"+s.Date]++
		}
	}
	if total != n || stepCount != n-n/2 {
		t.Fatalf("%d commits, %d step counts; want %d and %d", total, stepCount, n, n-n/2)
	}
	if twice := stepCount - len(seen); twice != 1 {
		t.Errorf("%d walker-dates counted twice, want 1 (3,001 counts for 3,000 walker-dates)", twice)
	}
	if len(dates) != days || dates["2026-12-02"] == 0 || dates["2026-11-03"] == 0 {
		t.Errorf("dates %v, want %d ending 2026-12-02", dates, days)
	}
}
