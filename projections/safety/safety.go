// Package safety holds the safety context's read models: each rider's
// danger events, deduplicated by event id, newest first.
//
// Retention: the model keeps each rider's newest MaxPerRider (10,000)
// danger events for good and forgets older ones (they stay in the event
// store). It grows with riders, and with their events up to that bound:
// about 490 bytes per event in memory and 110 in a snapshot
// (BenchmarkFootprint, 1,000 riders × 100 events).
package safety

import (
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// Name is the projection's stable name.
const Name = "safety"

// MaxPerRider bounds the events kept per rider; the oldest go first.
const MaxPerRider = 10000

// Model is riders' danger events. Safe for concurrent queries during Apply.
//
// It is projections.Segmented: its snapshot is a segment per partition of
// riders (projections.Parts), and a capture encodes only the partitions
// whose riders changed since the previous one. A capture hands those
// partitions' maps to their Encodes as they stand, and neither they, the
// lists in them nor the messages are changed in place after that: the
// next change to a partition copies its map first (projections.Parted),
// the next change to a rider's list copies the list first (once per
// capture), and a merge replaces the message with a merged copy. So a
// capture takes O(partitions), and Apply never waits for an encoding.
type Model struct {
	mu     sync.RWMutex
	riders *projections.Parted[rider]
	byID   map[eventKey]*safetyv1.DangerDetected
	pos    uint64
	gen    uint64 // captures taken: a rider's list of an older gen may be read by an Encode
	parts  projections.Parts
}

// rider is one rider's events: a value in riders, replaced, never
// changed in place.
type rider struct {
	events []*safetyv1.DangerDetected // ascending by detected_at, event_id
	gen    uint64                     // the Model.gen events was made in
}

var (
	_ projections.Projection = (*Model)(nil)
	_ projections.Scoped     = (*Model)(nil)
	_ projections.Segmented  = (*Model)(nil)
)

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.safety.>"} }

var _ projections.Selective = (*Model)(nil)

// EventTypes lists the events the model reads.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*safetyv1.DangerDetected)(nil))
}

// New returns an empty model.
func New() *Model {
	m := &Model{}
	m.Reset()
	return m
}

func (m *Model) Name() string { return Name }

// Version changes with Apply's meaning or the snapshot's format. 2:
// segmented snapshots.
func (m *Model) Version() int { return 2 }

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reset()
}

func (m *Model) reset() {
	m.parts.Reset()
	m.riders = projections.NewParted[rider](&m.parts)
	m.byID = map[eventKey]*safetyv1.DangerDetected{}
	m.pos, m.gen = 0, 0
}

// Position returns the last applied position.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

// eventKey scopes event ids to their rider, so one reporter cannot hide
// another rider's event by reusing its id.
type eventKey struct{ rider, id string }

func keyOf(d *safetyv1.DangerDetected) eventKey { return eventKey{d.RiderId, d.EventId} }

// Apply folds DangerDetected events in. An event whose id was seen before
// for the same rider (the same detection delivered twice, or a later
// update of it) is merged:
// severity and peaks only rise, so order does not matter. received_at is
// the store's acceptance time when the event does not carry one.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	d, ok := e.Data.(*safetyv1.DangerDetected)
	if !ok || d.EventId == "" || d.RiderId == "" {
		return
	}
	if old, seen := m.byID[keyOf(d)]; seen {
		m.merge(old, d)
		return
	}
	d = proto.Clone(d).(*safetyv1.DangerDetected)
	if d.ReceivedAt == nil {
		at := e.RecordedAt
		if at.IsZero() {
			at = e.OccurredAt
		}
		d.ReceivedAt = timestamppb.New(at)
	}
	m.insert(d)
}

// own returns rider id's list, empty if new, copied unless made since
// the last capture: the caller may change it in place, and sets it with
// setEvents.
func (m *Model) own(id string) []*safetyv1.DangerDetected {
	r, _ := m.riders.Get(id)
	if r.gen != m.gen {
		return slices.Clone(r.events)
	}
	return r.events
}

func (m *Model) setEvents(id string, events []*safetyv1.DangerDetected) {
	m.riders.Set(id, rider{events: events, gen: m.gen})
}

func (m *Model) insert(d *safetyv1.DangerDetected) {
	list := m.own(d.RiderId)
	i := sort.Search(len(list), func(i int) bool { return !before(list[i], d) })
	list = slices.Insert(list, i, d)
	if len(list) > MaxPerRider {
		delete(m.byID, keyOf(list[0]))
		list = list[1:]
	}
	m.setEvents(d.RiderId, list)
	m.byID[keyOf(d)] = d
}

// merge replaces old, a kept event, with old merged with d (see
// mergeInto): a copy, since an Encode may be reading old.
func (m *Model) merge(old, d *safetyv1.DangerDetected) {
	merged := proto.CloneOf(old)
	mergeInto(merged, d)
	list := m.own(old.RiderId)
	i := sort.Search(len(list), func(i int) bool { return !before(list[i], old) })
	list[i] = merged
	m.setEvents(old.RiderId, list)
	m.byID[keyOf(old)] = merged
}

func before(a, b *safetyv1.DangerDetected) bool {
	ta, tb := a.DetectedAt.AsTime(), b.DetectedAt.AsTime()
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return a.EventId < b.EventId
}

// mergeInto merges d, a later report of into's detection, into into.
func mergeInto(into, d *safetyv1.DangerDetected) {
	if d.Severity > into.Severity {
		into.Severity = d.Severity
	}
	into.PeakAccelG = max(into.PeakAccelG, d.PeakAccelG)
	into.PeakGyroDps = max(into.PeakGyroDps, d.PeakGyroDps)
	into.DurationMs = max(into.DurationMs, d.DurationMs)
	if into.Location == nil && d.Location != nil {
		into.Location = proto.Clone(d.Location).(*safetyv1.Location)
	}
}

// List returns up to limit of rider's events detected at or after since
// (zero: all), newest first, and the number kept for the rider. The
// returned messages are copies.
func (m *Model) List(rider string, since time.Time, limit int) ([]*safetyv1.DangerDetected, int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, _ := m.riders.Get(rider)
	list := r.events
	var out []*safetyv1.DangerDetected
	for i := len(list) - 1; i >= 0 && len(out) < limit; i-- {
		if !since.IsZero() && list[i].DetectedAt.AsTime().Before(since) {
			break
		}
		out = append(out, proto.Clone(list[i]).(*safetyv1.DangerDetected))
	}
	return out, len(list)
}

var (
	snapshotFormat = projections.Framed{Magic: "tlsafety1"}
	partFormat     = projections.Framed{Magic: "tlsafety-riders1"}
)

// partSegment prefixes the name of a partition's segment.
const partSegment = "riders-"

// Snapshot encodes the model: every event, riders and events in order.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var msgs []proto.Message
	for _, r := range sortedRiders(m.riders.All()) {
		for _, d := range r.events {
			msgs = append(msgs, d)
		}
	}
	return snapshotFormat.Marshal(m.pos, msgs)
}

// named is a rider's list with the rider's id.
type named struct {
	id     string
	events []*safetyv1.DangerDetected
}

// sortedRiders returns riders' lists by rider id.
func sortedRiders(riders iter.Seq2[string, rider]) []named {
	var rs []named
	for id, r := range riders {
		rs = append(rs, named{id, r.events})
	}
	slices.SortFunc(rs, func(a, b named) int { return strings.Compare(a.id, b.id) })
	return rs
}

// Restore replaces the model with a snapshot; on error the model is unchanged.
func (m *Model) Restore(data []byte) error {
	n := New()
	pos, err := snapshotFormat.Unmarshal(data, newDanger, n.restoreEvent(-1))
	if err != nil {
		return err
	}
	n.pos = pos
	m.replace(n, false)
	return nil
}

// Capture returns the model's position and a segment per partition of
// riders, encoding those whose riders changed since the previous capture:
// each holds its riders' events, riders and events in order, with the
// partition's number in place of a position.
func (m *Model) Capture(full bool) (uint64, []projections.Segment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gen++
	return m.pos, m.parts.Capture(partSegment, full, func(k int) func() ([]byte, error) {
		part := m.riders.Freeze(k)
		return func() ([]byte, error) {
			var msgs []proto.Message
			for _, r := range sortedRiders(maps.All(part)) {
				for _, d := range r.events {
					msgs = append(msgs, d)
				}
			}
			return partFormat.Marshal(uint64(k), msgs)
		}
	})
}

// RestoreSegments replaces the model with the segments of a Capture at
// pos: every partition's, once each. On error the model is unchanged.
func (m *Model) RestoreSegments(pos uint64, names []string, read func(name string) ([]byte, error)) error {
	n := New()
	var got [projections.PartCount]bool
	for _, name := range names {
		k, ok := projections.ParsePart(partSegment, name)
		if !ok || got[k] {
			return fmt.Errorf("safety snapshot: segment %q unknown or repeated", name)
		}
		got[k] = true
		data, err := read(name)
		if err != nil {
			return fmt.Errorf("safety snapshot: %w", err)
		}
		at, err := partFormat.Unmarshal(data, newDanger, n.restoreEvent(k))
		if err == nil && at != uint64(k) {
			err = fmt.Errorf("segment %s holds partition %d", name, at)
		}
		if err != nil {
			return fmt.Errorf("safety snapshot: %w", err)
		}
	}
	if missing := slices.Index(got[:], false); missing >= 0 {
		return fmt.Errorf("safety snapshot: no segment %s", projections.PartName(partSegment, missing))
	}
	n.pos = pos
	m.replace(n, true)
	return nil
}

func newDanger() proto.Message { return &safetyv1.DangerDetected{} }

// restoreEvent returns a Framed.Unmarshal callback that inserts each
// event into n, refusing events without ids, repeated ones and, unless k
// is -1, riders of another partition than k.
func (n *Model) restoreEvent(k int) func(proto.Message) error {
	return func(msg proto.Message) error {
		d := msg.(*safetyv1.DangerDetected)
		if d.EventId == "" || d.RiderId == "" || n.byID[keyOf(d)] != nil {
			return errors.New("bad or repeated event")
		}
		if k >= 0 && projections.PartOf(d.RiderId) != k {
			return fmt.Errorf("rider %q is not of partition %d", d.RiderId, k)
		}
		n.insert(d)
		return nil
	}
}

// replace makes m's state n's; segmented says n was restored from
// segments, which are then stored.
func (m *Model) replace(n *Model, segmented bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// n's maps and lists are its own: no Encode reads them.
	m.byID, m.pos, m.gen, m.parts = n.byID, n.pos, n.gen, projections.Parts{}
	m.riders = n.riders.Moved(&m.parts)
	if segmented {
		m.parts.Restored()
	}
}
