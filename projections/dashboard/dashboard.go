// Package dashboard is the admin dashboard's read model: the live
// delivery board, order amounts and delivery times per day and zone,
// orders per zone per hour with a seasonal forecast of the next hour,
// rider ratings, and riders' danger events per day and place.
//
// Time semantics: every period is a calendar period in Korea Standard Time
// (Zone, UTC+9, no daylight saving), and every event counts in the period
// of its own timestamp: an order's placement and amount by placed_at, a
// delivery and its time (accepted_at to delivered_at) by delivered_at, a
// cancellation by cancelled_at, a danger event by detected_at. An event
// without its timestamp falls back to the event's OccurredAt. Apply never
// reads the clock: "today", "this month" and "the next hour" are relative
// to the Now a query passes.
//
// Retention: the model keeps the open orders until they are delivered or
// cancelled; and, for good, per zone each day's totals and each hour's
// order count, per rider a rating sum and each day's danger count, and
// every danger event's time and place (for heat maps over any range). It
// grows with history: about 30 bytes per zone-hour with orders (13 in a
// snapshot) and 145 per danger event (93 in a snapshot)
// (BenchmarkFootprint).
//
// Cost: a query costs what it returns, not what the model holds. Apply
// keeps, beside the state, what the queries would otherwise sort or sum
// per call (the board's counts and active list, the rider ranking, each
// month's riders by danger events, the zones; see index), and each
// zone's forecast is memoised. A zone's row of a dashboard (its figures
// for today, the month, today's hours and the next hour) is kept for the
// next query of the same day and hour until an event changes the zone:
// a query makes again only the rows of zones that changed. None of it is
// in the snapshot: Restore derives it.
package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// Name is the projection's stable name.
const Name = "dashboard"

// Zone is the time zone of every day, month and hour of the dashboard:
// Korea Standard Time, fixed so that no tzdata is needed.
var Zone = time.FixedZone("Asia/Seoul", 9*60*60)

const zoneOffset = 9 * 60 * 60 // seconds east of UTC

// Order states of the open orders the model tracks.
const (
	statePlaced   = 1
	stateAccepted = 2
	statePickedUp = 3
)

// order is an open order: placed and neither delivered nor cancelled.
// Times are Unix milliseconds.
type order struct {
	Zone       string `json:"z"`
	Amount     int64  `json:"a"`
	State      int    `json:"s"`
	Rider      string `json:"r,omitempty"`
	PlacedAt   int64  `json:"p"`
	AcceptedAt int64  `json:"ac,omitempty"`
	PickedUpAt int64  `json:"pu,omitempty"`
}

// dayStats are one zone's figures for one KST day.
type dayStats struct {
	Orders     int32 `json:"o,omitempty"`
	Amount     int64 `json:"a,omitempty"`
	Delivered  int32 `json:"d,omitempty"`
	DeliveryMs int64 `json:"dm,omitempty"` // sum of delivered_at - accepted_at
	Cancelled  int32 `json:"c,omitempty"`
}

func (d *dayStats) add(o dayStats) {
	d.Orders += o.Orders
	d.Amount += o.Amount
	d.Delivered += o.Delivered
	d.DeliveryMs += o.DeliveryMs
	d.Cancelled += o.Cancelled
}

type rating struct {
	Stars int64 `json:"s"`
	N     int32 `json:"n"`
}

// danger is one danger event, kept for the heat map.
type danger struct {
	ID     string  `json:"i"`
	At     int64   `json:"t"` // detected_at, Unix milliseconds
	HasLoc bool    `json:"h,omitempty"`
	Lat    float64 `json:"la,omitempty"`
	Lng    float64 `json:"ln,omitempty"`
}

// state is everything the model holds, in the shape of its whole
// snapshot: its JSON encoding (encoding/json sorts map keys, so equal
// states give equal bytes). The model keeps the live part (live) and
// months (see month), and makes a state for Snapshot and from Restore.
type state struct {
	Pos    uint64                         `json:"pos"`
	Orders map[string]*order              `json:"orders"`
	Days   map[string]map[int32]*dayStats `json:"days"`  // zone -> KST day number -> stats
	Hours  map[string]map[int64]int32     `json:"hours"` // zone -> KST hour number -> orders placed
	// FirstHour is each zone's earliest hour with an order.
	FirstHour map[string]int64   `json:"firstHour"`
	Ratings   map[string]*rating `json:"ratings"`
	// RiderDanger is rider -> KST day number -> danger events.
	RiderDanger map[string]map[int32]int32 `json:"riderDanger"`
	// Danger is every danger event, ascending by At then ID.
	Danger []danger `json:"danger"`
}

// live is the part of the state that is not kept by month.
type live struct {
	Pos       uint64
	Orders    map[string]*order
	FirstHour map[string]int64
	Ratings   *projections.Parted[rating] // values replaced, not changed
}

// Model is the dashboard read model. Safe for concurrent queries during
// Apply.
//
// It is projections.Segmented: its snapshot is a live segment (open
// orders, zones' first hours, ratings: copied at capture, as they do not
// grow with history) and a segment per month (see month), encoded only
// when the month changed since the previous capture. So a capture costs
// the live part, and the first change to a month after it a copy of that
// month; Apply never waits for an encoding.
type Model struct {
	mu        sync.RWMutex
	s         live
	months    map[int32]*month // by KST month number
	monthKeys []int32          // keys of months, ascending
	changed   map[int32]bool   // months changed since the last capture
	issued    bool             // a capture issued every segment
	seen      map[string]bool  // danger keys (rider/event_id) of the danger events
	x         index
	// ratingMarks are s.Ratings' marks, which no one reads: a capture
	// freezes every partition of the ratings.
	ratingMarks projections.Parts
	// forecastMu guards x.forecasts while queries share the read lock.
	forecastMu sync.Mutex
}

var (
	_ projections.Projection = (*Model)(nil)
	_ projections.Scoped     = (*Model)(nil)
	_ projections.Segmented  = (*Model)(nil)
)

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.delivery.>", "ev.safety.>"} }

var _ projections.Selective = (*Model)(nil)

// New returns an empty model.
func New() *Model {
	m := &Model{}
	m.Reset()
	return m
}

func (m *Model) Name() string { return Name }

// Version changes with Apply's meaning or the snapshot's format. 2:
// danger events keyed by rider and event id. 3: segmented snapshots.
func (m *Model) Version() int { return 3 }

// EventTypes lists the delivery and safety events the model reads.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*deliveryv1.OrderPlaced)(nil), (*deliveryv1.OrderAccepted)(nil), (*deliveryv1.OrderPickedUp)(nil),
		(*deliveryv1.OrderDelivered)(nil), (*deliveryv1.OrderCancelled)(nil), (*deliveryv1.OrderRated)(nil), (*safetyv1.DangerDetected)(nil))
}

func emptyState() state {
	return state{
		Orders:      map[string]*order{},
		Days:        map[string]map[int32]*dayStats{},
		Hours:       map[string]map[int64]int32{},
		FirstHour:   map[string]int64{},
		Ratings:     map[string]*rating{},
		RiderDanger: map[string]map[int32]int32{},
	}
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = live{Orders: map[string]*order{}, FirstHour: map[string]int64{}, Ratings: projections.NewParted[rating](&m.ratingMarks)}
	m.months, m.monthKeys, m.changed, m.issued = map[int32]*month{}, nil, map[int32]bool{}, false
	m.seen = map[string]bool{}
	m.x = newIndex()
}

// Position returns the position of the last event applied.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.s.Pos
}

// at returns t in Unix milliseconds, or the event's OccurredAt when t is
// missing or invalid.
func at(t *timestamppb.Timestamp, e es.Event) int64 {
	if t != nil && t.IsValid() {
		return t.AsTime().UnixMilli()
	}
	return e.OccurredAt.UnixMilli()
}

// dayOf returns the KST day number (days since 1970-01-01 KST) of ms.
func dayOf(ms int64) int32 { return int32(floorDiv(ms/1000+zoneOffset, 86400)) }

// hourOf returns the KST hour number (hours since 1970-01-01 00:00 KST) of ms.
func hourOf(ms int64) int64 { return floorDiv(ms/1000+zoneOffset, 3600) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Apply folds delivery and safety events in. Events of an order the model
// does not know as open (never placed, or already delivered or cancelled)
// change nothing but ratings, which carry their rider (the delivery domain
// allows one rating per order, of 1 to 5 stars; others are ignored). A
// danger event is counted once per rider and event_id (a detection and
// its CRITICAL upgrade share it); event ids are unique per rider only, so
// one rider's event never hides another's.
//
// What the model keeps, and for how long, is in the package doc.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s.Pos = e.Position.Seq
	switch d := e.Data.(type) {
	case *deliveryv1.OrderPlaced:
		if d.OrderId == "" || m.s.Orders[d.OrderId] != nil {
			return
		}
		t := at(d.PlacedAt, e)
		m.s.Orders[d.OrderId] = &order{Zone: d.Zone, Amount: d.Amount, State: statePlaced, PlacedAt: t}
		m.x.placed++
		first, ok := m.s.FirstHour[d.Zone] // every zone with an order has one
		if !ok {
			m.x.addZone(d.Zone)
		}
		m.addDay(d.Zone, dayOf(t), dayStats{Orders: 1, Amount: d.Amount}) // drops the zone's row, which the hour is in too
		h := hourOf(t)
		m.ownMonth(monthOfHour(h)).zone(d.Zone).hours[h]++
		if !ok || h < first {
			m.s.FirstHour[d.Zone] = h
		}
		m.x.placedIn(d.Zone, h, m.s.FirstHour[d.Zone], !ok || h < first)
	case *deliveryv1.OrderAccepted:
		if o := m.s.Orders[d.OrderId]; o != nil && o.State == statePlaced {
			o.State, o.Rider, o.AcceptedAt = stateAccepted, d.RiderId, at(d.AcceptedAt, e)
			m.x.placed--
			m.x.accepted++
			m.x.active = insertSorted(m.x.active, activeKey{o.AcceptedAt, d.OrderId}, compareActive)
		}
	case *deliveryv1.OrderPickedUp:
		if o := m.s.Orders[d.OrderId]; o != nil && o.State == stateAccepted {
			o.State, o.PickedUpAt = statePickedUp, at(d.PickedUpAt, e)
			m.x.accepted--
			m.x.pickedUp++
			if d.RiderId != "" {
				o.Rider = d.RiderId
			}
		}
	case *deliveryv1.OrderDelivered:
		o := m.s.Orders[d.OrderId]
		if o == nil || o.State == statePlaced {
			return
		}
		t := at(d.DeliveredAt, e)
		m.addDay(o.Zone, dayOf(t), dayStats{Delivered: 1, DeliveryMs: t - o.AcceptedAt})
		m.closeOrder(d.OrderId, o)
	case *deliveryv1.OrderCancelled:
		o := m.s.Orders[d.OrderId]
		if o == nil {
			return
		}
		m.addDay(o.Zone, dayOf(at(d.CancelledAt, e)), dayStats{Cancelled: 1})
		m.closeOrder(d.OrderId, o)
	case *deliveryv1.OrderRated:
		if d.RiderId == "" || d.Stars < 1 || d.Stars > 5 {
			return
		}
		old, _ := m.s.Ratings.Get(d.RiderId)
		r := rating{Stars: old.Stars + int64(d.Stars), N: old.N + 1}
		m.s.Ratings.Set(d.RiderId, r)
		m.x.rate(d.RiderId, old, r)
	case *safetyv1.DangerDetected:
		key := d.RiderId + "/" + d.EventId // rider ids are tokens: no "/"
		if d.EventId == "" || m.seen[key] {
			return
		}
		m.seen[key] = true
		p := danger{ID: key, At: at(d.DetectedAt, e)}
		if l := d.Location; l != nil {
			p.HasLoc, p.Lat, p.Lng = true, l.Lat, l.Lng
		}
		m.insertDanger(p)
		if d.RiderId != "" {
			day := dayOf(p.At)
			m.ownMonth(monthOfDay(day)).riderDanger[riderDay{d.RiderId, day}]++
			m.x.danger(d.RiderId, day, 1)
		}
	}
}

// closeOrder forgets the open order id, delivered or cancelled.
func (m *Model) closeOrder(id string, o *order) {
	switch o.State {
	case statePlaced:
		m.x.placed--
	case stateAccepted:
		m.x.accepted--
	case statePickedUp:
		m.x.pickedUp--
	}
	if o.State == stateAccepted || o.State == statePickedUp {
		m.x.active = removeSorted(m.x.active, activeKey{o.AcceptedAt, id}, compareActive)
	}
	delete(m.s.Orders, id)
}

func dangerBefore(a, b danger) bool {
	if a.At != b.At {
		return a.At < b.At
	}
	return a.ID < b.ID
}

const magic = "tldashboard1\n"

// Snapshot encodes the model canonically (equal models give equal bytes):
// a magic line, then the state as JSON with sorted map keys.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := json.Marshal(m.state())
	if err != nil {
		return nil, fmt.Errorf("encode dashboard: %w", err)
	}
	return append([]byte(magic), b...), nil
}

// state returns the model's state; it shares the live part's orders and
// ratings.
func (m *Model) state() state {
	s := emptyState()
	s.Pos, s.Orders, s.FirstHour = m.s.Pos, m.s.Orders, m.s.FirstHour
	for id, r := range m.s.Ratings.All() {
		s.Ratings[id] = &r
	}
	for _, k := range m.monthKeys {
		ms := m.months[k].snapshot(k)
		for zone, days := range ms.Days {
			for d, st := range days {
				inner(s.Days, zone)[d] = &st
			}
		}
		for zone, hours := range ms.Hours {
			maps.Copy(inner(s.Hours, zone), hours)
		}
		for rider, days := range ms.RiderDanger {
			maps.Copy(inner(s.RiderDanger, rider), days)
		}
		s.Danger = append(s.Danger, ms.Danger...)
	}
	return s
}

// Restore replaces the model with a snapshot; on error the model is
// unchanged.
func (m *Model) Restore(data []byte) error {
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		return errors.New("dashboard snapshot: bad header")
	}
	s := emptyState()
	if err := json.Unmarshal(data[len(magic):], &s); err != nil {
		return fmt.Errorf("dashboard snapshot: %w", err)
	}
	if s.Orders == nil || s.Days == nil || s.Hours == nil || s.FirstHour == nil || s.Ratings == nil || s.RiderDanger == nil {
		return errors.New("dashboard snapshot: missing part")
	}
	return m.restore(s, false)
}

// restore checks s and makes it the model's; segmented says it came from
// segments, which are then stored.
func (m *Model) restore(s state, segmented bool) error {
	seen := make(map[string]bool, len(s.Danger))
	for i, p := range s.Danger {
		if seen[p.ID] || (i > 0 && !dangerBefore(s.Danger[i-1], p)) {
			return errors.New("dashboard snapshot: danger events repeated or out of order")
		}
		seen[p.ID] = true
	}
	for id, o := range s.Orders {
		if o == nil {
			return fmt.Errorf("dashboard snapshot: order %q is empty", id)
		}
	}
	for id, r := range s.Ratings {
		if r == nil || r.N <= 0 {
			return fmt.Errorf("dashboard snapshot: rider %q has a rating without ratings", id)
		}
	}
	x := s.index()
	n := New()
	n.s.Pos, n.s.Orders, n.s.FirstHour = s.Pos, s.Orders, s.FirstHour
	for id, r := range s.Ratings {
		n.s.Ratings.Set(id, *r)
	}
	for zone, days := range s.Days {
		for d, st := range days {
			n.ownMonth(monthOfDay(d)).zone(zone).days[d] = *st
		}
	}
	for zone, hours := range s.Hours {
		for h, c := range hours {
			n.ownMonth(monthOfHour(h)).zone(zone).hours[h] = c
		}
	}
	for rider, days := range s.RiderDanger {
		for d, c := range days {
			n.ownMonth(monthOfDay(d)).riderDanger[riderDay{rider, d}] = c
		}
	}
	for _, p := range s.Danger { // in order: each is an append
		mo := n.ownMonth(monthOfDay(dayOf(p.At)))
		mo.danger = append(mo.danger, p)
	}
	clear(n.changed)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s, m.months, m.monthKeys, m.changed, m.issued, m.seen, m.x = n.s, n.months, n.monthKeys, n.changed, segmented, seen, x
	m.s.Ratings = n.s.Ratings.Moved(&m.ratingMarks)
	return nil
}
