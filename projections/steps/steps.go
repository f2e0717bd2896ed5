// Package steps holds the pedometer read models: each user's count per
// date and each date's leaderboard, folded from steps.v1.StepsRecorded.
package steps

import (
	"slices"
	"sync"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// Name is the projection's stable name; renaming it is a migration.
const Name = "steps"

// version changes when Apply's meaning or the snapshot format changes.
const version = 1

// Daily is a user's count for one date.
type Daily struct {
	UserID string
	Date   string
	Steps  int32
}

// Entry is a user's place on a date's leaderboard.
type Entry struct {
	Rank   int64 // 1-based
	UserID string
	Steps  int32
}

// Model is the steps read model, a projections.Projection. A date's value for a user is the highest
// count recorded, so resent and out-of-order records change nothing and any
// order of the same records gives the same answers.
//
// A date's leaderboard orders users by steps descending, then user id
// ascending; a user who recorded 0 steps is ranked. It is an order-statistic
// treap, so updates and Rank take O(log N) and Top(n) O(log N + n).
//
// Model is safe for queries concurrent with Apply.
var _ projections.Projection = (*Model)(nil)
var _ projections.Scoped = (*Model)(nil)

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.steps.>"} }

var _ projections.Selective = (*Model)(nil)

// EventTypes lists the events the model reads.
func (m *Model) EventTypes() []string {
	return []string{string((*stepsv1.StepsRecorded)(nil).ProtoReflect().Descriptor().FullName())}
}

type Model struct {
	mu    sync.RWMutex
	ids   []string         // user ids by uid, in order of first record
	uids  map[string]int32 // user id → uid
	days  map[string]*board
	dates []string // keys of days, ascending
	pos   uint64
}

// New returns an empty model.
func New() *Model {
	return &Model{uids: map[string]int32{}, days: map[string]*board{}}
}

// Name returns Name.
func (m *Model) Name() string { return Name }

// Version returns the model's version.
func (m *Model) Version() int { return version }

// Apply folds e into the model. Events other than StepsRecorded only
// advance Position.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	rec, ok := e.Data.(*stepsv1.StepsRecorded)
	if !ok {
		return
	}
	m.record(rec.GetUserId(), rec.GetDate(), rec.GetSteps())
}

func (m *Model) record(user, date string, steps int32) {
	uid, ok := m.uids[user]
	if !ok {
		uid = int32(len(m.ids))
		m.ids = append(m.ids, user)
		m.uids[user] = uid
	}
	b := m.days[date]
	if b == nil {
		b = newBoard(0)
		m.days[date] = b
		i, _ := slices.BinarySearch(m.dates, date)
		m.dates = slices.Insert(m.dates, i, date)
	}
	n := b.at[uid]
	switch {
	case n == 0:
		n = int32(len(b.nodes))
		b.nodes = append(b.nodes, node{uid: uid, steps: steps, size: 1, prio: priority(user)})
		b.at[uid] = n
	case steps <= b.nodes[n].steps:
		return
	default:
		b.root = b.remove(m.ids, b.root, n)
		b.nodes[n] = node{uid: uid, steps: steps, size: 1, prio: b.nodes[n].prio}
	}
	b.root = b.insert(m.ids, b.root, n)
}

// lookup returns date's board and userID's node on it, 0 if none.
func (m *Model) lookup(date, userID string) (*board, int32) {
	b := m.days[date]
	if b == nil {
		return nil, 0
	}
	uid, ok := m.uids[userID]
	if !ok {
		return b, 0
	}
	return b, b.at[uid]
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids, m.uids, m.days, m.dates, m.pos = nil, map[string]int32{}, map[string]*board{}, nil, 0
}

// Position returns the Seq of the last applied event, 0 if none.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

// Steps returns userID's count for date, and false if they have none.
func (m *Model) Steps(userID, date string) (int32, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, n := m.lookup(date, userID)
	if n == 0 {
		return 0, false
	}
	return b.nodes[n].steps, true
}

// Range returns userID's counts for the dates from..to inclusive
// (YYYY-MM-DD, compared as strings) that have a record, in date order.
// It costs O(log D + d) for d dates with records in the range.
func (m *Model) Range(userID, from, to string) []Daily {
	m.mu.RLock()
	defer m.mu.RUnlock()
	uid, ok := m.uids[userID]
	if !ok {
		return nil
	}
	var out []Daily
	i, _ := slices.BinarySearch(m.dates, from)
	for ; i < len(m.dates) && m.dates[i] <= to; i++ {
		b := m.days[m.dates[i]]
		if n := b.at[uid]; n != 0 {
			out = append(out, Daily{UserID: userID, Date: m.dates[i], Steps: b.nodes[n].steps})
		}
	}
	return out
}

// Top returns the first n entries of date's leaderboard, rank 1 first;
// fewer when fewer users are ranked, nil when none or n <= 0.
func (m *Model) Top(date string, n int) []Entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b := m.days[date]
	if b == nil || n <= 0 {
		return nil
	}
	out := make([]Entry, 0, min(n, int(b.total())))
	b.walk(func(t *node) bool {
		out = append(out, Entry{Rank: int64(len(out) + 1), UserID: m.ids[t.uid], Steps: t.steps})
		return len(out) < n
	})
	return out
}

// Rank returns userID's entry on date's leaderboard, and false if they
// have none.
func (m *Model) Rank(date, userID string) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, n := m.lookup(date, userID)
	if n == 0 {
		return Entry{}, false
	}
	return Entry{Rank: b.rank(m.ids, n), UserID: userID, Steps: b.nodes[n].steps}, true
}

// Total returns the number of users ranked on date.
func (m *Model) Total(date string) int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if b := m.days[date]; b != nil {
		return int64(b.total())
	}
	return 0
}
