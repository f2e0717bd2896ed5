// Package alerts is the safety context's alert rules and alerts read
// model, one pure projection over DangerDetected, AlertRaisedV2 (stored
// AlertRaised events arrive upcast to it) and AlertAcknowledged.
//
// The rules: a rider's danger events are grouped into incidents (session
// windows: an event within Window of the incident's latest event joins
// it). An incident qualifies for an alert when one of its events has
// severity HIGH or above, or when Count of its events fall within Window
// of each other. An incident qualifies at most once, and its alert id is
// safety.AlertID(rider, id of the event that opened the incident): the
// same incident always yields the same id, so a replay, a redelivery or
// a duplicate report never raises a second alert.
//
// The model only decides; it appends nothing. The alerts reaction
// (adapters/reactions) asks Triggered for each new danger event and
// appends the AlertRaisedV2 through the alert aggregate, which raises
// each id once. Once it is applied the decision is forgotten.
//
// Retention: the model keeps every alert raised, with its
// acknowledgement, for good; and each rider's current incident (at most
// 256 events), the ids of the last 100,000 danger events (to deduplicate)
// and the alerts due but not raised yet. It forgets an incident once the
// rider's next one starts, and older ids. It grows with alerts: about 720
// bytes per alert (with its danger event) in memory and 200 in a snapshot
// (BenchmarkFootprint, 50,000 alerts).
//
// Snapshots are segmented (projections.Segmented): a "state" segment with
// the deduplication ids, and a segment per partition (projections.Parts)
// of incidents (by rider), alerts due (by triggering event) and alerts
// (by id), encoded only when it changed since the previous snapshot. A
// capture hands the partitions' maps to their Encodes, and nothing they
// hold is changed in place after that (projections.Parted; incidents and
// alerts are replaced by changed copies), so Apply waits for a capture,
// O(partitions + 100,000 ids copied), never for an encoding.
package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/projections"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// Name is the projection's stable name.
const Name = "alerts"

// Rules are the alert thresholds.
type Rules struct {
	// Count events of an incident within Window raise an alert.
	Count int
	// Window is both the incident gap and the counting window.
	Window time.Duration
	// Severe is the lowest severity that raises an alert at once.
	Severe safetyv1.Severity
}

// DefaultRules: 3 events within 10 minutes, or one of severity HIGH.
func DefaultRules() Rules {
	return Rules{Count: 3, Window: 10 * time.Minute, Severe: safetyv1.Severity_SEVERITY_HIGH}
}

// Bounds on the rules' memory.
const (
	maxSeen          = 100000 // event ids remembered for deduplication
	maxIncidentItems = 256    // events kept per incident
)

type item struct {
	ID       string
	At       time.Time
	Severity safetyv1.Severity
	Kind     safetyv1.DangerKind
}

type incident struct {
	FirstID     string
	First, Last time.Time
	Items       []item // ascending by At, ID
	AlertID     string // set once the incident qualified
}

// Model is the alert rules' state and the alerts read model. Safe for
// concurrent queries during Apply.
type Model struct {
	rules Rules

	mu        sync.RWMutex
	parts     projections.Parts
	incidents *projections.Parted[incident] // by rider
	seen      map[string]bool
	seenOrder []string // ring of seen ids, oldest at seenNext
	seenNext  int
	triggered *projections.Parted[[]*safetyv1.AlertRaisedV2] // by triggering event id; lists replaced, not changed
	trigger   map[string]string                              // alert id -> triggering event id, until raised
	alerts    *projections.Parted[*safetyv1.Alert]           // replaced, not changed
	pos       uint64
	// listed is what List reads, kept by Apply, derived on restore (not
	// in the snapshot): so a query costs what it returns, not what the
	// model holds.
	listed listing
}

var (
	_ projections.Projection = (*Model)(nil)
	_ projections.Scoped     = (*Model)(nil)
	_ projections.Segmented  = (*Model)(nil)
)

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.safety.>"} }

var _ projections.Selective = (*Model)(nil)

// New returns an empty model with rules r (zero fields take the defaults).
func New(r Rules) *Model {
	d := DefaultRules()
	if r.Count <= 0 {
		r.Count = d.Count
	}
	if r.Window <= 0 {
		r.Window = d.Window
	}
	if r.Severe == safetyv1.Severity_SEVERITY_UNSPECIFIED {
		r.Severe = d.Severe
	}
	m := &Model{rules: r}
	m.Reset()
	return m
}

func (m *Model) Name() string { return Name }

// Version changes when the rules' meaning or the snapshot's format
// changes. 2: alerts are AlertRaisedV2 (a version 1 snapshot holds
// AlertRaised). 3: segmented snapshots.
func (m *Model) Version() int { return 3 }

// EventTypes lists the events the model reads.
func (m *Model) EventTypes() []string {
	return projections.TypeNames(&safetyv1.DangerDetected{}, &safetyv1.AlertRaisedV2{}, &safetyv1.AlertAcknowledged{})
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reset()
}

func (m *Model) reset() {
	m.parts.Reset()
	m.incidents = projections.NewParted[incident](&m.parts)
	m.seen = map[string]bool{}
	m.seenOrder, m.seenNext = nil, 0
	m.triggered = projections.NewParted[[]*safetyv1.AlertRaisedV2](&m.parts)
	m.trigger = map[string]string{}
	m.alerts = projections.NewParted[*safetyv1.Alert](&m.parts)
	m.pos = 0
	m.listed = newListing()
}

// Position returns the last applied position.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

// Apply folds one event in.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	switch d := e.Data.(type) {
	case *safetyv1.DangerDetected:
		m.danger(d)
	case *safetyv1.AlertRaisedV2:
		if _, raised := m.alerts.Get(d.AlertId); d.AlertId == "" || raised {
			return
		}
		a := &safetyv1.Alert{RaisedV2: proto.CloneOf(d)}
		m.alerts.Set(d.AlertId, a)
		m.listed.add(a)
		if ev, ok := m.trigger[d.AlertId]; ok {
			delete(m.trigger, d.AlertId)
			due, _ := m.triggered.Get(ev)
			rest := slices.DeleteFunc(slices.Clone(due), func(a *safetyv1.AlertRaisedV2) bool { return a.AlertId == d.AlertId })
			if len(rest) == 0 {
				m.triggered.Delete(ev)
			} else {
				m.triggered.Set(ev, rest)
			}
		}
	case *safetyv1.AlertAcknowledged:
		if a, ok := m.alerts.Get(d.AlertId); ok && a.Acknowledged == nil {
			acked := proto.CloneOf(a)
			acked.Acknowledged = proto.CloneOf(d)
			m.alerts.Set(d.AlertId, acked)
			m.listed.acknowledged(a.RaisedV2)
		}
	}
}

func (m *Model) markSeen(id string) bool {
	if m.seen[id] {
		return false
	}
	if len(m.seenOrder) < maxSeen {
		m.seenOrder = append(m.seenOrder, id)
	} else {
		delete(m.seen, m.seenOrder[m.seenNext])
		m.seenOrder[m.seenNext] = id
		m.seenNext = (m.seenNext + 1) % maxSeen
	}
	m.seen[id] = true
	return true
}

// danger runs the rules on one danger event.
func (m *Model) danger(d *safetyv1.DangerDetected) {
	// Seen per rider: a client-chosen event id must not shadow another
	// rider's event.
	if d.EventId == "" || d.RiderId == "" || d.DetectedAt == nil || !m.markSeen(d.RiderId+"/"+d.EventId) {
		return
	}
	it := item{ID: d.EventId, At: d.DetectedAt.AsTime(), Severity: d.Severity, Kind: d.Kind}
	w := m.rules.Window
	inc, ok := m.incidents.Get(d.RiderId)
	switch {
	case !ok || it.At.After(inc.Last.Add(w)):
		inc = incident{FirstID: it.ID, First: it.At, Last: it.At}
	case it.At.Before(inc.First.Add(-w)):
		// A late report of an older incident (a device that was offline):
		// judged on its own, without disturbing the current incident.
		old := incident{FirstID: it.ID, First: it.At, Last: it.At}
		old.add(it)
		m.judge(d.RiderId, &old, it)
		return
	default:
		inc.Items = slices.Clone(inc.Items) // a capture may hold them
	}
	inc.add(it)
	m.judge(d.RiderId, &inc, it)
	m.incidents.Set(d.RiderId, inc)
}

func (inc *incident) add(it item) {
	i := sort.Search(len(inc.Items), func(i int) bool {
		o := inc.Items[i]
		return o.At.After(it.At) || o.At.Equal(it.At) && o.ID > it.ID
	})
	inc.Items = append(inc.Items, item{})
	copy(inc.Items[i+1:], inc.Items[i:])
	inc.Items[i] = it
	if len(inc.Items) > maxIncidentItems {
		inc.Items = inc.Items[1:]
	}
	if it.At.Before(inc.First) {
		inc.First = it.At
	}
	if it.At.After(inc.Last) {
		inc.Last = it.At
	}
}

// judge raises the incident's alert, triggered by it, if the incident
// qualifies and has not yet.
func (m *Model) judge(rider string, inc *incident, it item) {
	if inc.AlertID != "" {
		return
	}
	var reason string
	var rule safetyv1.AlertRule
	if it.Severity >= m.rules.Severe {
		rule, reason = safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT, fmt.Sprintf("severity %s %s", severityName(it.Severity), kindName(it.Kind))
	} else if n := maxInWindow(inc.Items, m.rules.Window); n >= m.rules.Count {
		rule, reason = safetyv1.AlertRule_ALERT_RULE_REPEATED_EVENTS, fmt.Sprintf("%d danger events within %s", n, m.rules.Window)
	} else {
		return
	}
	inc.AlertID = safety.AlertID(rider, inc.FirstID)
	a := &safetyv1.AlertRaisedV2{AlertId: inc.AlertID, RiderId: rider, Reason: reason, RaisedAt: timestampOf(it.At), Rule: rule}
	for _, x := range inc.Items {
		a.EventIds = append(a.EventIds, x.ID)
		a.Severity = max(a.Severity, x.Severity)
	}
	if _, raised := m.alerts.Get(a.AlertId); raised { // e.g. rebuilt after the reaction ran
		return
	}
	due, _ := m.triggered.Get(it.ID)
	m.triggered.Set(it.ID, append(slices.Clip(due), a))
	m.trigger[a.AlertId] = it.ID
}

// maxInWindow returns the largest number of items within w of each other.
func maxInWindow(items []item, w time.Duration) int {
	best, j := 0, 0
	for i := range items {
		for items[i].At.Sub(items[j].At) > w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// Triggered returns copies of the alerts that danger event eventID made
// due and that are not raised yet (no AlertRaisedV2 applied).
func (m *Model) Triggered(eventID string) []*safetyv1.AlertRaisedV2 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*safetyv1.AlertRaisedV2
	due, _ := m.triggered.Get(eventID)
	for _, a := range due {
		out = append(out, proto.CloneOf(a))
	}
	return out
}

// Pending returns copies of every alert due and not raised yet, oldest
// trigger first: what a reaction that lost its work would still owe.
func (m *Model) Pending() []*safetyv1.AlertRaisedV2 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*safetyv1.AlertRaisedV2
	for _, list := range m.triggered.All() {
		for _, a := range list {
			out = append(out, proto.CloneOf(a))
		}
	}
	sort.Slice(out, func(i, j int) bool { return newer(out[j], out[i]) })
	return out
}

// List returns up to limit alerts of rider (empty: every rider), only
// unacknowledged ones if openOnly, newest first, and how many match.
// The returned messages are copies.
func (m *Model) List(rider string, openOnly bool, limit int) ([]*safetyv1.Alert, int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var list *keyList
	switch {
	case rider == "" && openOnly:
		list = &m.listed.open
	case rider == "":
		list = &m.listed.all
	case openOnly:
		list = m.listed.openByRider[rider]
	default:
		list = m.listed.byRider[rider]
	}
	total := list.Len()
	out := make([]*safetyv1.Alert, 0, max(0, min(limit, total)))
	for k := range list.Backward() {
		if len(out) >= limit {
			break
		}
		a, _ := m.alerts.Get(k.id)
		out = append(out, answer(a))
	}
	return out, total
}

// Get returns a copy of alert id, or nil.
func (m *Model) Get(id string) *safetyv1.Alert {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if a, ok := m.alerts.Get(id); ok {
		return answer(a)
	}
	return nil
}

func newer(a, b *safetyv1.AlertRaisedV2) bool {
	ta, tb := a.RaisedAt.AsTime(), b.RaisedAt.AsTime()
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return a.AlertId > b.AlertId
}

func severityName(s safetyv1.Severity) string {
	n, ok := safetyv1.Severity_name[int32(s)]
	if !ok {
		return fmt.Sprint(int32(s))
	}
	return n[len("SEVERITY_"):]
}

func kindName(k safetyv1.DangerKind) string {
	n, ok := safetyv1.DangerKind_name[int32(k)]
	if !ok || k == 0 {
		return "danger"
	}
	return toLower(n[len("DANGER_KIND_"):])
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c == '_':
			b[i] = ' '
		}
	}
	return string(b)
}

// snapshot is the model's serialized form. Protobuf messages are stored
// as their deterministic encodings.
type snapshot struct {
	Magic     string
	Pos       uint64
	Incidents map[string]incident
	SeenOrder []string
	SeenNext  int
	Triggered map[string][][]byte
	Alerts    [][]byte
}

const magic = "tlalerts2"

// Segments: the state, and one per partition.
const (
	stateSegment = "state"
	partSegment  = "part-"
	stateMagic   = "tlalerts-state3"
)

// stateSnapshot is the state segment.
type stateSnapshot struct {
	Magic     string
	SeenOrder []string
	SeenNext  int
}

// partSnapshot is a partition's segment: what snapshot holds of the
// incidents, alerts due and alerts of the partition.
type partSnapshot struct {
	Part      int
	Incidents map[string]incident
	Triggered map[string][][]byte
	Alerts    [][]byte
}

// Snapshot encodes the model.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	triggered, alerts, err := encodeAlerts(m.triggered.All(), m.alerts.All())
	if err != nil {
		return nil, err
	}
	return json.Marshal(snapshot{Magic: magic, Pos: m.pos, Incidents: maps.Collect(m.incidents.All()),
		SeenOrder: m.seenOrder, SeenNext: m.seenNext, Triggered: triggered, Alerts: alerts}) // map keys are sorted: deterministic
}

// encodeAlerts encodes alerts due by triggering event, and alerts by id.
func encodeAlerts(triggered iter.Seq2[string, []*safetyv1.AlertRaisedV2], alerts iter.Seq2[string, *safetyv1.Alert]) (map[string][][]byte, [][]byte, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	due := map[string][][]byte{}
	for ev, list := range triggered {
		for _, a := range list {
			b, err := opts.Marshal(a)
			if err != nil {
				return nil, nil, fmt.Errorf("encode alert: %w", err)
			}
			due[ev] = append(due[ev], b)
		}
	}
	byID := maps.Collect(alerts)
	var out [][]byte
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		b, err := opts.Marshal(byID[id])
		if err != nil {
			return nil, nil, fmt.Errorf("encode alert: %w", err)
		}
		out = append(out, b)
	}
	return due, out, nil
}

// Capture returns the model's position, its state segment and a segment
// per partition, encoding the state and the partitions changed since the
// previous capture.
func (m *Model) Capture(full bool) (uint64, []projections.Segment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := stateSnapshot{Magic: stateMagic, SeenOrder: slices.Clone(m.seenOrder), SeenNext: m.seenNext}
	segs := []projections.Segment{{Name: stateSegment, Encode: func() ([]byte, error) { return json.Marshal(st) }}}
	return m.pos, append(segs, m.parts.Capture(partSegment, full, func(k int) func() ([]byte, error) {
		incidents, triggered, alerts := m.incidents.Freeze(k), m.triggered.Freeze(k), m.alerts.Freeze(k)
		return func() ([]byte, error) {
			due, raised, err := encodeAlerts(maps.All(triggered), maps.All(alerts))
			if err != nil {
				return nil, err
			}
			return json.Marshal(partSnapshot{Part: k, Incidents: incidents, Triggered: due, Alerts: raised})
		}
	})...)
}

// Restore replaces the model with a snapshot; on error it is unchanged.
func (m *Model) Restore(data []byte) error {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("alerts snapshot: %w", err)
	}
	if s.Magic != magic {
		return errors.New("alerts snapshot: bad header")
	}
	n := New(m.rules)
	if err := n.restoreSeen(s.SeenOrder, s.SeenNext); err != nil {
		return err
	}
	if err := n.restorePart(-1, s.Incidents, s.Triggered, s.Alerts); err != nil {
		return err
	}
	n.pos = s.Pos
	m.replace(n, false)
	return nil
}

// RestoreSegments replaces the model with the segments of a Capture at
// pos: the state's, then every partition's once. On error the model is
// unchanged.
func (m *Model) RestoreSegments(pos uint64, names []string, read func(name string) ([]byte, error)) error {
	n := New(m.rules)
	var got [projections.PartCount]bool
	for i, name := range names {
		data, err := read(name)
		if err != nil {
			return fmt.Errorf("alerts snapshot: %w", err)
		}
		if i == 0 {
			var st stateSnapshot
			if name != stateSegment {
				return fmt.Errorf("alerts snapshot: segment %q, want %s first", name, stateSegment)
			}
			if err := json.Unmarshal(data, &st); err != nil || st.Magic != stateMagic {
				return fmt.Errorf("alerts snapshot: bad %s segment (%v)", stateSegment, err)
			}
			if err := n.restoreSeen(st.SeenOrder, st.SeenNext); err != nil {
				return err
			}
			continue
		}
		k, ok := projections.ParsePart(partSegment, name)
		if !ok || got[k] {
			return fmt.Errorf("alerts snapshot: segment %q unknown or repeated", name)
		}
		got[k] = true
		var p partSnapshot
		if err := json.Unmarshal(data, &p); err != nil {
			return fmt.Errorf("alerts snapshot: segment %s: %w", name, err)
		}
		if p.Part != k {
			return fmt.Errorf("alerts snapshot: segment %s holds partition %d", name, p.Part)
		}
		if err := n.restorePart(k, p.Incidents, p.Triggered, p.Alerts); err != nil {
			return err
		}
	}
	if missing := slices.Index(got[:], false); missing >= 0 {
		return fmt.Errorf("alerts snapshot: no segment %s", projections.PartName(partSegment, missing))
	}
	n.pos = pos
	m.replace(n, true)
	return nil
}

// restoreSeen restores the deduplication ids into the new model n.
func (n *Model) restoreSeen(order []string, next int) error {
	if next < 0 || (len(order) > 0 && next >= len(order)) || len(order) > maxSeen {
		return errors.New("alerts snapshot: bad header")
	}
	n.seenOrder, n.seenNext = order, next
	for _, id := range order {
		n.seen[id] = true
	}
	return nil
}

// restorePart restores incidents, alerts due and alerts into the new
// model n, all of partition k (any, for -1).
func (n *Model) restorePart(k int, incidents map[string]incident, triggered map[string][][]byte, alerts [][]byte) error {
	ofPart := func(key string) error {
		if k >= 0 && projections.PartOf(key) != k {
			return fmt.Errorf("alerts snapshot: %q is not of partition %d", key, k)
		}
		return nil
	}
	for rider, inc := range incidents {
		if err := ofPart(rider); err != nil {
			return err
		}
		n.incidents.Set(rider, inc)
	}
	for ev, list := range triggered {
		if err := ofPart(ev); err != nil {
			return err
		}
		var due []*safetyv1.AlertRaisedV2
		for _, b := range list {
			a := &safetyv1.AlertRaisedV2{}
			if err := proto.Unmarshal(b, a); err != nil {
				return fmt.Errorf("alerts snapshot: %w", err)
			}
			due = append(due, a)
			n.trigger[a.AlertId] = ev
		}
		n.triggered.Set(ev, due)
	}
	for _, b := range alerts {
		a := &safetyv1.Alert{}
		if err := proto.Unmarshal(b, a); err != nil {
			return fmt.Errorf("alerts snapshot: %w", err)
		}
		if a.RaisedV2 == nil || a.RaisedV2.AlertId == "" {
			return errors.New("alerts snapshot: alert without id")
		}
		if err := ofPart(a.RaisedV2.AlertId); err != nil {
			return err
		}
		if _, dup := n.alerts.Get(a.RaisedV2.AlertId); dup {
			return fmt.Errorf("alerts snapshot: alert %s repeated", a.RaisedV2.AlertId)
		}
		n.alerts.Set(a.RaisedV2.AlertId, a)
		n.listed.add(a)
	}
	return nil
}

// replace makes m's state n's; segmented says n was restored from
// segments, which are then stored. Nothing of n is frozen: no Encode
// reads it.
func (m *Model) replace(n *Model, segmented bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.parts = projections.Parts{}
	m.incidents = n.incidents.Moved(&m.parts)
	m.triggered = n.triggered.Moved(&m.parts)
	m.alerts = n.alerts.Moved(&m.parts)
	m.seen, m.seenOrder, m.seenNext, m.trigger, m.pos = n.seen, n.seenOrder, n.seenNext, n.trigger, n.pos
	m.listed = n.listed
	if segmented {
		m.parts.Restored()
	}
}

// answer is a copy of a for a query, with Alert.raised filled in for the
// API's clients of before raised_v2 (raised_v2 without its rule): the
// model keeps only raised_v2.
func answer(a *safetyv1.Alert) *safetyv1.Alert {
	c := proto.CloneOf(a)
	r := c.RaisedV2
	c.Raised = &safetyv1.AlertRaised{AlertId: r.AlertId, RiderId: r.RiderId, Reason: r.Reason,
		EventIds: r.EventIds, Severity: r.Severity, RaisedAt: r.RaisedAt}
	return c
}

func timestampOf(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
