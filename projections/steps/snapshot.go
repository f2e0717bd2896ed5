package steps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// magic opens every snapshot; its last byte is the format version.
const magic = "tlsteps\x01"

// Snapshot encodes the model canonically: equal models give equal bytes.
//
// The layout is magic, uvarint position, uvarint date count, then per date
// in ascending order: the date, a uvarint user count, and the users in rank
// order, each as its id and its steps (a zigzag varint for the first, then
// the uvarint drop from the previous user's). Strings are a uvarint length
// and bytes.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	buf := make([]byte, 0, m.snapshotSizeHint())
	buf = binary.AppendUvarint(append(buf, magic...), m.pos)
	buf = binary.AppendUvarint(buf, uint64(len(m.dates)))
	for _, date := range m.dates {
		b := m.days[date]
		buf = appendString(buf, date)
		buf = binary.AppendUvarint(buf, uint64(b.total()))
		first, prev := true, int32(0)
		b.walk(func(t *node) bool {
			buf = appendString(buf, m.ids[t.uid])
			if first {
				buf = binary.AppendVarint(buf, int64(t.steps))
			} else {
				buf = binary.AppendUvarint(buf, uint64(int64(prev)-int64(t.steps)))
			}
			first, prev = false, t.steps
			return true
		})
	}
	return buf, nil
}

// snapshotSizeHint estimates Snapshot's length, to allocate once.
func (m *Model) snapshotSizeHint() int {
	idBytes, entries := 0, 0
	for _, id := range m.ids {
		idBytes += len(id)
	}
	for _, b := range m.days {
		entries += int(b.total())
	}
	perEntry := 4
	if len(m.ids) > 0 {
		perEntry += idBytes / len(m.ids)
	}
	return len(magic) + 20 + 16*len(m.dates) + entries*perEntry
}

// Restore replaces the model with a Snapshot's. For data that is not a
// well-formed snapshot of this version (truncated, trailing bytes, dates or
// users out of order, a user twice on a date) it returns an error and
// leaves the model unchanged.
func (m *Model) Restore(data []byte) error {
	next := New()
	if err := next.decode(data); err != nil {
		return fmt.Errorf("restore %s snapshot: %w", Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids, m.uids, m.days, m.dates, m.pos = next.ids, next.uids, next.days, next.dates, next.pos
	return nil
}

// decode fills the empty, unshared model m from data.
func (m *Model) decode(data []byte) error {
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		return errors.New("not a steps snapshot of this version")
	}
	r := reader{data: data[len(magic):]}
	m.pos = r.uvarint()
	for range r.count(4) {
		date := string(r.bytes())
		if len(m.dates) > 0 && date <= m.dates[len(m.dates)-1] {
			r.fail("date %q out of order", date)
		}
		nusers := r.count(2)
		if nusers == 0 {
			r.fail("date %q has no users", date)
		}
		if r.err != nil {
			return r.err
		}
		b := newBoard(nusers)
		for i := range nusers {
			raw := r.bytes()
			uid, ok := m.uids[string(raw)]
			if !ok {
				uid = int32(len(m.ids))
				m.ids = append(m.ids, string(raw))
				m.uids[m.ids[uid]] = uid
			}
			n := node{uid: uid, size: 1, prio: priority(m.ids[uid])}
			if i == 0 {
				v := r.varint()
				if v < math.MinInt32 || v > math.MaxInt32 {
					r.fail("date %q: steps %d out of range", date, v)
				}
				n.steps = int32(v)
			} else {
				prev := &b.nodes[len(b.nodes)-1]
				v := int64(prev.steps) - int64(min(r.uvarint(), math.MaxUint32))
				if v < math.MinInt32 {
					r.fail("date %q: steps %d out of range", date, v)
				}
				n.steps = int32(v)
				if !before(m.ids, prev, &n) {
					r.fail("date %q: user %q out of order", date, raw)
				}
			}
			if b.at[uid] != 0 {
				r.fail("date %q: user %q twice", date, raw)
			}
			if r.err != nil {
				return r.err
			}
			b.at[uid] = int32(len(b.nodes))
			b.nodes = append(b.nodes, n)
		}
		b.build()
		m.days[date] = b
		m.dates = append(m.dates, date)
	}
	if r.err == nil && len(r.data) > 0 {
		r.fail("%d trailing bytes", len(r.data))
	}
	return r.err
}

func appendString(buf []byte, s string) []byte {
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
