package dashboard

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tideline/tideline/projections"
)

// month is what the model keeps of one KST month, by the time of what it
// counts: zones' days and hours, riders' danger counts per day, and the
// danger events. A capture hands a changed month to its segment's Encode
// and freezes it: the next change to it changes a copy (ownMonth), so an
// Encode reads it while Apply goes on. A month's copy costs what the
// month holds, whatever the history.
type month struct {
	zones       map[string]*zoneMonth
	riderDanger map[riderDay]int32
	danger      []danger // ascending by At, then ID
	frozen      bool
}

// zoneMonth is a zone's days and hours of a month.
type zoneMonth struct {
	days  map[int32]dayStats // by KST day number
	hours map[int64]int32    // orders placed, by KST hour number
}

type riderDay struct {
	rider string
	day   int32
}

func newMonth() *month {
	return &month{zones: map[string]*zoneMonth{}, riderDanger: map[riderDay]int32{}}
}

// zone returns the month's zone, made if new: for changing, on a month
// not frozen.
func (mo *month) zone(z string) *zoneMonth {
	zm := mo.zones[z]
	if zm == nil {
		zm = &zoneMonth{days: map[int32]dayStats{}, hours: map[int64]int32{}}
		mo.zones[z] = zm
	}
	return zm
}

// monthOfHour returns the KST month number of KST hour h.
func monthOfHour(h int64) int32 { return monthOfDay(int32(floorDiv(h, 24))) }

// peek returns month k for reading, or nil.
func (m *Model) peek(k int32) *month { return m.months[k] }

// ownMonth returns month k for changing: made if new, copied if a capture
// froze it; and marks it changed.
func (m *Model) ownMonth(k int32) *month {
	mo := m.months[k]
	switch {
	case mo == nil:
		mo = newMonth()
		m.months[k] = mo
		m.monthKeys = insertSorted(m.monthKeys, k, func(a, b int32) int { return int(a) - int(b) })
	case mo.frozen:
		c := &month{zones: make(map[string]*zoneMonth, len(mo.zones)), riderDanger: maps.Clone(mo.riderDanger), danger: slices.Clone(mo.danger)}
		for z, zm := range mo.zones {
			c.zones[z] = &zoneMonth{days: maps.Clone(zm.days), hours: maps.Clone(zm.hours)}
		}
		mo = c
		m.months[k] = mo
	}
	m.changed[k] = true
	return mo
}

// addDay adds o to zone's figures for day d.
func (m *Model) addDay(zone string, d int32, o dayStats) {
	m.x.touch(zone)
	days := m.ownMonth(monthOfDay(d)).zone(zone).days
	st := days[d]
	st.add(o)
	days[d] = st
}

// hourCount returns the orders placed in zone in KST hour h.
func (m *Model) hourCount(zone string, h int64) int32 {
	if mo := m.peek(monthOfHour(h)); mo != nil {
		if zm := mo.zones[zone]; zm != nil {
			return zm.hours[h]
		}
	}
	return 0
}

// insertDanger keeps its month's danger events sorted; events mostly
// arrive in order, so this is usually an append.
func (m *Model) insertDanger(p danger) {
	mo := m.ownMonth(monthOfDay(dayOf(p.At)))
	list := mo.danger
	i := len(list)
	if i > 0 && dangerBefore(p, list[i-1]) {
		i = sort.Search(len(list), func(i int) bool { return dangerBefore(p, list[i]) })
	}
	mo.danger = slices.Insert(list, i, p)
}

// dangersIn yields the danger events detected in [lo, hi) (Unix
// milliseconds), ascending.
func (m *Model) dangersIn(lo, hi int64, yield func(danger)) {
	if lo >= hi {
		return
	}
	first, last := monthOfDay(dayOf(lo)), monthOfDay(dayOf(hi-1))
	i, _ := slices.BinarySearch(m.monthKeys, first)
	for ; i < len(m.monthKeys) && m.monthKeys[i] <= last; i++ {
		list := m.months[m.monthKeys[i]].danger
		j := sort.Search(len(list), func(j int) bool { return list[j].At >= lo })
		for ; j < len(list) && list[j].At < hi; j++ {
			yield(list[j])
		}
	}
}

// Segments: the live one (open orders, zones' first hours, ratings),
// then one per month with anything in it, oldest first.
const (
	liveSegment  = "live"
	monthSegment = "month-" // + YYYY-MM
	liveMagic    = "tldashboard-live1"
)

// liveSnapshot is the live segment; the figures are copies.
type liveSnapshot struct {
	Magic     string            `json:"magic"`
	Orders    map[string]order  `json:"orders"`
	FirstHour map[string]int64  `json:"firstHour"`
	Ratings   map[string]rating `json:"ratings"`
}

// monthSnapshot is a month's segment, in the shape of state.
type monthSnapshot struct {
	Month       string                        `json:"month"`
	Days        map[string]map[int32]dayStats `json:"days"`
	Hours       map[string]map[int64]int32    `json:"hours"`
	RiderDanger map[string]map[int32]int32    `json:"riderDanger"`
	Danger      []danger                      `json:"danger"`
}

// monthName returns KST month number k as YYYY-MM.
func monthName(k int32) string { return fmt.Sprintf("%04d-%02d", k/12, k%12+1) }

// parseMonth reads a YYYY-MM month as a KST month number.
func parseMonth(s string) (int32, bool) {
	t, err := time.Parse("2006-01", s)
	if err != nil || t.Format("2006-01") != s {
		return 0, false
	}
	return int32(t.Year()*12 + int(t.Month()) - 1), true
}

// Capture returns the model's position, its live segment (the open
// orders and first hours copied here, as they do not grow with history;
// the ratings' partitions frozen) and a segment per month, encoding the
// months changed since the previous capture; it freezes those (see
// month).
func (m *Model) Capture(full bool) (uint64, []projections.Segment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := liveSnapshot{Magic: liveMagic, Orders: make(map[string]order, len(m.s.Orders)), FirstHour: maps.Clone(m.s.FirstHour)}
	for id, o := range m.s.Orders {
		live.Orders[id] = *o
	}
	ratings := make([]map[string]rating, projections.PartCount)
	for k := range ratings {
		ratings[k] = m.s.Ratings.Freeze(k)
	}
	segs := make([]projections.Segment, 0, 1+len(m.monthKeys))
	segs = append(segs, projections.Segment{Name: liveSegment, Encode: func() ([]byte, error) {
		live.Ratings = map[string]rating{}
		for _, part := range ratings {
			maps.Copy(live.Ratings, part)
		}
		return json.Marshal(live)
	}})
	for _, k := range m.monthKeys {
		seg := projections.Segment{Name: monthSegment + monthName(k)}
		if mo := m.months[k]; full || !m.issued || m.changed[k] {
			mo.frozen = true
			seg.Encode = func() ([]byte, error) { return json.Marshal(mo.snapshot(k)) }
		}
		segs = append(segs, seg)
	}
	clear(m.changed)
	m.issued = true
	return m.s.Pos, segs
}

// snapshot returns the month's segment, k its number.
func (mo *month) snapshot(k int32) monthSnapshot {
	s := monthSnapshot{Month: monthName(k), Days: map[string]map[int32]dayStats{}, Hours: map[string]map[int64]int32{},
		RiderDanger: map[string]map[int32]int32{}, Danger: mo.danger}
	for z, zm := range mo.zones {
		if len(zm.days) > 0 {
			s.Days[z] = zm.days
		}
		if len(zm.hours) > 0 {
			s.Hours[z] = zm.hours
		}
	}
	for key, n := range mo.riderDanger {
		inner(s.RiderDanger, key.rider)[key.day] = n
	}
	return s
}

// inner returns outer[key], made if missing.
func inner[K comparable, V any](outer map[string]map[K]V, key string) map[K]V {
	in := outer[key]
	if in == nil {
		in = map[K]V{}
		outer[key] = in
	}
	return in
}

// RestoreSegments replaces the model with the segments of a Capture at
// pos: the live one first, then each month's once. On error the model is
// unchanged.
func (m *Model) RestoreSegments(pos uint64, names []string, read func(name string) ([]byte, error)) error {
	s := emptyState()
	got := map[string]bool{}
	for i, name := range names {
		data, err := read(name)
		if err != nil {
			return fmt.Errorf("dashboard snapshot: %w", err)
		}
		if i == 0 {
			var live liveSnapshot
			if name != liveSegment {
				return fmt.Errorf("dashboard snapshot: segment %q, want %s first", name, liveSegment)
			}
			if err := json.Unmarshal(data, &live); err != nil || live.Magic != liveMagic {
				return fmt.Errorf("dashboard snapshot: bad %s segment (%v)", liveSegment, err)
			}
			for id, o := range live.Orders {
				s.Orders[id] = &o
			}
			maps.Copy(s.FirstHour, live.FirstHour)
			for id, r := range live.Ratings {
				s.Ratings[id] = &r
			}
			continue
		}
		name, ok := strings.CutPrefix(name, monthSegment)
		k, valid := parseMonth(name)
		if !ok || !valid || got[name] {
			return fmt.Errorf("dashboard snapshot: segment %q unknown or repeated", monthSegment+name)
		}
		got[name] = true
		var ms monthSnapshot
		if err := json.Unmarshal(data, &ms); err != nil {
			return fmt.Errorf("dashboard snapshot: segment %s: %w", monthSegment+name, err)
		}
		if err := s.addMonth(k, ms); err != nil {
			return fmt.Errorf("dashboard snapshot: segment %s: %w", monthSegment+name, err)
		}
	}
	if len(names) == 0 {
		return fmt.Errorf("dashboard snapshot: no %s segment", liveSegment)
	}
	s.Pos = pos
	return m.restore(s, true)
}

// addMonth adds month k's segment to s, refusing what is not of month k
// or what s already holds.
func (s *state) addMonth(k int32, ms monthSnapshot) error {
	if ms.Month != monthName(k) {
		return fmt.Errorf("holds month %s", ms.Month)
	}
	for zone, days := range ms.Days {
		for d, st := range days {
			if monthOfDay(d) != k || inner(s.Days, zone)[d] != nil {
				return fmt.Errorf("zone %s day %d is not of the month, or repeated", zone, d)
			}
			inner(s.Days, zone)[d] = &st
		}
	}
	for zone, hours := range ms.Hours {
		for h, n := range hours {
			if monthOfHour(h) != k {
				return fmt.Errorf("zone %s hour %d is not of the month", zone, h)
			}
			inner(s.Hours, zone)[h] = n
		}
	}
	for rider, days := range ms.RiderDanger {
		for d, n := range days {
			if monthOfDay(d) != k {
				return fmt.Errorf("rider %s day %d is not of the month", rider, d)
			}
			inner(s.RiderDanger, rider)[d] = n
		}
	}
	for _, p := range ms.Danger {
		if monthOfDay(dayOf(p.At)) != k {
			return fmt.Errorf("danger event %s is not of the month", p.ID)
		}
	}
	// Segments come oldest first: the events stay in order (check says
	// whether they are).
	s.Danger = append(s.Danger, ms.Danger...)
	return nil
}
