package dashboard

import (
	"cmp"
	"math"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
)

// Query defaults.
const (
	DefaultCellDeg      = 0.01
	DefaultRankingLimit = 20
	DefaultActiveLimit  = 100
	DefaultTrendLimit   = 20
	// MaxHeatCells bounds the cells of a heat map (the busiest are kept).
	MaxHeatCells = 10000
)

// Query is what a dashboard is relative to. Zero fields take defaults:
// the heat map covers Now's KST day, cells are DefaultCellDeg, and the
// limits are the Default*Limit constants.
type Query struct {
	Now time.Time
	// RiderID selects one rider's danger trend; empty: the TrendLimit
	// riders with the most danger events this month.
	RiderID          string
	HeatFrom, HeatTo time.Time
	CellDeg          float64
	RankingLimit     int
	ActiveLimit      int
	TrendLimit       int
}

// StartOfDay returns the start of t's KST day.
func StartOfDay(t time.Time) time.Time {
	y, mo, d := t.In(Zone).Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, Zone)
}

// Dashboard returns every figure relative to q. The result is a fresh
// message the caller owns, but for its zones' rows (Zones' elements):
// answers share a zone's row until the zone changes, so they must not
// be changed.
func (m *Model) Dashboard(q Query) *dashboardv1.Dashboard {
	now := q.Now.In(Zone)
	today := StartOfDay(now)
	monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, Zone)
	nextMonth := monthStart.AddDate(0, 1, 0)
	todayN := dayOf(today.UnixMilli())
	monthFrom, monthTo := dayOf(monthStart.UnixMilli()), dayOf(nextMonth.UnixMilli())
	if q.HeatFrom.IsZero() {
		q.HeatFrom = today
	}
	if q.HeatTo.IsZero() {
		q.HeatTo = today.AddDate(0, 0, 1)
	}
	q.CellDeg = cmp.Or(q.CellDeg, DefaultCellDeg)
	q.RankingLimit = cmp.Or(q.RankingLimit, DefaultRankingLimit)
	q.ActiveLimit = cmp.Or(q.ActiveLimit, DefaultActiveLimit)
	q.TrendLimit = cmp.Or(q.TrendLimit, DefaultTrendLimit)

	m.mu.RLock()
	defer m.mu.RUnlock()
	out := &dashboardv1.Dashboard{
		Position:      m.s.Pos,
		GeneratedAt:   timestamppb.New(q.Now),
		TimeZone:      Zone.String(),
		Date:          now.Format("2006-01-02"),
		Month:         now.Format("2006-01"),
		ForecastAlpha: Alpha,
	}
	out.Board = m.board(q.ActiveLimit)

	var allToday, allMonth dayStats
	nextHour := now.Truncate(time.Hour).Add(time.Hour) // KST is a whole-hour offset
	f := rowFrame{day: todayN, monthFrom: monthFrom, monthTo: monthTo, h0: hourOf(today.UnixMilli()), nextHour: hourOf(nextHour.UnixMilli()), nextHourStart: nextHour}
	var mo *month // today's, which holds the month's days and today's hours: found for the first row to make
	out.Zones = make([]*dashboardv1.ZoneStats, len(m.x.zones))
	for i, e := range m.x.zones {
		r := e.row.Load()
		if r == nil || r.day != f.day || r.nextHour != f.nextHour {
			if mo == nil {
				if mo = m.peek(monthOfDay(todayN)); mo == nil {
					mo = newMonth()
				}
			}
			r = m.zoneRow(e.name, mo.zones[e.name], f)
			e.row.Store(r)
		}
		allToday.add(r.today)
		allMonth.add(r.month)
		out.Zones[i] = r.msg
	}
	out.Today, out.ThisMonth = allToday.proto(), allMonth.proto()
	out.Board.DeliveredToday, out.Board.CancelledToday = allToday.Delivered, allToday.Cancelled

	out.RiderRanking, out.RatedRiders = m.ranking(q.RankingLimit)
	out.DangerTrends = m.trends(q.RiderID, monthOf(now), monthFrom, monthTo, q.TrendLimit)
	out.HeatMap = m.heatMap(q.HeatFrom, q.HeatTo, q.CellDeg)
	return out
}

// rowFrame is the time a dashboard's zone rows are relative to.
type rowFrame struct {
	day                int32 // KST day number of today
	monthFrom, monthTo int32 // today's month: its days [monthFrom, monthTo)
	h0, nextHour       int64 // KST hour numbers of today's first hour and of the next hour
	nextHourStart      time.Time
}

// zoneRow makes zone's row of a dashboard relative to f, from the zone's
// figures of f's month (nil without any).
func (m *Model) zoneRow(zone string, zm *zoneMonth, f rowFrame) *zoneRow {
	// A city has hundreds of zones, most with a few days and hours of
	// orders in a month: a zone's maps are walked rather than asked for
	// each of the month's days and today's hours, where that is less
	// work.
	r := &zoneRow{day: f.day, nextHour: f.nextHour}
	hourly := make([]int32, 24)
	if zm != nil {
		r.today = zm.days[f.day]
		for d, st := range zm.days { // the month's: at most 31
			if d >= f.monthFrom && d < f.monthTo {
				r.month.add(st)
			}
		}
		if len(zm.hours) <= len(hourly) {
			for h, n := range zm.hours {
				if i := h - f.h0; i >= 0 && i < int64(len(hourly)) {
					hourly[i] = n
				}
			}
		} else {
			for i := range hourly {
				hourly[i] = zm.hours[f.h0+int64(i)]
			}
		}
	}
	r.msg = &dashboardv1.ZoneStats{
		Zone:             zone,
		Today:            r.today.proto(),
		ThisMonth:        r.month.proto(),
		HourlyOrders:     hourly,
		NextHourStart:    timestamppb.New(f.nextHourStart),
		ExpectedNextHour: m.forecast(zone, r.nextHour),
	}
	return r
}

func (d dayStats) proto() *dashboardv1.PeriodStats {
	p := &dashboardv1.PeriodStats{Orders: d.Orders, Delivered: d.Delivered, Cancelled: d.Cancelled, AmountTotal: d.Amount}
	if d.Orders > 0 {
		p.AvgOrderAmount = float64(d.Amount) / float64(d.Orders)
	}
	if d.Delivered > 0 {
		p.AvgDeliverySeconds = float64(d.DeliveryMs) / 1000 / float64(d.Delivered)
	}
	return p
}

// board returns the live board but for its counts of today, which
// Dashboard sums with the zones' figures.
func (m *Model) board(limit int) *dashboardv1.Board {
	b := &dashboardv1.Board{Placed: m.x.placed, Accepted: m.x.accepted, PickedUp: m.x.pickedUp}
	for _, a := range m.x.active[:min(limit, len(m.x.active))] {
		o := m.s.Orders[a.id]
		d := &dashboardv1.ActiveDelivery{
			OrderId:    a.id,
			RiderId:    o.Rider,
			Zone:       o.Zone,
			State:      dashboardv1.DeliveryState_DELIVERY_STATE_ACCEPTED,
			Amount:     o.Amount,
			PlacedAt:   timestamppb.New(time.UnixMilli(o.PlacedAt)),
			AcceptedAt: timestamppb.New(time.UnixMilli(o.AcceptedAt)),
		}
		if o.State == statePickedUp {
			d.State = dashboardv1.DeliveryState_DELIVERY_STATE_PICKED_UP
			d.PickedUpAt = timestamppb.New(time.UnixMilli(o.PickedUpAt))
		}
		b.Active = append(b.Active, d)
	}
	return b
}

// ranking orders riders by average stars, then by more ratings, then by
// id; equal averages and counts share a rank.
func (m *Model) ranking(limit int) ([]*dashboardv1.RiderRating, int32) {
	var out []*dashboardv1.RiderRating
	var prev rankedRider
	for r := range m.x.ranked.All() {
		if len(out) == limit {
			break
		}
		i := len(out)
		out = append(out, &dashboardv1.RiderRating{Rank: int32(i + 1), RiderId: r.id, AverageStars: r.avg, Ratings: r.n})
		if i > 0 && r.avg == prev.avg && r.n == prev.n {
			out[i].Rank = out[i-1].Rank
		}
		prev = r
	}
	return out, int32(m.x.ranked.Len())
}

func (m *Model) trend(rider string, from, to int32) *dashboardv1.RiderDangerTrend {
	t := &dashboardv1.RiderDangerTrend{RiderId: rider, Daily: make([]int32, to-from)}
	mo := m.peek(monthOfDay(from)) // [from, to) is in one month
	if mo == nil {
		return t
	}
	for d := from; d < to; d++ {
		n := mo.riderDanger[riderDay{rider, d}]
		t.Daily[d-from] = n
		t.Total += n
	}
	return t
}

// trends returns rider's trend over the days [from, to) of month, or, for
// no rider, those of the limit riders with the most events in it.
func (m *Model) trends(rider string, month, from, to int32, limit int) []*dashboardv1.RiderDangerTrend {
	if rider != "" {
		return []*dashboardv1.RiderDangerTrend{m.trend(rider, from, to)}
	}
	md := m.x.months[month]
	if md == nil {
		return nil
	}
	var out []*dashboardv1.RiderDangerTrend
	for r := range md.ranked.All() {
		if len(out) == limit {
			break
		}
		out = append(out, m.trend(r.id, from, to))
	}
	return out
}

func (m *Model) heatMap(from, to time.Time, cell float64) *dashboardv1.HeatMap {
	h := &dashboardv1.HeatMap{From: timestamppb.New(from), To: timestamppb.New(to), CellDeg: cell}
	type key struct{ lat, lng int64 }
	counts := map[key]int32{}
	m.dangersIn(from.UnixMilli(), to.UnixMilli(), func(p danger) {
		h.Total++
		if !p.HasLoc {
			h.WithoutLocation++
			return
		}
		counts[key{int64(math.Floor(p.Lat / cell)), int64(math.Floor(p.Lng / cell))}]++
	})
	for k, n := range counts {
		h.Cells = append(h.Cells, &dashboardv1.HeatCell{LatIndex: k.lat, LngIndex: k.lng, Lat: float64(k.lat) * cell, Lng: float64(k.lng) * cell, Count: n})
	}
	slices.SortFunc(h.Cells, func(a, b *dashboardv1.HeatCell) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.LatIndex, b.LatIndex), cmp.Compare(a.LngIndex, b.LngIndex))
	})
	h.Cells = h.Cells[:min(MaxHeatCells, len(h.Cells))]
	return h
}
