package bench

import (
	"testing"
	"time"

	"github.com/tideline/tideline/projections/projtest/city"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// At every size of --scale each walker counts on each of the scaleDays
// dates, so that a walker's week of counts is the same answer at 10k as
// at 10M.
func TestScaleWalkersCountOnEveryDate(t *testing.T) {
	now := time.Now()
	for _, n := range []int{3000, 10_000, 120_000} {
		walkers := scaleWalkers(n)
		dates := map[string]map[string]bool{} // walker: dates
		for c := range city.Mixed(n, city.Mix{Walkers: walkers, Days: scaleDays, DeliveryStart: now.Add(-time.Hour)}, now) {
			if e, ok := c.Event.(*stepsv1.StepsRecorded); ok {
				if dates[e.UserId] == nil {
					dates[e.UserId] = map[string]bool{}
				}
				dates[e.UserId][e.Date] = true
			}
		}
		if len(dates) != walkers {
			t.Errorf("%d events: %d walkers counted, want %d", n, len(dates), walkers)
		}
		for w, d := range dates {
			if len(d) != scaleDays {
				t.Errorf("%d events: %s counted on %d dates, want %d", n, w, len(d), scaleDays)
				break
			}
		}
	}
}

func TestParseServeArgs(t *testing.T) {
	got, err := parseServeArgs(" --memory-limit 2500MiB  --steps-window=35 ")
	if err != nil || len(got) != 3 || got[0] != "--memory-limit" || got[1] != "2500MiB" || got[2] != "--steps-window=35" {
		t.Errorf("parseServeArgs = %q, %v", got, err)
	}
	for _, bad := range []string{"--data /tmp/x", "-listen=:1", "--log-level debug"} {
		if _, err := parseServeArgs(bad); err == nil {
			t.Errorf("parseServeArgs(%q): no error, want one (the bench sets it)", bad)
		}
	}
}
