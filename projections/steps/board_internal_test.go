package steps

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// TestBoardMatchesSorting applies random raises to one board, with counts
// in the tree's range, beyond it and negative, few users at many counts and
// many at few (so parts split and empty), sharing it now and then, and
// after each batch checks every answer against sorting the counts, the
// board's own bookkeeping, and that each view still reads what it shared.
func TestBoardMatchesSorting(t *testing.T) {
	for _, tc := range []struct {
		name          string
		users, counts int32
		odd, wide     bool
	}{
		{"spread", 3000, 100_000, false, false},
		{"crowded", 5000, 3, false, false},
		{"odd_counts", 2000, 40, true, false},
		{"many_odd_counts", 4000, 100, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(tc.users)))
			var ids names
			for i := range tc.users {
				ids.set(i, fmt.Sprintf("u%05d", rng.IntN(1_000_000))+fmt.Sprint(i)) // unique, not in uid order
			}
			b := newBoard()
			want := map[int32]int32{}
			type shared struct {
				v    *view
				want map[int32]int32
			}
			var views []shared
			for batch := range 20 {
				for range 1000 {
					uid := rng.Int32N(tc.users)
					steps := rng.Int32N(tc.counts)
					if tc.odd && rng.IntN(4) == 0 {
						steps = []int32{-1 << 31, -7, denseLimit, denseLimit + 1, 1<<31 - 1}[rng.IntN(5)]
					}
					if tc.wide && rng.IntN(2) == 0 { // thousands of counts beyond the tree: its parts split
						steps = []int32{denseLimit + rng.Int32N(4000), -1 - rng.Int32N(4000)}[rng.IntN(2)]
					}
					if old, ok := want[uid]; ok && old == steps {
						continue
					}
					b.set(ids, uid, steps)
					want[uid] = steps
				}
				checkBoard(t, b, ids, want)
				if batch%3 == 0 {
					views = append(views, shared{b.share(), maps.Clone(want)})
				}
			}
			for i, s := range views {
				if got, want := s.v.ranked(ids), sortedCounts(ids, s.want); !slices.Equal(got, want) || int(s.v.users) != len(want) {
					t.Fatalf("view %d ranks %d counts (users %d) other than the %d it shared", i, len(got), s.v.users, len(want))
				}
			}
		})
	}
}

// sortedCounts returns want's counts, uid → count, in rank order.
func sortedCounts(ids names, want map[int32]int32) []count {
	sorted := make([]count, 0, len(want))
	for uid, steps := range want {
		sorted = append(sorted, count{uid, steps})
	}
	slices.SortFunc(sorted, func(a, c count) int {
		if a.steps != c.steps {
			return cmp.Compare(c.steps, a.steps)
		}
		return ids.compare(a.uid, c.uid)
	})
	return sorted
}

// checkBoard checks b against want, uid → count: walk, rank, get and
// total against sorting, then the tree, buckets and parts themselves.
func checkBoard(tb testing.TB, b *board, ids names, want map[int32]int32) {
	tb.Helper()
	sorted := sortedCounts(ids, want)
	var walked []count
	b.walk(func(uid, steps int32) bool {
		walked = append(walked, count{uid, steps})
		return true
	})
	if !slices.Equal(walked, sorted) {
		tb.Fatalf("walk differs from sorting: %d users walked, %d held", len(walked), len(sorted))
	}
	if int(b.total()) != len(sorted) {
		tb.Fatalf("total %d, want %d", b.total(), len(sorted))
	}
	for i, c := range sorted {
		if got := b.rank(ids, c.uid, c.steps); got != int64(i+1) {
			tb.Fatalf("uid %d (%d steps) ranks %d, want %d", c.uid, c.steps, got, i+1)
		}
		if got, ok := b.get(c.uid); !ok || got != c.steps {
			tb.Fatalf("uid %d has %d, %v; want %d", c.uid, got, ok, c.steps)
		}
	}
	var inCol int
	b.each(func(uid, steps int32) {
		inCol++
		if w, ok := want[uid]; !ok || w != steps {
			tb.Fatalf("column holds uid %d at %d", uid, steps)
		}
	})
	if inCol != len(want) {
		tb.Fatalf("column holds %d counts, want %d", inCol, len(want))
	}
	// The tree counts each dense count's users.
	n := len(b.fen) - 1
	if n&(n-1) != 0 || len(b.dense) != n {
		tb.Fatalf("tree of %d, %d buckets", n, len(b.dense))
	}
	for v := range int32(n) {
		users := b.dense[v].Len()
		if got := b.below(v+1) - b.below(v); got != int32(users) {
			tb.Fatalf("tree counts %d users at %d, bucket %d", got, v, users)
		}
		checkBucket(tb, &b.dense[v], ids)
	}
	var prevOdd *oddCount
	for _, p := range b.odd.parts {
		if len(p.counts) == 0 || len(p.counts) > maxPart {
			tb.Fatalf("odd part of %d counts", len(p.counts))
		}
		users := int64(0)
		for i := range p.counts {
			o := &p.counts[i]
			if prevOdd != nil && prevOdd.steps <= o.steps || o.n == 0 || int(o.n) != o.users.Len() || 0 <= o.steps && o.steps < denseLimit {
				tb.Fatalf("odd count %d out of place, or its %d users miscounted", o.steps, o.users.Len())
			}
			users += int64(o.n)
			prevOdd = o
			checkBucket(tb, o.users, ids)
		}
		if users != p.users {
			tb.Fatalf("odd part counts %d users, holds %d", p.users, users)
		}
	}
}

func checkBucket(tb testing.TB, bk *bucket, ids names) {
	tb.Helper()
	if bk == nil {
		return
	}
	for _, n := range bk.Parts() {
		if n == 0 || n > projections.SortedPart {
			tb.Fatalf("part of %d users", n)
		}
	}
	var prev string
	for i, uid := range slices.Collect(bk.All()) {
		if i > 0 && ids.str(uid) <= prev {
			tb.Fatalf("bucket out of id order at %q", ids.str(uid))
		}
		prev = ids.str(uid)
	}
}

// TestCrowdedCountStaysFast: 262,144 users at one count keep parts of
// at most projections.SortedPart, so a raise into or out of it moves at most that many
// uids and a rank sums part lengths rather than walking users.
func TestCrowdedCountStaysFast(t *testing.T) {
	const users = 1 << 18
	m := New()
	for i := range users {
		m.record(fmt.Sprintf("user-%07d", (i*7919)%users), "2025-06-01", 5) // ids out of order
	}
	b := m.days["2025-06-01"]
	bk := &b.dense[5]
	if got := bk.Len(); got != users {
		t.Fatalf("bucket holds %d", got)
	}
	for _, n := range bk.Parts() {
		if n > projections.SortedPart || n < projections.SortedPart/4 {
			t.Fatalf("part of %d users", n)
		}
	}
	if e, ok := m.Rank("2025-06-01", "user-0131072"); !ok || e.Rank != 131073 {
		t.Errorf("Rank = %+v, %v", e, ok)
	}
	m.record("user-0131072", "2025-06-01", 6)
	if e, _ := m.Rank("2025-06-01", "user-0131072"); e.Rank != 1 {
		t.Errorf("raised user ranks %d, want 1", e.Rank)
	}
	if e, _ := m.Rank("2025-06-01", "user-0131073"); e.Rank != 131074 {
		t.Errorf("next user ranks %d, want 131074", e.Rank)
	}
}

// TestChurnDoesNotGrowTheModel: users who leave with their last date in
// the window are forgotten and their slots reused, so a model whose users
// change every day stays the size of its window, whether it is captured
// or not; only while a capture's Encodes have not run are slots kept.
func TestChurnDoesNotGrowTheModel(t *testing.T) {
	const perDay, window = 100, 3
	m := New(Window(window))
	day := 0
	churn := func(days int, capture bool) {
		for range days {
			date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, day).Format(dateLayout)
			for u := range perDay {
				m.Apply(es.Event{Data: &stepsv1.StepsRecorded{UserId: fmt.Sprintf("day%d-user%d", day, u), Date: date, Steps: int32(u)}})
			}
			if capture {
				for _, s := range captureEncodes(m) {
					s()
				}
			}
			day++
		}
	}
	most := perDay * (window + 1)
	churn(50, true)
	if got := int(m.names.at.len()); got > most {
		t.Errorf("captured daily: %d user slots for %d users a day over a %d-day window, want at most %d", got, perDay, window, most)
	}
	churn(50, false)
	if got := int(m.names.at.len()); got > most {
		t.Errorf("never captured: %d user slots, want at most %d", got, most)
	}
	encodes := captureEncodes(m) // not run: the slots their ids are in stay
	churn(10, false)
	if got := int(m.names.at.len()); got <= most {
		t.Errorf("with a capture's Encodes pending, %d user slots: slots were reused under them", got)
	}
	for _, e := range encodes {
		e()
	}
	grown := int(m.names.at.len())
	churn(10, false)
	if got := int(m.names.at.len()); got != grown {
		t.Errorf("once the Encodes ran, user slots went from %d to %d, want reused", grown, got)
	}
	if got := m.index.n; got != perDay*window {
		t.Errorf("%d users held, want %d", got, perDay*window)
	}
	if len(m.summaries) != day-window || len(m.days) != window {
		t.Errorf("%d summaries and %d dates held", len(m.summaries), len(m.days))
	}
}

// captureEncodes captures m and returns its Encodes.
func captureEncodes(m *Model) []func() {
	_, segs := m.Capture(false)
	var out []func()
	for _, s := range segs {
		if s.Encode != nil {
			out = append(out, func() { s.Encode() })
		}
	}
	return out
}

// TestLeavingUsersAreForgottenAFewAtATime: when a date leaves the window,
// its users no other date holds are forgotten over the next Applies, and
// one who records again meanwhile is kept.
func TestLeavingUsersAreForgottenAFewAtATime(t *testing.T) {
	m := New(Window(1))
	seq := uint64(0)
	rec := func(user, date string, n int32) {
		seq++
		m.Apply(es.Event{Data: &stepsv1.StepsRecorded{UserId: user, Date: date, Steps: n}, Position: es.Position{Seq: seq}})
	}
	for u := range 100 {
		rec(fmt.Sprintf("user-%03d", u), "2025-06-01", int32(u))
	}
	rec("user-000", "2025-06-02", 7) // 2025-06-01 leaves: 99 users with it
	if got := m.index.n; got <= 1 || got > 100-forgetPerApply+1 {
		t.Errorf("%d users held right after the date left, want all but the first few", got)
	}
	for i := range 20 {
		rec("user-000", "2025-06-02", int32(8+i))
	}
	if got, ok := m.Steps("user-000", "2025-06-02"); m.index.n != 1 || len(m.leaving) != 0 || !ok || got != 27 {
		t.Errorf("%d users held, %d leaving, user-000 has %d, %v; want only user-000, with 27", m.index.n, len(m.leaving), got, ok)
	}
}

// TestUserIndexMatchesMap adds and removes random users, reusing freed
// uids with ids of other lengths as the model does, and checks every
// lookup, present or not, against a map; then compacts the ids and checks
// again.
func TestUserIndexMatchesMap(t *testing.T) {
	var empty names // an empty id needs no chunk, even when there is none
	empty.set(0, "")
	if len(empty.of(0)) != 0 || empty.size != 0 {
		t.Fatalf("empty id read as %q", empty.of(0))
	}
	rng := rand.New(rand.NewPCG(11, 11))
	var ns names
	x := newUserIndex()
	want := map[string]int32{}
	var free []int32
	user := func() string {
		if rng.IntN(100) == 0 {
			return "" // an empty id has no bytes to place
		}
		return fmt.Sprintf("%0*d", 1+rng.IntN(30), rng.IntN(3000))
	}
	check := func(stage string) {
		t.Helper()
		if x.n != len(want) {
			t.Fatalf("%s: index holds %d, want %d", stage, x.n, len(want))
		}
		for id, uid := range want {
			if got, ok := x.lookup(ns, id); !ok || got != uid {
				t.Fatalf("%s: lookup(%q) = %d, %v; want %d", stage, id, got, ok, uid)
			}
		}
		for range 2000 {
			if id := user(); want[id] == 0 {
				if uid, ok := x.lookup(ns, id); ok && want[id] != uid {
					t.Fatalf("%s: lookup(%q) found %d", stage, id, uid)
				}
			}
		}
	}
	for round := range 20 {
		for range 1000 {
			id := user()
			if uid, ok := want[id]; ok {
				x.remove(ns, uid)
				delete(want, id)
				free = append(free, uid)
				continue
			}
			uid := ns.at.len()
			if len(free) > 0 && rng.IntN(2) == 0 {
				uid, free = free[len(free)-1], free[:len(free)-1]
			}
			ns.set(uid, id)
			x.add(ns, uid)
			want[id] = uid
		}
		check(fmt.Sprintf("round %d", round))
	}
	before := ns.size
	ns = ns.compact(x.each)
	check("compacted")
	for _, id := range []string{"", "after-compaction"} { // a freed uid has no bytes now
		if _, ok := want[id]; ok || len(free) == 0 {
			continue
		}
		uid := free[len(free)-1]
		free = free[:len(free)-1]
		ns.set(uid, id)
		x.add(ns, uid)
		want[id] = uid
	}
	check("reused after compaction")
	live := 0
	for id := range want {
		live += len(id)
	}
	if ns.size != live || before <= live {
		t.Errorf("compacted to %d bytes from %d, live %d", ns.size, before, live)
	}
}

// TestChurnOfLongerIDsKeepsTheIDsBounded: when each day's users have
// longer ids than the last, no freed id has room for its successor, and
// the ids' bytes are compacted rather than growing with history.
func TestChurnOfLongerIDsKeepsTheIDsBounded(t *testing.T) {
	const perDay = 1000
	m := New(Window(1))
	seq := uint64(0)
	for day := range 200 {
		date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, day).Format(dateLayout)
		for u := range perDay {
			seq++
			id := fmt.Sprintf("%0*d", 10+day%100, u)
			m.Apply(es.Event{Data: &stepsv1.StepsRecorded{UserId: id, Date: date, Steps: int32(u)}, Position: es.Position{Seq: seq}})
		}
	}
	live := 0
	m.index.each(func(uid int32) { live += len(m.names.of(uid)) })
	if live != m.idBytes || m.names.size > 2*live+compactAfter {
		t.Errorf("%d bytes of ids held for %d live (counted %d)", m.names.size, live, m.idBytes)
	}
	if got, ok := m.Rank(m.dates[0], fmt.Sprintf("%0*d", 10+199%100, 7)); !ok || got.Steps != 7 {
		t.Errorf("Rank after compactions = %+v, %v", got, ok)
	}
}

// TestOverlongUserIDIsIgnored: a record whose id is longer than
// MaxUserID changes nothing (an id's length has 24 bits in names).
func TestOverlongUserIDIsIgnored(t *testing.T) {
	m := New()
	long := string(make([]byte, MaxUserID+1))
	m.Apply(es.Event{Data: &stepsv1.StepsRecorded{UserId: long, Date: "2025-06-01", Steps: 5}, Position: es.Position{Seq: 1}})
	m.Apply(es.Event{Data: &stepsv1.StepsRecorded{UserId: long[:MaxUserID], Date: "2025-06-01", Steps: 6}, Position: es.Position{Seq: 2}})
	if m.Total("2025-06-01") != 1 || m.index.n != 1 {
		t.Fatalf("%d ranked, %d users held; want only the id of MaxUserID bytes", m.Total("2025-06-01"), m.index.n)
	}
	if e, ok := m.Rank("2025-06-01", long[:MaxUserID]); !ok || e.Steps != 6 || e.UserID != long[:MaxUserID] {
		t.Errorf("Rank = %d steps, %v", e.Steps, ok)
	}
}
