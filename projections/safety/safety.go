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
	"sort"
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
type Model struct {
	mu      sync.RWMutex
	byRider map[string][]*safetyv1.DangerDetected // ascending by detected_at, event_id
	byID    map[eventKey]*safetyv1.DangerDetected
	pos     uint64
}

var _ projections.Projection = (*Model)(nil)
var _ projections.Scoped = (*Model)(nil)

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
func (m *Model) Version() int { return 1 }

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byRider = map[string][]*safetyv1.DangerDetected{}
	m.byID = map[eventKey]*safetyv1.DangerDetected{}
	m.pos = 0
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
		merge(old, d)
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

func (m *Model) insert(d *safetyv1.DangerDetected) {
	list := m.byRider[d.RiderId]
	i := sort.Search(len(list), func(i int) bool { return !before(list[i], d) })
	list = append(list, nil)
	copy(list[i+1:], list[i:])
	list[i] = d
	if len(list) > MaxPerRider {
		delete(m.byID, keyOf(list[0]))
		list = list[1:]
	}
	m.byRider[d.RiderId] = list
	m.byID[keyOf(d)] = d
}

func before(a, b *safetyv1.DangerDetected) bool {
	ta, tb := a.DetectedAt.AsTime(), b.DetectedAt.AsTime()
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return a.EventId < b.EventId
}

func merge(into, d *safetyv1.DangerDetected) {
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
	list := m.byRider[rider]
	var out []*safetyv1.DangerDetected
	for i := len(list) - 1; i >= 0 && len(out) < limit; i-- {
		if !since.IsZero() && list[i].DetectedAt.AsTime().Before(since) {
			break
		}
		out = append(out, proto.Clone(list[i]).(*safetyv1.DangerDetected))
	}
	return out, len(list)
}

var snapshotFormat = projections.Framed{Magic: "tlsafety1"}

// Snapshot encodes the model: every event, riders and events in order.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	riders := make([]string, 0, len(m.byRider))
	for r := range m.byRider {
		riders = append(riders, r)
	}
	sort.Strings(riders)
	var msgs []proto.Message
	for _, r := range riders {
		for _, d := range m.byRider[r] {
			msgs = append(msgs, d)
		}
	}
	return snapshotFormat.Marshal(m.pos, msgs)
}

// Restore replaces the model with a snapshot; on error the model is unchanged.
func (m *Model) Restore(data []byte) error {
	n := New()
	pos, err := snapshotFormat.Unmarshal(data, func() proto.Message { return &safetyv1.DangerDetected{} }, func(msg proto.Message) error {
		d := msg.(*safetyv1.DangerDetected)
		if d.EventId == "" || d.RiderId == "" || n.byID[keyOf(d)] != nil {
			return errors.New("bad or repeated event")
		}
		n.insert(d)
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byRider, m.byID, m.pos = n.byRider, n.byID, pos
	return nil
}
