package dashboard

import (
	"cmp"
	"math"
	"slices"
	"sort"
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
// message the caller owns.
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
	out.Board = m.board(todayN, q.ActiveLimit)

	var allToday, allMonth dayStats
	nextHour := now.Truncate(time.Hour).Add(time.Hour) // KST is a whole-hour offset
	zones := make([]string, 0, len(m.s.Days))
	for z := range m.s.Days {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	for _, z := range zones {
		days := m.s.Days[z]
		var zToday, zMonth dayStats
		if st := days[todayN]; st != nil {
			zToday = *st
		}
		for d := monthFrom; d < monthTo; d++ {
			if st := days[d]; st != nil {
				zMonth.add(*st)
			}
		}
		allToday.add(zToday)
		allMonth.add(zMonth)
		zs := &dashboardv1.ZoneStats{
			Zone:             z,
			Today:            zToday.proto(),
			ThisMonth:        zMonth.proto(),
			HourlyOrders:     make([]int32, 24),
			NextHourStart:    timestamppb.New(nextHour),
			ExpectedNextHour: m.forecast(z, hourOf(nextHour.UnixMilli())),
		}
		h0 := hourOf(today.UnixMilli())
		for h := range zs.HourlyOrders {
			zs.HourlyOrders[h] = m.s.Hours[z][h0+int64(h)]
		}
		out.Zones = append(out.Zones, zs)
	}
	out.Today, out.ThisMonth = allToday.proto(), allMonth.proto()

	out.RiderRanking, out.RatedRiders = m.ranking(q.RankingLimit)
	out.DangerTrends = m.trends(q.RiderID, monthFrom, monthTo, q.TrendLimit)
	out.HeatMap = m.heatMap(q.HeatFrom, q.HeatTo, q.CellDeg)
	return out
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

func (m *Model) board(today int32, limit int) *dashboardv1.Board {
	b := &dashboardv1.Board{}
	type active struct {
		id string
		o  *order
	}
	var list []active
	for id, o := range m.s.Orders {
		switch o.State {
		case statePlaced:
			b.Placed++
		case stateAccepted:
			b.Accepted++
			list = append(list, active{id, o})
		case statePickedUp:
			b.PickedUp++
			list = append(list, active{id, o})
		}
	}
	for _, days := range m.s.Days {
		if st := days[today]; st != nil {
			b.DeliveredToday += st.Delivered
			b.CancelledToday += st.Cancelled
		}
	}
	slices.SortFunc(list, func(a, b active) int {
		return cmp.Or(cmp.Compare(a.o.AcceptedAt, b.o.AcceptedAt), cmp.Compare(a.id, b.id))
	})
	for _, a := range list[:min(limit, len(list))] {
		d := &dashboardv1.ActiveDelivery{
			OrderId:    a.id,
			RiderId:    a.o.Rider,
			Zone:       a.o.Zone,
			State:      dashboardv1.DeliveryState_DELIVERY_STATE_ACCEPTED,
			Amount:     a.o.Amount,
			PlacedAt:   timestamppb.New(time.UnixMilli(a.o.PlacedAt)),
			AcceptedAt: timestamppb.New(time.UnixMilli(a.o.AcceptedAt)),
		}
		if a.o.State == statePickedUp {
			d.State = dashboardv1.DeliveryState_DELIVERY_STATE_PICKED_UP
			d.PickedUpAt = timestamppb.New(time.UnixMilli(a.o.PickedUpAt))
		}
		b.Active = append(b.Active, d)
	}
	return b
}

// ranking orders riders by average stars, then by more ratings, then by
// id; equal averages and counts share a rank.
func (m *Model) ranking(limit int) ([]*dashboardv1.RiderRating, int32) {
	all := make([]*dashboardv1.RiderRating, 0, len(m.s.Ratings))
	for id, r := range m.s.Ratings {
		all = append(all, &dashboardv1.RiderRating{RiderId: id, AverageStars: float64(r.Stars) / float64(r.N), Ratings: r.N})
	}
	slices.SortFunc(all, func(a, b *dashboardv1.RiderRating) int {
		return cmp.Or(cmp.Compare(b.AverageStars, a.AverageStars), cmp.Compare(b.Ratings, a.Ratings), cmp.Compare(a.RiderId, b.RiderId))
	})
	for i, r := range all {
		r.Rank = int32(i + 1)
		if i > 0 && r.AverageStars == all[i-1].AverageStars && r.Ratings == all[i-1].Ratings {
			r.Rank = all[i-1].Rank
		}
	}
	return all[:min(limit, len(all))], int32(len(all))
}

func (m *Model) trend(rider string, from, to int32) *dashboardv1.RiderDangerTrend {
	t := &dashboardv1.RiderDangerTrend{RiderId: rider, Daily: make([]int32, to-from)}
	days := m.s.RiderDanger[rider]
	for d := from; d < to; d++ {
		t.Daily[d-from] = days[d]
		t.Total += days[d]
	}
	return t
}

func (m *Model) trends(rider string, from, to int32, limit int) []*dashboardv1.RiderDangerTrend {
	if rider != "" {
		return []*dashboardv1.RiderDangerTrend{m.trend(rider, from, to)}
	}
	var all []*dashboardv1.RiderDangerTrend
	for r := range m.s.RiderDanger {
		if t := m.trend(r, from, to); t.Total > 0 {
			all = append(all, t)
		}
	}
	slices.SortFunc(all, func(a, b *dashboardv1.RiderDangerTrend) int {
		return cmp.Or(cmp.Compare(b.Total, a.Total), cmp.Compare(a.RiderId, b.RiderId))
	})
	return all[:min(limit, len(all))]
}

func (m *Model) heatMap(from, to time.Time, cell float64) *dashboardv1.HeatMap {
	h := &dashboardv1.HeatMap{From: timestamppb.New(from), To: timestamppb.New(to), CellDeg: cell}
	lo, hi := from.UnixMilli(), to.UnixMilli()
	list := m.s.Danger
	i := sort.Search(len(list), func(i int) bool { return list[i].At >= lo })
	type key struct{ lat, lng int64 }
	counts := map[key]int32{}
	for ; i < len(list) && list[i].At < hi; i++ {
		h.Total++
		p := list[i]
		if !p.HasLoc {
			h.WithoutLocation++
			continue
		}
		counts[key{int64(math.Floor(p.Lat / cell)), int64(math.Floor(p.Lng / cell))}]++
	}
	for k, n := range counts {
		h.Cells = append(h.Cells, &dashboardv1.HeatCell{LatIndex: k.lat, LngIndex: k.lng, Lat: float64(k.lat) * cell, Lng: float64(k.lng) * cell, Count: n})
	}
	slices.SortFunc(h.Cells, func(a, b *dashboardv1.HeatCell) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.LatIndex, b.LatIndex), cmp.Compare(a.LngIndex, b.LngIndex))
	})
	h.Cells = h.Cells[:min(MaxHeatCells, len(h.Cells))]
	return h
}
