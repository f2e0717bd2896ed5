// Package nearby is the open-orders spatial index: every order placed and
// not yet accepted or cancelled, by pickup location, searchable by
// distance from a point, nearest first.
//
// The index is a fixed grid of CellDeg × CellDeg cells (0.005°: about
// 0.56 × 0.44 km at Seoul) held in a hash map from cell to the orders in
// it, each with its unit vector. A query takes the cells that intersect
// the circle's bounding box (~25 for the default 1 km radius), visits the
// non-empty ones nearest first, screens candidates by chord length, keeps
// the limit nearest in a heap, and stops at the first cell that cannot
// hold anything nearer than the limit-th hit. It never scans every order;
// where a box would cover more cells than the index holds (huge radii
// near the poles) it visits the held cells instead.
//
// Distances are delivery.DistanceM (haversine), the same function a
// brute-force scan uses, so results match it exactly.
//
// Retention: the index holds each open order (its OrderPlaced) from
// OrderPlaced until OrderAccepted or OrderCancelled and forgets it then,
// so it grows with the orders open at once, not with history: about 490
// bytes per open order in memory and 90 in a snapshot (BenchmarkFootprint,
// 100k open orders).
package nearby

import (
	"cmp"
	"errors"
	"math"
	"slices"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
)

// Name is the projection's stable name.
const Name = "delivery-nearby"

// CellDeg is the grid's cell size in degrees of latitude and of longitude.
const CellDeg = 0.005

const (
	latCells = 180 / CellDeg // 36000 rows
	lngCells = 360 / CellDeg // 72000 columns, wrapping at the antimeridian
)

// Hit is an open order and its distance from the query point.
type Hit struct {
	Order     *deliveryv1.OrderPlaced // shared: callers must not modify it
	DistanceM float64
}

// entry is an open order in its cell, by value so that a cell's
// candidates are screened from contiguous memory.
type entry struct {
	x, y, z  float64 // unit vector of lat/lng
	lat, lng float64
	order    *deliveryv1.OrderPlaced
}

// slot is where an order's entry is.
type slot struct {
	cell  uint64
	index int
}

// Model is the open-orders index. Safe for concurrent queries during Apply.
type Model struct {
	mu    sync.RWMutex
	cells map[uint64][]entry
	byID  map[string]slot
	pos   uint64
}

var _ projections.Projection = (*Model)(nil)
var _ projections.Scoped = (*Model)(nil)

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.delivery.>"} }

var _ projections.Selective = (*Model)(nil)

// New returns an empty index.
func New() *Model {
	m := &Model{}
	m.Reset()
	return m
}

func (m *Model) Name() string { return Name }
func (m *Model) Version() int { return 1 }

// EventTypes lists the events the index reads.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*deliveryv1.OrderPlaced)(nil), (*deliveryv1.OrderAccepted)(nil), (*deliveryv1.OrderCancelled)(nil))
}

// Reset empties the index.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cells = map[uint64][]entry{}
	m.byID = map[string]slot{}
	m.pos = 0
}

// Position returns the last applied position.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

func (m *Model) has(id string) bool {
	_, ok := m.byID[id]
	return ok
}

// Len returns the number of open orders.
func (m *Model) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.byID)
}

// Apply opens an order on OrderPlaced and closes it on OrderAccepted or
// OrderCancelled.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	switch d := e.Data.(type) {
	case *deliveryv1.OrderPlaced:
		m.insert(proto.Clone(d).(*deliveryv1.OrderPlaced))
	case *deliveryv1.OrderAccepted:
		m.remove(d.OrderId)
	case *deliveryv1.OrderCancelled:
		m.remove(d.OrderId)
	}
}

func cellOf(lat, lng float64) (row, col int) {
	row = int(math.Floor((lat + 90) / CellDeg))
	col = int(math.Floor((lng + 180) / CellDeg))
	return min(max(row, 0), latCells-1), ((col % lngCells) + lngCells) % lngCells
}

func key(row, col int) uint64 { return uint64(row)<<32 | uint64(col) }

func (m *Model) insert(o *deliveryv1.OrderPlaced) {
	if o.OrderId == "" {
		return
	}
	m.remove(o.OrderId)
	lat, lng := o.GetPickup().GetLat(), o.GetPickup().GetLng()
	k := key(cellOf(lat, lng))
	e := entry{order: o, lat: lat, lng: lng}
	e.x, e.y, e.z = unit(lat, lng)
	m.byID[o.OrderId] = slot{cell: k, index: len(m.cells[k])}
	m.cells[k] = append(m.cells[k], e)
}

func (m *Model) remove(id string) {
	at, ok := m.byID[id]
	if !ok {
		return
	}
	delete(m.byID, id)
	list := m.cells[at.cell]
	last := len(list) - 1
	if at.index != last {
		list[at.index] = list[last]
		m.byID[list[at.index].order.OrderId] = at
	}
	list[last] = entry{}
	if last == 0 {
		delete(m.cells, at.cell)
	} else {
		m.cells[at.cell] = list[:last]
	}
}

// Nearby returns up to limit open orders whose pickup lies within
// radiusM metres (haversine, delivery.DistanceM) of lat/lng, nearest first
// (ties by order id). lat, lng must be valid degrees, radiusM ≥ 0 and
// limit ≥ 1.
//
// Candidates in the covering cells are screened by chord length between
// unit vectors (a few multiplications) against the radius and against
// the current limit-th nearest, with a margin of ~6 mm for rounding; only
// those that pass get the exact haversine distance, which alone decides.
func (m *Model) Nearby(lat, lng, radiusM float64, limit int) []Hit {
	m.mu.RLock()
	defer m.mu.RUnlock()
	qx, qy, qz := unit(lat, lng)
	ang := radiusM/delivery.EarthRadiusM + margin
	chordMax := 2 * math.Sin(min(ang, math.Pi)/2)
	radiusBound := chordMax * chordMax
	top := topK{limit: limit, bound: radiusBound}
	visit := func(list []entry) {
		for i := range list {
			e := &list[i]
			dx, dy, dz := e.x-qx, e.y-qy, e.z-qz
			c2 := dx*dx + dy*dy + dz*dz
			if c2 > top.bound {
				continue
			}
			d := delivery.DistanceM(lat, lng, e.lat, e.lng)
			if d <= radiusM {
				top.offer(Hit{Order: e.order, DistanceM: d}, c2, radiusBound)
			}
		}
	}
	rowLo, rowHi, cols, colLo := box(lat, lng, radiusM)
	n := (rowHi - rowLo + 1) * cols
	if n > len(m.cells) {
		for k, list := range m.cells {
			row, col := int(k>>32), int(k&math.MaxUint32)
			if row >= rowLo && row <= rowHi && (col-colLo+lngCells)%lngCells < cols {
				visit(list)
			}
		}
		slices.SortFunc(top.hits, compareHits)
		return top.hits
	}
	// Visit the held cells nearest first, and stop at the first whose
	// nearest possible point is beyond the limit-th nearest hit so far.
	_, qCol := cellOf(lat, lng)
	cosQ := math.Cos(lat * math.Pi / 180)
	frac := (lng + 180) / CellDeg
	frac -= math.Floor(frac)
	edge := min(frac, 1-frac) * CellDeg // to the query cell's nearer east/west edge
	near := make([]nearCell, 0, n)
	for row := rowLo; row <= rowHi; row++ {
		rowLat := float64(row)*CellDeg - 90 // south edge
		dLat := max(rowLat-lat, lat-(rowLat+CellDeg), 0)
		hLat := hav(dLat)
		cosWorst := math.Cos(min(max(math.Abs(rowLat), math.Abs(rowLat+CellDeg)), 90) * math.Pi / 180)
		for c := range cols {
			col := (colLo + c) % lngCells
			list, ok := m.cells[key(row, col)]
			if !ok {
				continue
			}
			// hav(d) = hav(Δφ) + cos φ₁ cos φ₂ hav(Δλ), each term bounded
			// below by the cell's nearest row and column.
			lb := hLat
			if col != qCol {
				gap := min((col-qCol+lngCells)%lngCells, (qCol-col+lngCells)%lngCells) - 1
				lb += cosQ * cosWorst * hav(float64(gap)*CellDeg+edge)
			}
			near = append(near, nearCell{lb: 4 * lb, list: list})
		}
	}
	slices.SortFunc(near, func(a, b nearCell) int { return cmp.Compare(a.lb, b.lb) })
	for _, c := range near {
		if c.lb*(1-1e-9) > top.bound {
			break
		}
		visit(c.list)
	}
	slices.SortFunc(top.hits, compareHits)
	return top.hits
}

type nearCell struct {
	lb   float64 // lower bound of the squared chord to any point in the cell
	list []entry
}

// hav is the haversine of an angle in degrees.
func hav(deg float64) float64 {
	s := math.Sin(deg * math.Pi / 360)
	return s * s
}

// margin, in radians of arc (~6 mm), absorbs rounding in screening.
const margin = 1e-9

func unit(lat, lng float64) (x, y, z float64) {
	const rad = math.Pi / 180
	sinLat, cosLat := math.Sincos(lat * rad)
	sinLng, cosLng := math.Sincos(lng * rad)
	return cosLat * cosLng, cosLat * sinLng, sinLat
}

func compareHits(a, b Hit) int {
	if c := cmp.Compare(a.DistanceM, b.DistanceM); c != 0 {
		return c
	}
	return cmp.Compare(a.Order.OrderId, b.Order.OrderId)
}

// topK keeps the limit nearest hits in a max-heap by (distance, id), and
// bound, the squared chord beyond which no candidate can enter.
type topK struct {
	limit int
	hits  []Hit
	c2s   []float64 // squared chord of each hit, for the bound
	bound float64
}

func (t *topK) offer(h Hit, c2, radiusBound float64) {
	if len(t.hits) < t.limit {
		t.hits = append(t.hits, h)
		t.c2s = append(t.c2s, c2)
		t.up(len(t.hits) - 1)
	} else {
		if compareHits(h, t.hits[0]) >= 0 {
			return
		}
		t.hits[0], t.c2s[0] = h, c2
		t.down(0)
	}
	if len(t.hits) == t.limit {
		c := math.Sqrt(t.c2s[0]) + 2*margin
		t.bound = min(radiusBound, c*c)
	}
}

func (t *topK) swap(i, j int) {
	t.hits[i], t.hits[j] = t.hits[j], t.hits[i]
	t.c2s[i], t.c2s[j] = t.c2s[j], t.c2s[i]
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if compareHits(t.hits[i], t.hits[p]) <= 0 {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *topK) down(i int) {
	n := len(t.hits)
	for {
		big := i
		if l := 2*i + 1; l < n && compareHits(t.hits[l], t.hits[big]) > 0 {
			big = l
		}
		if r := 2*i + 2; r < n && compareHits(t.hits[r], t.hits[big]) > 0 {
			big = r
		}
		if big == i {
			return
		}
		t.swap(i, big)
		i = big
	}
}

// box returns the grid rows and the run of columns (cols of them from
// colLo, wrapping) that cover every point within radiusM of lat/lng.
func box(lat, lng, radiusM float64) (rowLo, rowHi, cols, colLo int) {
	const deg = 180 / math.Pi
	ang := radiusM/delivery.EarthRadiusM + margin
	dLat := ang * deg
	rowLo, _ = cellOf(max(lat-dLat, -90), lng)
	rowHi, _ = cellOf(min(lat+dLat, 90), lng)
	// Longitude half-width of the circle's bounding box: asin(sin r / cos φ)
	// (exact for a spherical cap); all longitudes if the cap reaches a pole.
	s := math.Sin(ang) / math.Cos(lat/deg)
	if lat+dLat >= 90 || lat-dLat <= -90 || s >= 1 || ang >= math.Pi/2 {
		return rowLo, rowHi, lngCells, 0
	}
	dLng := math.Asin(s) * deg
	_, colLo = cellOf(lat, lng-dLng)
	_, colHi := cellOf(lat, lng+dLng)
	cols = (colHi-colLo+lngCells)%lngCells + 1
	return rowLo, rowHi, cols, colLo
}

var snapshotFormat = projections.Framed{Magic: "tlnearby1"}

// Snapshot encodes the index: every open order, by order id.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]string, 0, len(m.byID))
	for id := range m.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	msgs := make([]proto.Message, len(ids))
	for i, id := range ids {
		at := m.byID[id]
		msgs[i] = m.cells[at.cell][at.index].order
	}
	return snapshotFormat.Marshal(m.pos, msgs)
}

// Restore replaces the index with a snapshot; on error it is unchanged.
func (m *Model) Restore(data []byte) error {
	n := New()
	pos, err := snapshotFormat.Unmarshal(data, func() proto.Message { return &deliveryv1.OrderPlaced{} }, func(msg proto.Message) error {
		o := msg.(*deliveryv1.OrderPlaced)
		if o.OrderId == "" || n.has(o.OrderId) {
			return errors.New("bad or repeated order")
		}
		n.insert(o)
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cells, m.byID, m.pos = n.cells, n.byID, pos
	return nil
}
