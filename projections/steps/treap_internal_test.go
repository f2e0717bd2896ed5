package steps

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/es"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// TestTreapShapeIsCanonical checks, beyond the answers the black-box tests
// compare, that every board is a valid treap (order, heap, sizes) and that
// in-order, shuffled and restored models build the very same trees.
func TestTreapShapeIsCanonical(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	dates := []string{"2025-06-01", "2025-06-02", "2025-06-03"}
	var events []es.Event
	for i := range 3000 {
		events = append(events, es.Event{
			Position: es.Position{Seq: uint64(i + 1)},
			Data: &stepsv1.StepsRecorded{
				UserId: fmt.Sprintf("user-%03d", rng.IntN(400)),
				Date:   dates[rng.IntN(len(dates))],
				Steps:  rng.Int32N(60),
			},
		})
	}
	inOrder := New()
	for _, e := range events {
		inOrder.Apply(e)
	}
	shuffled := New()
	for _, i := range rng.Perm(len(events)) {
		shuffled.Apply(events[i])
	}
	data, err := inOrder.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := New()
	if err := restored.Restore(data); err != nil {
		t.Fatal(err)
	}
	for _, date := range dates {
		want := inOrder.shape(t, date)
		for name, m := range map[string]*Model{"shuffled": shuffled, "restored": restored} {
			if got := m.shape(t, date); got != want {
				t.Errorf("%s: %s tree differs from the in-order one", name, date)
			}
		}
	}
}

// shape checks date's treap and returns its preorder, nodes as user:steps.
func (m *Model) shape(tb testing.TB, date string) string {
	tb.Helper()
	b := m.days[date]
	var last *node
	b.walk(func(n *node) bool {
		if last != nil && !before(m.ids, last, n) {
			tb.Fatalf("%s: %s:%d before %s:%d", date, m.ids[last.uid], last.steps, m.ids[n.uid], n.steps)
		}
		last = n
		return true
	})
	var pre func(t int32) (string, int32)
	pre = func(t int32) (string, int32) {
		if t == 0 {
			return "", 0
		}
		n := *b.get(t)
		for _, c := range []int32{n.left, n.right} {
			if c != 0 && b.get(c).prio > n.prio {
				tb.Fatalf("%s: heap order broken under %s", date, m.ids[n.uid])
			}
		}
		l, ls := pre(n.left)
		r, rs := pre(n.right)
		if n.size != ls+rs+1 {
			tb.Fatalf("%s: %s has size %d, want %d", date, m.ids[n.uid], n.size, ls+rs+1)
		}
		return fmt.Sprintf("%s:%d(%s,%s)", m.ids[n.uid], n.steps, l, r), n.size
	}
	s, size := pre(b.root)
	if size != int32(len(b.at)) || size != b.len-1 {
		tb.Fatalf("%s: tree holds %d nodes, index %d, slab %d", date, size, len(b.at), b.len-1)
	}
	return s
}

// TestTreapStaysShallow checks the O(log N) depth that Rank, Top and Apply
// rely on, for records arriving in rank order (the worst case of an
// unbalanced tree), both new users and raises.
func TestTreapStaysShallow(t *testing.T) {
	const users = 100_000
	m := New()
	for i := range users {
		m.record(fmt.Sprintf("user-%06d", i), "2025-06-01", int32(users-i)) // each ranks last
	}
	for i := range users / 10 {
		m.record(fmt.Sprintf("user-%06d", i), "2025-06-01", int32(2*users+i)) // each jumps to first
	}
	b := m.days["2025-06-01"]
	var height func(t int32) int
	height = func(t int32) int {
		if t == 0 {
			return 0
		}
		return 1 + max(height(b.get(t).left), height(b.get(t).right))
	}
	// A treap's expected height is about 3·log2 N (here 50).
	if h := height(b.root); h > 60 {
		t.Errorf("height %d for %d users", h, users)
	} else {
		t.Logf("height %d for %d users", h, users)
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
	if got := len(m.ids); got > most {
		t.Errorf("captured daily: %d user slots for %d users a day over a %d-day window, want at most %d", got, perDay, window, most)
	}
	churn(50, false)
	if got := len(m.ids); got > most {
		t.Errorf("never captured: %d user slots, want at most %d", got, most)
	}
	encodes := captureEncodes(m) // not run: the slots their ids are in stay
	churn(10, false)
	if got := len(m.ids); got <= most {
		t.Errorf("with a capture's Encodes pending, %d user slots: slots were reused under them", got)
	}
	for _, e := range encodes {
		e()
	}
	grown := len(m.ids)
	churn(10, false)
	if got := len(m.ids); got != grown {
		t.Errorf("once the Encodes ran, user slots went from %d to %d, want reused", grown, got)
	}
	if got := len(m.uids); got != perDay*window {
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
	if got := len(m.uids); got <= 1 || got > 100-forgetPerApply+1 {
		t.Errorf("%d users held right after the date left, want all but the first few", got)
	}
	for i := range 20 {
		rec("user-000", "2025-06-02", int32(8+i))
	}
	if got, ok := m.Steps("user-000", "2025-06-02"); len(m.uids) != 1 || len(m.leaving) != 0 || !ok || got != 27 {
		t.Errorf("%d users held, %d leaving, user-000 has %d, %v; want only user-000, with 27", len(m.uids), len(m.leaving), got, ok)
	}
}
