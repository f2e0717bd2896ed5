package steps

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/tideline/tideline/projections"
)

// MaxDeltas bounds the delta segments that follow a date's leaderboard
// segment; the next change then writes the leaderboard again.
const MaxDeltas = 64

// Segment names.
const (
	windowSegment    = "window"
	summariesSegment = "summaries-" // + YYYY-MM
	dateSegment      = "date-"      // + YYYY-MM-DD, then +N for a delta
)

// Capture returns the model's position and segments (see the package
// doc). It costs O(D + c) for D dates and c counts changed since the
// previous capture, plus the summaries of a month that changed; a
// leaderboard segment's Encode walks a copy-on-write view of the board,
// and a delta's the counts Capture copied.
func (m *Model) Capture(full bool) (uint64, []projections.Segment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// The previous capture's Encodes are done: the ids they read may go.
	m.free, m.freed = append(m.free, m.freed...), m.freed[:0]
	m.encoding = new(atomic.Int32)

	segs := make([]projections.Segment, 0, 2+2*len(m.dates))
	seg := projections.Segment{Name: windowSegment}
	if full || !m.configured {
		seg.Encode = encoded(m.appendConfig(nil))
	}
	segs = append(segs, seg)
	m.configured = true
	for i := 0; i < len(m.summed); {
		month := m.summed[i][:7]
		j := i + 1
		for j < len(m.summed) && m.summed[j][:7] == month {
			j++
		}
		seg := projections.Segment{Name: summariesSegment + month}
		if full || m.changedMonths[month] {
			seg.Encode = encoded(m.appendSummaries(nil, m.summed[i:j]))
		}
		segs = append(segs, seg)
		i = j
	}
	clear(m.changedMonths)
	for _, date := range m.dates {
		segs = m.captureBoard(segs, date, full)
	}
	return m.pos, segs
}

// captureBoard appends date's segments: its leaderboard and deltas, a new
// delta of the counts changed since the previous capture, or, for a
// board never issued, changed in more than half its counts since, or
// past MaxDeltas, a new leaderboard alone.
func (m *Model) captureBoard(segs []projections.Segment, date string, full bool) []projections.Segment {
	b := m.days[date]
	name := dateSegment + date
	if full || !b.based || b.changed > 0 && (b.deltas == MaxDeltas || 2*(b.deltaCounts+b.changed) > int(b.total())) {
		view, ns, encoding := b.share(), m.names, m.encoding
		b.forgetChanged()
		b.based, b.deltas, b.deltaCounts = true, 0, 0
		encoding.Add(1)
		return append(segs, projections.Segment{Name: name, Encode: func() ([]byte, error) {
			defer encoding.Add(-1)
			ranked := view.ranked(ns)
			return appendBoard(make([]byte, 0, 16*len(ranked)), date, ns, int32(len(ranked)), func(visit func(uid, steps int32) bool) {
				for _, c := range ranked {
					visit(c.uid, c.steps)
				}
			}), nil
		}})
	}
	segs = append(segs, projections.Segment{Name: name})
	for k := range b.deltas {
		segs = append(segs, projections.Segment{Name: name + "+" + strconv.Itoa(k+1)})
	}
	if b.changed == 0 {
		return segs
	}
	counts := b.takeChanged()
	b.deltas++
	b.deltaCounts += len(counts)
	ns, encoding := m.names, m.encoding
	encoding.Add(1)
	return append(segs, projections.Segment{Name: name + "+" + strconv.Itoa(b.deltas), Encode: func() ([]byte, error) {
		defer encoding.Add(-1)
		return appendDelta(ns, counts), nil
	}})
}

// appendDelta encodes counts: a uvarint count, then each user's id and
// steps (a zigzag varint), by user id.
func appendDelta(ns names, counts []count) []byte {
	slices.SortFunc(counts, func(a, b count) int { return ns.compare(a.uid, b.uid) })
	buf := binary.AppendUvarint(make([]byte, 0, 16*len(counts)), uint64(len(counts)))
	for _, c := range counts {
		buf = binary.AppendVarint(appendString(buf, ns.of(c.uid)), int64(c.steps))
	}
	return buf
}

func encoded(data []byte) func() ([]byte, error) {
	return func() ([]byte, error) { return data, nil }
}

// RestoreSegments replaces the model with the segments a Capture at pos
// named, read in order with read. For segments that are missing, out of
// order, malformed, or of another window, it returns an error and leaves
// the model unchanged.
func (m *Model) RestoreSegments(pos uint64, names []string, read func(name string) ([]byte, error)) error {
	n := m.blank()
	for _, name := range names {
		data, err := read(name)
		if err == nil {
			err = n.decodeSegment(name, data)
		}
		if err != nil {
			return fmt.Errorf("restore %s segment %s: %w", Name, name, err)
		}
	}
	if !n.configured {
		return fmt.Errorf("restore %s segments: no %s segment", Name, windowSegment)
	}
	if err := n.settle(); err != nil {
		return fmt.Errorf("restore %s segments: %w", Name, err)
	}
	n.pos = pos
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = n.state
	return nil
}

// decodeSegment adds a segment to the blank model m being restored.
func (m *Model) decodeSegment(name string, data []byte) error {
	r := reader{data: data}
	switch rest, isDate := strings.CutPrefix(name, dateSegment); {
	case name == windowSegment && !m.configured:
		m.decodeConfig(&r)
		m.configured = true
	case !m.configured:
		return fmt.Errorf("before the %s segment", windowSegment)
	case strings.HasPrefix(name, summariesSegment) && len(name) == len(summariesSegment)+len("YYYY-MM"):
		m.decodeSummaries(&r, name[len(summariesSegment):])
	case isDate:
		date, k, isDelta := strings.Cut(rest, "+")
		if !isDelta {
			if b := m.decodeBoard(&r); b != nil {
				b.based = true
				if got := m.dates[len(m.dates)-1]; got != date {
					r.fail("holds date %s", got)
				}
			}
			break
		}
		b := m.days[date]
		if b == nil || m.dates[len(m.dates)-1] != date || k != strconv.Itoa(b.deltas+1) {
			return fmt.Errorf("does not follow date %s's segment and deltas", date)
		}
		m.decodeDelta(&r, b)
	default:
		return fmt.Errorf("unknown segment")
	}
	if r.err == nil && len(r.data) > 0 {
		r.fail("%d trailing bytes", len(r.data))
	}
	return r.err
}

// decodeDelta raises b's counts to a delta's.
func (m *Model) decodeDelta(r *reader, b *board) {
	n := r.count(2)
	if n == 0 && r.err == nil {
		r.fail("empty delta")
	}
	prev := ""
	for i := range n {
		user := string(r.bytes())
		v := r.varint()
		if r.err != nil {
			return
		}
		if i > 0 && user <= prev || int64(int32(v)) != v {
			r.fail("user %q out of order, or steps %d out of range", user, v)
			return
		}
		prev = user
		if len(user) > MaxUserID {
			r.fail("user id of %d bytes", len(user))
			return
		}
		uid, ok := m.index.lookup(m.names, user)
		if !ok {
			uid = m.newUser(user)
		}
		m.raise(b, uid, int32(v))
	}
	b.deltas++
	b.deltaCounts += n
}
