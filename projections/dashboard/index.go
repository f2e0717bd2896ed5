package dashboard

import (
	"cmp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tideline/tideline/projections"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
)

// index holds what the queries read that the state only implies: kept
// up to date by Apply, so that a query costs what it returns rather than
// what the model holds. It is not in the snapshot; Restore rebuilds it.
type index struct {
	zones                      []*zoneEntry // every zone with a day's stats, by name
	zoneOf                     map[string]*zoneEntry
	placed, accepted, pickedUp int32 // open orders by state
	active                     []activeKey
	// ranked and each month's ranked are in parts (projections.Sorted):
	// a rating or a danger event moves a rider within one part, where
	// one slice moved every rider between its old place and its new one
	// (at 10M events, riders with equal totals are many: a tenth of the
	// replay's CPU).
	ranked projections.Sorted[rankedRider]
	months map[int32]*monthDanger // KST month number -> riders' danger events in it
	// forecasts memoises each zone's last forecast; Apply drops a zone's
	// memo when an order lands in an hour it reads. Queries fill it under
	// the read lock, so forecastMu guards it there.
	forecasts map[string]forecastMemo
}

func newIndex() index {
	return index{zoneOf: map[string]*zoneEntry{}, months: map[int32]*monthDanger{}, forecasts: map[string]forecastMemo{}}
}

// zoneEntry is a zone of the index, with its last row of a dashboard.
type zoneEntry struct {
	name string
	// row is the zone's row of the last query that made one; it stands
	// for later queries of the same day and next hour until Apply changes
	// the zone (touch drops it). Most of a city's zones are quiet between
	// two queries: a query reuses their rows rather than making them
	// again. Queries fill it under the read lock.
	row atomic.Pointer[zoneRow]
}

// zoneRow is a zone's row of a dashboard for one day and next hour.
type zoneRow struct {
	day          int32 // KST day number of the query's today
	nextHour     int64 // KST hour number of its next hour
	today, month dayStats
	msg          *dashboardv1.ZoneStats // in every answer with the row: never changed
}

// touch drops zone's row: Apply changed what it shows.
func (x *index) touch(zone string) {
	if e := x.zoneOf[zone]; e != nil {
		e.row.Store(nil)
	}
}

// activeKey orders accepted and picked-up orders: oldest acceptance first,
// then by order id.
type activeKey struct {
	at int64
	id string
}

func compareActive(a, b activeKey) int {
	return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id))
}

// rankedRider is a rated rider in ranking order: average stars, then more
// ratings, then id.
type rankedRider struct {
	id  string
	avg float64
	n   int32
}

func compareRanked(a, b rankedRider) int {
	return cmp.Or(cmp.Compare(b.avg, a.avg), cmp.Compare(b.n, a.n), cmp.Compare(a.id, b.id))
}

// monthDanger is one KST month's danger events per rider, and the riders
// by most events then id.
type monthDanger struct {
	total  map[string]int32
	ranked projections.Sorted[riderTotal]
}

type riderTotal struct {
	id    string
	total int32
}

func compareTotals(a, b riderTotal) int {
	return cmp.Or(cmp.Compare(b.total, a.total), cmp.Compare(a.id, b.id))
}

type forecastMemo struct {
	target int64
	value  float64
}

// insertSorted inserts v into the sorted list s.
func insertSorted[T any](s []T, v T, compare func(a, b T) int) []T {
	i, _ := slices.BinarySearchFunc(s, v, compare)
	return slices.Insert(s, i, v)
}

// removeSorted removes v from the sorted list s, if there.
func removeSorted[T any](s []T, v T, compare func(a, b T) int) []T {
	if i, ok := slices.BinarySearchFunc(s, v, compare); ok {
		return slices.Delete(s, i, i+1)
	}
	return s
}

// monthOfDay returns the KST month number (12*year + month-1) of KST day
// d, in integers (Apply asks it for every event): the civil date of day
// d (days since 1970-01-01), after Howard Hinnant's civil_from_days.
func monthOfDay(d int32) int32 {
	z := int64(d) + 719468 // days since 0000-03-01
	era := floorDiv(z, 146097)
	doe := z - era*146097                                  // day of the 400-year era
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // year of the era
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // day of the year, from March 1
	mp := (5*doy + 2) / 153                                // month, from March = 0
	y, mon := yoe+era*400, mp+3
	if mp >= 10 {
		y, mon = y+1, mp-9
	}
	return int32(y*12 + mon - 1)
}

func monthOf(t time.Time) int32 {
	t = t.In(Zone)
	return int32(t.Year()*12 + int(t.Month()) - 1)
}

// addZone records zone in the sorted zone list.
func (x *index) addZone(zone string) {
	if x.zoneOf[zone] != nil {
		return
	}
	e := &zoneEntry{name: zone}
	i, _ := slices.BinarySearchFunc(x.zones, zone, func(e *zoneEntry, z string) int { return strings.Compare(e.name, z) })
	x.zones = slices.Insert(x.zones, i, e)
	x.zoneOf[zone] = e
}

// rate moves rider from its old place in the ranking (none when n is 0)
// to the one of r.
func (x *index) rate(rider string, old, r rating) {
	v := rankedOf(rider, r)
	if old.N > 0 {
		x.ranked.Move(orderOf(rankedOf(rider, old), compareRanked), v, orderOf(v, compareRanked))
		return
	}
	x.ranked.Insert(v, orderOf(v, compareRanked))
}

// orderOf returns the order of the elements of a projections.Sorted by
// compare relative to v.
func orderOf[T any](v T, compare func(a, b T) int) func(T) int {
	return func(e T) int { return compare(e, v) }
}

func rankedOf(rider string, r rating) rankedRider {
	return rankedRider{id: rider, avg: float64(r.Stars) / float64(r.N), n: r.N}
}

// danger counts n more of rider's danger events on day d.
func (x *index) danger(rider string, d int32, n int32) {
	key := monthOfDay(d)
	md := x.months[key]
	if md == nil {
		md = &monthDanger{total: map[string]int32{}}
		x.months[key] = md
	}
	old := md.total[rider]
	md.total[rider] = old + n
	v := riderTotal{rider, old + n}
	if old > 0 {
		md.ranked.Move(orderOf(riderTotal{rider, old}, compareTotals), v, orderOf(v, compareTotals))
		return
	}
	md.ranked.Insert(v, orderOf(v, compareTotals))
}

// placedIn drops the forecast memo of zone if an order placed in hour h
// changes it. A forecast reads the zone's first hour and the hours a
// whole number of weeks before its target, or, in the zone's first week,
// every hour before it.
func (x *index) placedIn(zone string, h, first int64, firstChanged bool) {
	f, ok := x.forecasts[zone]
	if !ok {
		return
	}
	if firstChanged || (h < f.target && ((f.target-first)/weekHours == 0 || (f.target-h)%weekHours == 0)) {
		delete(x.forecasts, zone)
	}
}

// rebuild derives the index from s.
func (s *state) index() index {
	x := newIndex()
	for z := range s.Days {
		e := &zoneEntry{name: z}
		x.zones = append(x.zones, e)
		x.zoneOf[z] = e
	}
	slices.SortFunc(x.zones, func(a, b *zoneEntry) int { return strings.Compare(a.name, b.name) })
	for id, o := range s.Orders {
		switch o.State {
		case statePlaced:
			x.placed++
		case stateAccepted:
			x.accepted++
		case statePickedUp:
			x.pickedUp++
		}
		if o.State == stateAccepted || o.State == statePickedUp {
			x.active = append(x.active, activeKey{o.AcceptedAt, id})
		}
	}
	slices.SortFunc(x.active, compareActive)
	var ranked []rankedRider
	for id, r := range s.Ratings {
		if r.N > 0 {
			ranked = append(ranked, rankedOf(id, *r))
		}
	}
	x.ranked = sortedOf(ranked, compareRanked)
	for rider, days := range s.RiderDanger {
		for d, n := range days {
			key := monthOfDay(d)
			md := x.months[key]
			if md == nil {
				md = &monthDanger{total: map[string]int32{}}
				x.months[key] = md
			}
			md.total[rider] += n
		}
	}
	for _, md := range x.months {
		totals := make([]riderTotal, 0, len(md.total))
		for rider, n := range md.total {
			totals = append(totals, riderTotal{rider, n})
		}
		md.ranked = sortedOf(totals, compareTotals)
	}
	return x
}

// sortedOf sorts s and returns it as a projections.Sorted.
func sortedOf[T any](s []T, compare func(a, b T) int) projections.Sorted[T] {
	slices.SortFunc(s, compare)
	var out projections.Sorted[T]
	for _, v := range s {
		out.Append(v)
	}
	return out
}
