package dashboard

import "time"

// Alpha is the smoothing factor of the orders forecast: the weight of the
// latest week against the smoothed past. 0.3 keeps about 90% of the
// weight on the last 6 weeks, so a shifted weekly pattern shows within a
// month while one odd week moves the forecast by under a third.
const Alpha = 0.3

// weekHours is the season of the forecast: one slot per hour of the week.
const weekHours = 7 * 24

// Forecast returns the expected number of orders placed in zone during
// the clock hour starting at hourStart (KST hours are whole UTC hours).
//
// It is seasonal exponential smoothing by hour of week, one level per
// zone and slot (168 slots): the level starts at the count of the slot's
// first week after the zone's first order and takes each later week's
// count x as level = Alpha*x + (1-Alpha)*level, up to the week before
// hourStart. Only hours before hourStart are read. Before the zone has a
// week of history the forecast is its mean orders per hour so far.
func (m *Model) Forecast(zone string, hourStart time.Time) float64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.forecast(zone, hourOf(hourStart.UnixMilli()))
}

// forecast memoises one target per zone: every watcher and query asks
// for the same next hour, and a forecast reads the zone's whole history.
func (m *Model) forecast(zone string, target int64) float64 {
	m.forecastMu.Lock()
	defer m.forecastMu.Unlock()
	if f, ok := m.x.forecasts[zone]; ok && f.target == target {
		return f.value
	}
	v := m.computeForecast(zone, target)
	m.x.forecasts[zone] = forecastMemo{target, v}
	return v
}

func (m *Model) computeForecast(zone string, target int64) float64 {
	first, ok := m.s.FirstHour[zone]
	if !ok || first >= target {
		return 0
	}
	weeks := (target - first) / weekHours
	if weeks == 0 {
		var sum int64
		for h := first; h < target; h++ {
			sum += int64(m.hourCount(zone, h))
		}
		return float64(sum) / float64(target-first)
	}
	level := float64(m.hourCount(zone, target-weeks*weekHours))
	for j := weeks - 1; j >= 1; j-- {
		level = Alpha*float64(m.hourCount(zone, target-j*weekHours)) + (1-Alpha)*level
	}
	return level
}
