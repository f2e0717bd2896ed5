package labeling

import (
	"fmt"
	"time"
	_ "time/tzdata" // alarms name IANA zones: the binary carries them

	"github.com/tideline/tideline/domain/es"
)

// ValidateAlarm checks an alarm as given by a client, naming the field
// (prefix is the field's path, e.g. "alarm.") of the first problem; an
// empty zone is UTC.
func ValidateAlarm(prefix string, a Alarm) (Alarm, error) {
	if err := es.ValidateToken(prefix+"alarm_id", a.ID); err != nil {
		return a, err
	}
	if len(a.ID) > 64 {
		return a, es.Invalidf(prefix+"alarm_id", "must be at most 64 bytes")
	}
	if _, err := time.Parse("15:04", a.Time); err != nil || len(a.Time) != 5 {
		return a, es.Invalidf(prefix+"time", "must be a 24-hour local time HH:MM, got %q", a.Time)
	}
	seen := map[int32]bool{}
	for i, d := range a.Weekdays {
		if d < 1 || d > 7 || seen[d] {
			return a, es.Invalidf(fmt.Sprintf("%sweekdays[%d]", prefix, i), "must be an ISO weekday 1 (Monday)..7 (Sunday), each once; got %d", d)
		}
		seen[d] = true
	}
	if a.Zone == "" {
		a.Zone = "UTC"
	}
	if _, err := time.LoadLocation(a.Zone); err != nil {
		return a, es.Invalidf(prefix+"time_zone", "unknown IANA time zone %q", a.Zone)
	}
	return a, nil
}

// NextRing is when a valid alarm rings next after t; the zero time when
// it is disabled.
func NextRing(a Alarm, t time.Time) time.Time {
	if !a.Enabled {
		return time.Time{}
	}
	loc, err := time.LoadLocation(a.Zone)
	if err != nil {
		return time.Time{}
	}
	hm, err := time.Parse("15:04", a.Time)
	if err != nil {
		return time.Time{}
	}
	local := t.In(loc)
	for day := 0; day <= 7; day++ {
		d := local.AddDate(0, 0, day)
		ring := time.Date(d.Year(), d.Month(), d.Day(), hm.Hour(), hm.Minute(), 0, 0, loc)
		if !ring.After(t) || !a.ringsOn(ring.Weekday()) {
			continue
		}
		return ring
	}
	return time.Time{}
}

func (a Alarm) ringsOn(w time.Weekday) bool {
	if len(a.Weekdays) == 0 {
		return true
	}
	iso := int32(w)
	if iso == 0 {
		iso = 7
	}
	for _, d := range a.Weekdays {
		if d == iso {
			return true
		}
	}
	return false
}

// LocalDate is t's date ("YYYY-MM-DD") in zone (UTC when unknown).
func LocalDate(t time.Time, zone string) string {
	loc, err := time.LoadLocation(zone)
	if err != nil {
		loc = time.UTC
	}
	return t.In(loc).Format(time.DateOnly)
}
