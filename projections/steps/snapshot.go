package steps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// magic opens every whole snapshot; its last byte is the format version.
const magic = "tlsteps\x02"

// Snapshot encodes the whole model canonically: equal models give equal
// bytes. It holds the read lock while it encodes; a runner uses Capture.
//
// The layout is magic, uvarint position, the window (uvarint window and
// SummaryTop), a uvarint count of summaries, each its date, a uvarint
// total and its entries, then a uvarint count of dates in the window,
// each its date and its entries. Entries are a uvarint count and the
// users in rank order, each as its id and its steps (a zigzag varint for
// the first, then the uvarint drop from the previous user's). Strings are
// a uvarint length and bytes.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	buf := binary.AppendUvarint([]byte(magic), m.pos)
	buf = m.appendConfig(buf)
	buf = m.appendSummaries(buf, m.summed)
	buf = binary.AppendUvarint(buf, uint64(len(m.dates)))
	for _, date := range m.dates {
		b := m.days[date]
		buf = appendBoard(buf, date, m.names, b.total(), b.walk)
	}
	return buf, nil
}

func (m *Model) appendConfig(buf []byte) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(buf, uint64(m.window)), SummaryTop)
}

// appendSummaries appends a count and the summaries of dates.
func (m *Model) appendSummaries(buf []byte, dates []string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(dates)))
	for _, date := range dates {
		s := m.summaries[date]
		buf = binary.AppendUvarint(appendString(buf, date), uint64(s.total))
		buf = binary.AppendUvarint(buf, uint64(len(s.top)))
		for i, e := range s.top {
			buf = appendRanked(buf, i == 0, e.UserID, e.Steps, s.top[max(i-1, 0)].Steps)
		}
	}
	return buf
}

// appendBoard appends date and its total users, which walk visits in
// rank order; ns names their uids.
func appendBoard(buf []byte, date string, ns names, total int32, walk func(visit func(uid, steps int32) bool)) []byte {
	buf = binary.AppendUvarint(appendString(buf, date), uint64(total))
	first, prev := true, int32(0)
	walk(func(uid, steps int32) bool {
		buf = appendRanked(buf, first, ns.of(uid), steps, prev)
		first, prev = false, steps
		return true
	})
	return buf
}

// appendRanked appends an entry of a ranking: its id, then its steps, or
// for all but the first entry their drop from prev.
func appendRanked[S string | []byte](buf []byte, first bool, id S, steps, prev int32) []byte {
	buf = appendString(buf, id)
	if first {
		return binary.AppendVarint(buf, int64(steps))
	}
	return binary.AppendUvarint(buf, uint64(int64(prev)-int64(steps)))
}

// Restore replaces the model with a Snapshot's. For data that is not a
// well-formed snapshot of this version and window (truncated, trailing
// bytes, dates or users out of order, a user twice on a date, a date
// outside the window it claims) it returns an error and leaves the model
// unchanged.
func (m *Model) Restore(data []byte) error {
	n := m.blank()
	if err := n.decode(data); err != nil {
		return fmt.Errorf("restore %s snapshot: %w", Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state = n.state
	return nil
}

// decode fills the blank model m from a whole snapshot.
func (m *Model) decode(data []byte) error {
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		return errors.New("not a steps snapshot of this version")
	}
	r := reader{data: data[len(magic):]}
	m.pos = r.uvarint()
	m.decodeConfig(&r)
	m.decodeSummaries(&r, "")
	for range r.count(4) {
		m.decodeBoard(&r)
	}
	if r.err == nil && len(r.data) > 0 {
		r.fail("%d trailing bytes", len(r.data))
	}
	if r.err != nil {
		return r.err
	}
	return m.settle()
}

func (m *Model) decodeConfig(r *reader) {
	if w, top := r.uvarint(), r.uvarint(); r.err == nil && (w != uint64(m.window) || top != SummaryTop) {
		r.fail("snapshot of a %d-day window keeping %d entries, the model has %d days and %d", w, top, m.window, SummaryTop)
	}
}

// decodeSummaries reads a count and as many summaries, of dates after
// those decoded before and, unless month is "", in month (YYYY-MM).
func (m *Model) decodeSummaries(r *reader, month string) {
	for range r.count(3) {
		date := string(r.bytes())
		total := r.uvarint()
		n := r.count(2)
		switch {
		case r.err != nil:
			return
		case !validDate(date) || month != "" && date[:7] != month:
			r.fail("summary of %q out of place", date)
		case len(m.summed) > 0 && date <= m.summed[len(m.summed)-1] || len(m.dates) > 0:
			r.fail("summary of %q out of order", date)
		case uint64(n) != min(total, SummaryTop):
			r.fail("summary of %q has %d entries of %d", date, n, total)
		}
		s := &summary{total: int64(total), top: make([]Entry, 0, n)}
		seen := make(map[string]bool, n)
		for i := range n {
			var prev Entry
			if i > 0 {
				prev = s.top[i-1]
			}
			user, steps := r.ranked(i == 0, prev.Steps)
			if r.err != nil {
				return
			}
			if i > 0 && !(prev.Steps > steps || prev.Steps == steps && prev.UserID < user) || seen[user] {
				r.fail("summary of %q: user %q out of order or twice", date, user)
				return
			}
			seen[user] = true
			s.top = append(s.top, Entry{Rank: int64(i + 1), UserID: user, Steps: steps})
		}
		m.summaries[date] = s
		m.summed = append(m.summed, date)
	}
}

// decodeBoard reads a date after those decoded before and its
// leaderboard, and returns the board.
func (m *Model) decodeBoard(r *reader) *board {
	date := string(r.bytes())
	n := r.count(2)
	switch {
	case r.err != nil:
		return nil
	case !validDate(date) || len(m.dates) > 0 && date <= m.dates[len(m.dates)-1]:
		r.fail("date %q out of order", date)
		return nil
	case n == 0:
		r.fail("date %q has no users", date)
		return nil
	}
	b := newBoard()
	var prevUser string
	var prevSteps int32
	for i := range n {
		user, steps := r.ranked(i == 0, prevSteps)
		if r.err != nil {
			return nil
		}
		if i > 0 && !(prevSteps > steps || prevSteps == steps && prevUser < user) {
			r.fail("date %q: user %q out of order or twice", date, user)
			return nil
		}
		prevUser, prevSteps = user, steps
		if len(user) > MaxUserID {
			r.fail("date %q: user id of %d bytes", date, len(user))
			return nil
		}
		uid, ok := m.index.lookup(m.names, user)
		if !ok {
			uid = m.newUser(user)
		}
		if _, twice := b.get(uid); twice {
			r.fail("date %q: user %q twice", date, user)
			return nil
		}
		b.append(uid, steps)
		*m.held.at(uid)++
	}
	m.days[date] = b
	m.dates = append(m.dates, date)
	return b
}

// settle derives the window from the newest date decoded and checks that
// every date is where the window puts it.
func (m *Model) settle() error {
	if len(m.dates) == 0 {
		if len(m.summed) > 0 {
			return errors.New("summaries without a window")
		}
		return nil
	}
	newest, _ := time.Parse(dateLayout, m.dates[len(m.dates)-1])
	m.cutoff = newest.AddDate(0, 0, 1-m.window).Format(dateLayout)
	if m.dates[0] < m.cutoff {
		return fmt.Errorf("date %s is before the window, which starts %s", m.dates[0], m.cutoff)
	}
	if n := len(m.summed); n > 0 && m.summed[n-1] >= m.cutoff {
		return fmt.Errorf("summary of %s is within the window, which starts %s", m.summed[n-1], m.cutoff)
	}
	return nil
}

func validDate(s string) bool {
	d, err := time.Parse(dateLayout, s)
	return err == nil && d.Format(dateLayout) == s
}

func appendString[S string | []byte](buf []byte, s S) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(s))), s...)
}

// reader decodes a snapshot, keeping the first error; after one it returns
// zero values.
type reader struct {
	data []byte
	err  error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.data)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.data = r.data[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.data)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.data = r.data[n:]
	return v
}

// count reads a length of items at least minSize bytes each, refusing one
// the remaining data cannot hold so garbage cannot force a huge allocation.
func (r *reader) count(minSize int) int {
	v := r.uvarint()
	if v > uint64(len(r.data)/minSize) {
		r.fail("count %d exceeds the data", v)
		return 0
	}
	return int(v)
}

// bytes reads a string, aliasing data.
func (r *reader) bytes() []byte {
	n := r.count(1)
	s := r.data[:n]
	r.data = r.data[n:]
	return s
}

// ranked reads an entry appendRanked wrote after an entry of prev steps.
func (r *reader) ranked(first bool, prev int32) (string, int32) {
	user := string(r.bytes())
	var v int64
	if first {
		v = r.varint()
	} else {
		v = int64(prev) - int64(min(r.uvarint(), math.MaxUint32))
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail("user %q: steps %d out of range", user, v)
	}
	return user, int32(v)
}
