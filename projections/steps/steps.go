// Package steps holds the pedometer read model: each user's count per
// date and each date's leaderboard, folded from steps.v1.StepsRecorded.
//
// # Retention
//
// The model holds a window of the most recent dates (Window, default
// DefaultWindow = 35), counted back from the newest date any record
// carries, never from the clock: a model built live equals one rebuilt
// from the events. For each date in the window it keeps every user's count
// and the full leaderboard. When a date leaves the window it keeps only a
// summary, the date's first SummaryTop (100) entries and how many users
// were ranked, for as long as the model lives (about 5 KB a date); every
// other count of that date is forgotten, and so is a user once no date in
// the window holds them. A record for a date that has already left the
// window changes nothing here: it stays in the event store, where older
// counts are read on demand (domain/steps Service.History), and a date's
// summary keeps the entries as they were when it left. A record whose
// date is not a YYYY-MM-DD date, or whose user id is longer than
// MaxUserID, is ignored (the API stores neither).
//
// Memory is therefore bounded by the users active in the window, not by
// history. A user-day costs about 9 bytes (4 in its date's column of
// counts, 4 and some slack among the users at its count), a user about
// 50 beyond its id's bytes (users.go), and a date in the window about
// 1 MB for its tree and its slots of counts. Measured: 11.2 bytes per
// user-day in all at 10M users × 30 dates (BenchmarkFootprintAtScale,
// 3.1 GiB), 27 at 100k users × 35 dates, where a date's own megabyte
// weighs more (BenchmarkFootprint). A snapshot takes about 14 bytes per
// user-day and 1.4 KB per summarised date. README has the figures.
//
// # Snapshots
//
// The model is projections.Segmented: a snapshot is a "window" segment,
// one "summaries-YYYY-MM" segment per month of summarised dates and, per
// date in the window, a "date-YYYY-MM-DD" segment with its leaderboard
// followed by up to MaxDeltas "date-YYYY-MM-DD+N" segments holding the
// counts that changed since. A capture writes a date's segment again only
// once its changes reach half of its users (or MaxDeltas deltas); until
// then it adds the changed counts as one more delta. Capture copies
// nothing but changed counts: a date's column of counts it hands to
// Encode is shared, and an Apply copies the chunk of 1024 users it writes
// to (copy on write); the Encode puts the counts in rank order itself. A
// user's slot is reused only once no Encode can read its id.
package steps

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/steps"
	"github.com/tideline/tideline/projections"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// Name is the projection's stable name; renaming it is a migration.
const Name = "steps"

// version changes when Apply's meaning or the snapshot format changes.
// 2: dates leave the window; segmented snapshots.
const version = 2

// Retention defaults and bounds.
const (
	DefaultWindow = 35   // dates held in full
	MaxWindow     = 3660 // ten years
	SummaryTop    = 100  // entries kept of a date that left the window
	dateLayout    = "2006-01-02"
)

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

// Option configures a Model.
type Option func(*Model)

// Window sets how many dates the model holds in full: the newest date
// recorded and the days-1 before it. New panics unless 1 <= days <=
// MaxWindow.
func Window(days int) Option {
	return func(m *Model) {
		if days < 1 || days > MaxWindow {
			panic(fmt.Sprintf("steps: window of %d days, want 1 to %d", days, MaxWindow))
		}
		m.window = days
	}
}

// Model is the steps read model, a projections.Projection. A date's value
// for a user is the highest count recorded, so resent and out-of-order
// records within the window change nothing and any order of the same
// records gives the same answers.
//
// A date's leaderboard orders users by steps descending, then user id
// ascending; a user who recorded 0 steps is ranked. It counts the users
// at each count in a Fenwick tree and keeps each count's users ordered by
// id, so that for V distinct counts updates and Rank take O(log V) and a
// binary search among the users at the same count, and Top(n) O(log V)
// per count it reaches plus n (see board).
//
// Model is safe for queries concurrent with Apply.
type Model struct {
	window int
	mu     sync.RWMutex
	state
}

// state is everything Reset and Restore replace.
type state struct {
	names   names               // user ids by uid
	index   userIndex           // user id → uid, for every user on a board
	idBytes int                 // the bytes of the ids index holds; names.size beyond them is garbage
	held    stableArray[uint16] // uid → boards holding it
	free    []int32             // uids no board holds, to reuse
	freed   []int32             // uids released while an Encode may still read their ids
	// leaving are uids whose last board left the window, forgotten a
	// few per Apply so that a day many users leave costs no long Apply.
	leaving []int32
	// encoding counts the Encodes of the last capture that read ids and
	// have not run; nil before any capture.
	encoding *atomic.Int32
	days     map[string]*board
	dates    []string // keys of days, ascending; the last is the newest date recorded
	cutoff   string   // the oldest date of the window; "" before any record
	pos      uint64

	summaries map[string]*summary
	summed    []string // keys of summaries, ascending

	// What the previous Capture issued: configured is false until it
	// issued the window segment; changedMonths are months of summaries
	// made since.
	configured    bool
	changedMonths map[string]bool
}

// summary is what remains of a date that left the window.
type summary struct {
	total int64
	top   []Entry
}

var (
	_ projections.Projection = (*Model)(nil)
	_ projections.Scoped     = (*Model)(nil)
	_ projections.Selective  = (*Model)(nil)
	_ projections.Segmented  = (*Model)(nil)
)

// New returns an empty model holding DefaultWindow dates, or as opts say.
func New(opts ...Option) *Model {
	m := &Model{window: DefaultWindow}
	for _, o := range opts {
		o(m)
	}
	m.reset()
	return m
}

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.steps.>"} }

// EventTypes lists the events the model reads.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*stepsv1.StepsRecorded)(nil), (*stepsv1.StepsBatchRecorded)(nil))
}

// Name returns Name.
func (m *Model) Name() string { return Name }

// Version returns the model's version.
func (m *Model) Version() int { return version }

// Apply folds e into the model: each date's highest count of a
// StepsRecorded or StepsBatchRecorded (steps.Highest). Other events only
// advance Position.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	steps.Highest(e.Data, m.record)
	m.forget(forgetPerApply)
}

// forgetPerApply is how many leaving users an Apply forgets at most.
const forgetPerApply = 8

// forget forgets up to n leaving users no board holds (again), and
// releases their uids.
func (m *Model) forget(n int) {
	for ; n > 0 && len(m.leaving) > 0; n-- {
		uid := m.leaving[len(m.leaving)-1]
		m.leaving = m.leaving[:len(m.leaving)-1]
		if *m.held.at(uid) == 0 {
			m.idBytes -= len(m.names.of(uid))
			m.index.remove(m.names, uid)
			m.freed = append(m.freed, uid)
		}
	}
}

func (m *Model) record(user, date string, steps int32) {
	if len(user) > MaxUserID {
		return
	}
	b := m.days[date]
	if b == nil {
		if b = m.open(date); b == nil {
			return
		}
	}
	uid, known := m.index.lookup(m.names, user)
	if !known {
		uid = m.newUser(user)
	}
	m.raise(b, uid, steps)
}

// raise sets uid's count on b to steps unless it is already at least
// that, and marks it changed if it did.
func (m *Model) raise(b *board, uid, steps int32) {
	old, ok := b.get(uid)
	if ok && steps <= old {
		return
	}
	if !ok {
		*m.held.at(uid)++
	}
	b.set(m.names, uid, steps)
	b.mark(uid)
}

// open adds date's board, moving the window when date is the newest
// date yet. It returns nil, changing nothing, for a date before the
// window or one that is not a YYYY-MM-DD date.
func (m *Model) open(date string) *board {
	if date < m.cutoff {
		return nil
	}
	day, err := time.Parse(dateLayout, date)
	if err != nil || day.Format(dateLayout) != date {
		return nil
	}
	if len(m.dates) == 0 || date > m.dates[len(m.dates)-1] {
		m.cutoff = day.AddDate(0, 0, 1-m.window).Format(dateLayout)
		m.summarizeBefore(m.cutoff)
	}
	b := newBoard()
	m.days[date] = b
	i, _ := slices.BinarySearch(m.dates, date)
	m.dates = slices.Insert(m.dates, i, date)
	return b
}

// summarizeBefore replaces the boards of dates before cutoff with their
// summaries; the users no board holds any more are leaving.
func (m *Model) summarizeBefore(cutoff string) {
	for len(m.dates) > 0 && m.dates[0] < cutoff {
		date := m.dates[0]
		b := m.days[date]
		s := &summary{total: int64(b.total()), top: make([]Entry, 0, min(int(b.total()), SummaryTop))}
		b.walk(func(uid, steps int32) bool {
			s.top = append(s.top, Entry{Rank: int64(len(s.top) + 1), UserID: m.names.str(uid), Steps: steps})
			return len(s.top) < SummaryTop
		})
		m.summaries[date] = s
		m.summed = append(m.summed, date) // dates leave in ascending order
		m.changedMonths[date[:7]] = true
		b.each(func(uid, _ int32) {
			h := m.held.at(uid)
			if *h--; *h == 0 {
				m.leaving = append(m.leaving, uid)
			}
		})
		delete(m.days, date)
		m.dates = slices.Delete(m.dates, 0, 1)
	}
}

// newUser gives user a uid, reusing a released one. Once most of the
// ids' bytes are garbage, it copies the others to new arrays.
func (m *Model) newUser(user string) int32 {
	if len(m.free) == 0 && len(m.freed) > 0 && (m.encoding == nil || m.encoding.Load() <= 0) {
		m.free, m.freed = append(m.free, m.freed...), m.freed[:0]
	}
	if m.names.size > 2*m.idBytes+compactAfter {
		m.names = m.names.compact(m.index.each)
	}
	var uid int32
	if n := len(m.free); n > 0 {
		uid = m.free[n-1]
		m.free = m.free[:n-1]
	} else {
		uid = m.names.at.len()
		m.held.push(0)
	}
	m.names.set(uid, user)
	m.index.add(m.names, uid)
	m.idBytes += len(user)
	return uid
}

// compactAfter is the garbage, in bytes of ids, that newUser leaves
// before it compacts the ids, beyond as many bytes as the live ones.
const compactAfter = 64 << 10

// lookup returns userID's count for date, and false if it has none.
func (m *Model) lookup(date, userID string) (b *board, uid, steps int32, ok bool) {
	if b = m.days[date]; b == nil {
		return nil, 0, 0, false
	}
	if uid, ok = m.index.lookup(m.names, userID); !ok {
		return b, 0, 0, false
	}
	steps, ok = b.get(uid)
	return b, uid, steps, ok
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reset()
}

func (m *Model) reset() {
	m.state = state{
		index:         newUserIndex(),
		days:          map[string]*board{},
		summaries:     map[string]*summary{},
		changedMonths: map[string]bool{},
	}
}

// blank returns an empty model configured as m.
func (m *Model) blank() *Model {
	n := &Model{window: m.window}
	n.reset()
	return n
}

// Position returns the Seq of the last applied event, 0 if none.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

// Horizon returns the oldest date of the window: the model holds users'
// counts for it and later dates, not for earlier ones. It is "" before
// any record.
func (m *Model) Horizon() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cutoff
}

// Steps returns userID's count for date, and false if they have none or
// date is before the Horizon.
func (m *Model) Steps(userID, date string) (int32, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, _, steps, ok := m.lookup(date, userID)
	return steps, ok
}

// Range returns userID's counts for the dates from..to inclusive
// (YYYY-MM-DD, compared as strings) that have a record, in date order,
// and the Horizon they were read at: the counts of dates before it are
// not the model's to give (they are in the event store). It costs
// O(log D + d) for d dates with records in the range.
func (m *Model) Range(userID, from, to string) (days []Daily, horizon string) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	uid, ok := m.index.lookup(m.names, userID)
	if !ok {
		return nil, m.cutoff
	}
	i, _ := slices.BinarySearch(m.dates, from)
	for ; i < len(m.dates) && m.dates[i] <= to; i++ {
		if steps, ok := m.days[m.dates[i]].get(uid); ok {
			days = append(days, Daily{UserID: userID, Date: m.dates[i], Steps: steps})
		}
	}
	return days, m.cutoff
}

// Top returns the first n entries of date's leaderboard, rank 1 first;
// fewer when fewer users are ranked, nil when none or n <= 0. For a date
// before the Horizon it returns at most SummaryTop entries, as they were
// when the date left the window.
func (m *Model) Top(date string, n int) []Entry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if n <= 0 {
		return nil
	}
	if s := m.summaries[date]; s != nil {
		return slices.Clone(s.top[:min(n, len(s.top))])
	}
	b := m.days[date]
	if b == nil {
		return nil
	}
	out := make([]Entry, 0, min(n, int(b.total())))
	b.walk(func(uid, steps int32) bool {
		out = append(out, Entry{Rank: int64(len(out) + 1), UserID: m.names.str(uid), Steps: steps})
		return len(out) < n
	})
	return out
}

// Rank returns userID's entry on date's leaderboard, and false if they
// have none; for a date before the Horizon, false unless they are in its
// summary's top.
func (m *Model) Rank(date, userID string) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.summaries[date]; s != nil {
		for _, e := range s.top {
			if e.UserID == userID {
				return e, true
			}
		}
		return Entry{}, false
	}
	b, uid, steps, ok := m.lookup(date, userID)
	if !ok {
		return Entry{}, false
	}
	return Entry{Rank: b.rank(m.names, uid, steps), UserID: userID, Steps: steps}, true
}

// Total returns the number of users ranked on date (for a date before the
// Horizon, when it left the window).
func (m *Model) Total(date string) int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.summaries[date]; s != nil {
		return s.total
	}
	if b := m.days[date]; b != nil {
		return int64(b.total())
	}
	return 0
}
