package steps_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/projections/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// day returns the date n days after 2025-01-01.
func day(n int) string {
	return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n).Format("2006-01-02")
}

func apply(m *steps.Model, seq uint64, r record) {
	m.Apply(event(seq, &stepsv1.StepsRecorded{UserId: r.user, Date: r.date, Steps: r.steps}))
}

func TestWindowKeepsSummariesOfDatesThatLeave(t *testing.T) {
	m := steps.New(steps.Window(3))
	seq := uint64(0)
	rec := func(user, date string, n int32) {
		seq++
		apply(m, seq, record{user, date, n})
	}
	for u := range 150 { // day 0: 150 users, user-149 first
		rec(fmt.Sprintf("user-%03d", u), day(0), int32(u))
	}
	rec("ann", day(1), 10)
	rec("ann", day(2), 20)
	if h := m.Horizon(); h != day(0) {
		t.Fatalf("Horizon = %s, want %s", h, day(0))
	}
	top := m.Top(day(0), 1000)
	rec("bob", day(3), 30) // day 0 leaves the window

	if h := m.Horizon(); h != day(1) {
		t.Errorf("Horizon = %s, want %s", h, day(1))
	}
	if _, ok := m.Steps("user-149", day(0)); ok {
		t.Error("a date that left the window still answers a user's count")
	}
	if got, want := m.Top(day(0), 1000), top[:steps.SummaryTop]; !slices.Equal(got, want) {
		t.Errorf("Top of a date that left = %d entries, want its first %d as they were", len(got), len(want))
	}
	if got := m.Top(day(0), 3); !slices.Equal(got, top[:3]) {
		t.Errorf("Top(3) = %v, want %v", got, top[:3])
	}
	if got := m.Total(day(0)); got != 150 {
		t.Errorf("Total = %d, want 150", got)
	}
	if e, ok := m.Rank(day(0), "user-100"); !ok || e != top[49] {
		t.Errorf("Rank(user-100) = %v, %v; want %v", e, ok, top[49])
	}
	if e, ok := m.Rank(day(0), "user-000"); ok {
		t.Errorf("Rank of a user below the summary's top = %v, want none", e)
	}

	// A late record for the summarised date changes nothing; one for a
	// date before any window is dropped too.
	before := withoutPosition(snapshot(t, m))
	rec("user-000", day(0), 99999)
	rec("cat", day(-40), 5)
	if !bytes.Equal(withoutPosition(snapshot(t, m)), before) {
		t.Error("records before the window changed the model")
	}
	if got := m.Top(day(0), 1); got[0].UserID != "user-149" {
		t.Errorf("Top(1) after a late record = %v", got)
	}
	if got, _ := m.Range("user-000", day(-60), day(10)); got != nil {
		t.Errorf("Range of a user whose dates all left = %v, want none", got)
	}
	// Records within the window still count, out of order too.
	rec("ann", day(1), 15)
	rec("ann", day(1), 5)
	if got, _ := m.Range("ann", day(0), day(3)); !slices.Equal(got, []steps.Daily{{"ann", day(1), 15}, {"ann", day(2), 20}}) {
		t.Errorf("Range(ann) = %v", got)
	}
	// A jump forward summarises every date behind the new window.
	rec("dan", day(30), 1)
	for _, d := range []int{1, 2, 3} {
		if _, ok := m.Steps("ann", day(d)); ok || m.Total(day(d)) == 0 {
			t.Errorf("%s: still held, or no summary", day(d))
		}
	}
	if got := m.Top(day(2), 10); !slices.Equal(got, []steps.Entry{{1, "ann", 20}}) {
		t.Errorf("Top of %s = %v", day(2), got)
	}
}

// withoutPosition returns a snapshot but for the position after its magic.
func withoutPosition(snap []byte) []byte {
	_, n := binary.Uvarint(snap[8:])
	return append(slices.Clone(snap[:8]), snap[8+n:]...)
}

func TestMalformedDatesAreIgnored(t *testing.T) {
	m := build(t, record{"ann", "2025-06-01", 10})
	before := withoutPosition(snapshot(t, m))
	for i, d := range []string{"", "June 1", "2025-6-01", "2025-06-31", "2025-06-01 ", "9999-99-99"} {
		apply(m, uint64(i+2), record{"bob", d, 5})
	}
	if !bytes.Equal(withoutPosition(snapshot(t, m)), before) {
		t.Error("records with malformed dates changed the model")
	}
}

// stored is what a runner keeps of a Segmented model: the segments of the
// last capture it wrote whole.
type stored struct {
	pos   uint64
	names []string
	data  map[string][]byte
}

// take captures m and returns a write that encodes the capture and stores
// it as the runner does, failing the test where a segment said unchanged
// was never stored; write returns the bytes it encoded.
func (s *stored) take(tb testing.TB, m *steps.Model, full bool) (write func() int) {
	tb.Helper()
	pos, segs := m.Capture(full)
	return func() int {
		tb.Helper()
		next, names, written := map[string][]byte{}, []string{}, 0
		for _, seg := range segs {
			names = append(names, seg.Name)
			if seg.Encode == nil {
				data, ok := s.data[seg.Name]
				if !ok {
					tb.Fatalf("segment %s unchanged but never stored", seg.Name)
				}
				next[seg.Name] = data
				continue
			}
			data, err := seg.Encode()
			if err != nil {
				tb.Fatalf("encode %s: %v", seg.Name, err)
			}
			next[seg.Name], written = data, written+len(data)
		}
		s.pos, s.names, s.data = pos, names, next
		return written
	}
}

func (s *stored) restore(tb testing.TB, opts ...steps.Option) *steps.Model {
	tb.Helper()
	m := steps.New(opts...)
	if err := m.RestoreSegments(s.pos, s.names, func(name string) ([]byte, error) { return s.data[name], nil }); err != nil {
		tb.Fatalf("RestoreSegments: %v", err)
	}
	return m
}

// marching returns n records of users over dates that advance, with late
// and early ones, so a short window moves many times.
func marching(rng *rand.Rand, n, users, days int) []record {
	out := make([]record, n)
	for i := range out {
		d := i*days/n + rng.IntN(9) - 6
		out[i] = record{fmt.Sprintf("user-%03d", rng.IntN(users)), day(d), rng.Int32N(500)}
	}
	return out
}

// TestSegmentsRestoreTheCapturedModel captures a model whose window keeps
// moving, lets it apply more (so captures are encoded from copies while
// it changes), stores the segments as a runner does, and restores: the
// restored model equals the one captured, and carries on equal to the
// live one through more captures.
func TestSegmentsRestoreTheCapturedModel(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("seed_%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 77))
			records := marching(rng, 6000, 150, 60)
			live := steps.New(steps.Window(7))
			var s stored
			var write func() int
			var want []byte
			for i, r := range records {
				apply(live, uint64(i+1), r)
				if i%131 == 0 {
					if write != nil {
						write()
						if got := snapshot(t, s.restore(t, steps.Window(7))); !bytes.Equal(got, want) {
							t.Fatalf("after record %d: restored model differs from the one captured", i)
						}
					}
					write = s.take(t, live, rng.IntN(8) == 0)
					want = snapshot(t, live)
				}
			}
			write()
			s.take(t, live, false)()
			restored := s.restore(t, steps.Window(7))
			if !bytes.Equal(snapshot(t, restored), snapshot(t, live)) {
				t.Fatal("restored model differs from the live one")
			}
			again := stored{pos: s.pos, names: s.names, data: s.data}
			for i, r := range marching(rng, 2000, 200, 70) {
				seq := uint64(len(records) + i + 1)
				apply(live, seq, r)
				apply(restored, seq, r)
				if i%97 == 0 {
					s.take(t, live, false)()
					again.take(t, restored, false)()
				}
			}
			s.take(t, live, false)()
			again.take(t, restored, false)()
			if !bytes.Equal(snapshot(t, again.restore(t, steps.Window(7))), snapshot(t, live)) {
				t.Error("a model restored from segments diverged from the live one")
			}
		})
	}
}

func TestCaptureEncodesOnlyWhatChanged(t *testing.T) {
	m := steps.New()
	seq := uint64(0)
	rec := func(user, date string, n int32) {
		seq++
		apply(m, seq, record{user, date, n})
	}
	for u := range 1000 {
		for d := range 3 {
			rec(fmt.Sprintf("user-%04d", u), day(d), int32(u+d))
		}
	}
	encoded := func(full bool) (names []string) {
		_, segs := m.Capture(full)
		for _, s := range segs {
			if s.Encode != nil {
				names = append(names, s.Name)
			}
		}
		return names
	}
	all := []string{"window", "date-" + day(0), "date-" + day(1), "date-" + day(2)}
	if got := encoded(false); !slices.Equal(got, all) {
		t.Fatalf("first capture encodes %v, want %v", got, all)
	}
	if got := encoded(false); got != nil {
		t.Errorf("capture of an unchanged model encodes %v", got)
	}
	for u := range 10 {
		rec(fmt.Sprintf("user-%04d", u), day(2), 5000)
	}
	_, segs := m.Capture(false)
	var names []string
	for _, s := range segs {
		names = append(names, s.Name)
	}
	if want := append(slices.Clone(all), "date-"+day(2)+"+1"); !slices.Equal(names, want) {
		t.Fatalf("segments %v, want %v", names, want)
	}
	last := segs[len(segs)-1]
	if last.Encode == nil {
		t.Fatal("the delta has no Encode")
	}
	if data, _ := last.Encode(); len(data) > 10*20 {
		t.Errorf("delta of 10 counts is %d bytes", len(data))
	}
	for _, s := range segs[:len(segs)-1] {
		if s.Encode != nil {
			t.Errorf("%s encoded, unchanged", s.Name)
		}
	}
	for u := range 600 { // more than half the date's users since its segment
		rec(fmt.Sprintf("user-%04d", u), day(2), 6000)
	}
	if got := encoded(false); !slices.Equal(got, []string{"date-" + day(2)}) {
		t.Errorf("after most counts changed, capture encodes %v, want the date's leaderboard alone", got)
	}
	for i := range steps.MaxDeltas {
		rec("user-0999", day(1), int32(7000+i))
		if got := encoded(false); !slices.Equal(got, []string{"date-" + day(1) + "+" + fmt.Sprint(i+1)}) {
			t.Fatalf("change %d encodes %v", i, got)
		}
	}
	rec("user-0999", day(1), 9999)
	if got := encoded(false); !slices.Equal(got, []string{"date-" + day(1)}) {
		t.Errorf("past MaxDeltas, capture encodes %v, want the date's leaderboard", got)
	}
	if got := encoded(true); !slices.Equal(got, all) {
		t.Errorf("full capture encodes %v, want %v", got, all)
	}
}

func TestRestoreSegmentsRejectsGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	m := steps.New(steps.Window(7))
	var s stored
	for i, r := range marching(rng, 3000, 100, 30) {
		apply(m, uint64(i+1), r)
		if i%20 == 0 {
			s.take(t, m, false)()
		}
	}
	s.take(t, m, false)()
	if !slices.ContainsFunc(s.names, func(n string) bool { return strings.Contains(n, "+") }) ||
		!slices.ContainsFunc(s.names, func(n string) bool { return strings.HasPrefix(n, "summaries-") }) {
		t.Fatalf("want deltas and summaries to damage, have %v", s.names)
	}
	firstDelta := slices.IndexFunc(s.names, func(n string) bool { return strings.Contains(n, "+") })
	firstDate := slices.IndexFunc(s.names, func(n string) bool { return strings.HasPrefix(n, "date-") })
	without := func(i int) []string { return slices.Delete(slices.Clone(s.names), i, i+1) }
	swapped := func(i, j int) []string {
		n := slices.Clone(s.names)
		n[i], n[j] = n[j], n[i]
		return n
	}
	tests := []struct {
		name  string
		names []string
		read  func(name string) ([]byte, error)
		opts  []steps.Option
	}{
		{name: "read_fails", read: func(string) ([]byte, error) { return nil, errors.New("gone") }},
		{name: "no_window", names: without(0)},
		{name: "window_not_first", names: swapped(0, 1)},
		{name: "other_window", opts: []steps.Option{steps.Window(8)}},
		{name: "delta_missing", names: without(firstDelta)},
		{name: "base_missing", names: without(firstDelta - 1)},
		{name: "dates_swapped", names: swapped(firstDate, firstDate+1)},
		{name: "unknown_segment", names: append(slices.Clone(s.names), "extra")},
		{name: "segment_truncated", read: func(name string) ([]byte, error) {
			d := s.data[name]
			if strings.HasPrefix(name, "date-") {
				d = d[:len(d)-1]
			}
			return d, nil
		}},
		{name: "segment_with_trailing_byte", read: func(name string) ([]byte, error) { return append(slices.Clone(s.data[name]), 0), nil }},
		{name: "segment_under_another_name", read: func(name string) ([]byte, error) {
			if name == s.names[firstDate] {
				name = s.names[len(s.names)-1]
			}
			return s.data[name], nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names, read := tt.names, tt.read
			if names == nil {
				names = s.names
			}
			if read == nil {
				read = func(name string) ([]byte, error) {
					if d, ok := s.data[name]; ok {
						return d, nil
					}
					return []byte{}, nil
				}
			}
			got := steps.New(append([]steps.Option{steps.Window(7)}, tt.opts...)...)
			apply(got, 1, record{"zed", "2025-06-01", 1})
			before := snapshot(t, got)
			if err := got.RestoreSegments(s.pos, names, read); err == nil {
				t.Fatal("RestoreSegments accepted garbage")
			}
			if !bytes.Equal(snapshot(t, got), before) {
				t.Error("failed RestoreSegments changed the model")
			}
		})
	}
}

// TestEncodeDuringApply is for the race detector: captures are encoded
// while Apply goes on, on another goroutine, and moves the window
// (releasing and reusing users), as under a runner.
func TestEncodeDuringApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	m := steps.New(steps.Window(3))
	records := marching(rng, 30000, 3000, 12) // boards of ~2000 users: several chunks
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for i, r := range records {
			apply(m, uint64(i+1), r)
		}
	}()
	var s stored
	for running := true; running; {
		select {
		case <-applied:
			running = false
		default:
		}
		s.take(t, m, false)()
		s.restore(t, steps.Window(3))
	}
	if !bytes.Equal(snapshot(t, s.restore(t, steps.Window(3))), snapshot(t, m)) {
		t.Error("restored model differs from the live one")
	}
}

// TestCaptureIsCopiedOnWrite: a capture encoded after many Applies changed
// a large board (many chunks of nodes) still holds the board as captured.
func TestCaptureIsCopiedOnWrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	m := steps.New()
	seq := uint64(0)
	for u := range 5000 {
		seq++
		apply(m, seq, record{fmt.Sprintf("user-%04d", u), "2025-06-01", rng.Int32N(1000)})
	}
	var s stored
	write := s.take(t, m, false)
	want := snapshot(t, m)
	for range 20000 {
		seq++
		apply(m, seq, record{fmt.Sprintf("user-%04d", rng.IntN(6000)), "2025-06-01", rng.Int32N(3000)})
	}
	write()
	if !bytes.Equal(snapshot(t, s.restore(t)), want) {
		t.Error("restored capture differs from the model captured")
	}
	s.take(t, m, false)()
	if !bytes.Equal(snapshot(t, s.restore(t)), snapshot(t, m)) {
		t.Error("restored model differs from the live one")
	}
}
