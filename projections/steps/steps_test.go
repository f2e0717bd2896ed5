package steps_test

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// Here rather than beside Model because .ci/depcheck's pattern admits
// projections/<pkg> but not projections itself.

type record struct {
	user, date string
	steps      int32
}

func event(seq uint64, data proto.Message) es.Event {
	return es.Event{Data: data, Position: es.Position{Seq: seq}}
}

// build applies records in order as events at positions 1, 2, ...
func build(tb testing.TB, records ...record) *steps.Model {
	tb.Helper()
	m := steps.New()
	for i, r := range records {
		m.Apply(event(uint64(i+1), &stepsv1.StepsRecorded{UserId: r.user, Date: r.date, Steps: r.steps}))
	}
	return m
}

func snapshot(tb testing.TB, m *steps.Model) []byte {
	tb.Helper()
	b, err := m.Snapshot()
	if err != nil {
		tb.Fatalf("snapshot: %v", err)
	}
	return b
}

func TestApply(t *testing.T) {
	type day struct {
		user, date string
		steps      int32
		ok         bool
	}
	tests := []struct {
		name    string
		records []record
		want    []day
	}{
		{
			name:    "first_record_sets_the_day",
			records: []record{{"ann", "2025-06-01", 1200}},
			want:    []day{{"ann", "2025-06-01", 1200, true}},
		},
		{
			name:    "higher_update_raises_the_day",
			records: []record{{"ann", "2025-06-01", 1200}, {"ann", "2025-06-01", 3400}},
			want:    []day{{"ann", "2025-06-01", 3400, true}},
		},
		{
			name:    "lower_resend_does_not_lower_the_day",
			records: []record{{"ann", "2025-06-01", 3400}, {"ann", "2025-06-01", 1200}},
			want:    []day{{"ann", "2025-06-01", 3400, true}},
		},
		{
			name:    "exact_resend_changes_nothing",
			records: []record{{"ann", "2025-06-01", 3400}, {"ann", "2025-06-01", 3400}},
			want:    []day{{"ann", "2025-06-01", 3400, true}},
		},
		{
			name: "out_of_order_updates_keep_the_highest",
			records: []record{
				{"ann", "2025-06-01", 500}, {"ann", "2025-06-01", 9000},
				{"ann", "2025-06-01", 2000}, {"ann", "2025-06-01", 7000},
			},
			want: []day{{"ann", "2025-06-01", 9000, true}},
		},
		{
			name:    "zero_steps_is_a_record",
			records: []record{{"ann", "2025-06-01", 0}},
			want:    []day{{"ann", "2025-06-01", 0, true}},
		},
		{
			name:    "dates_are_independent",
			records: []record{{"ann", "2025-06-01", 9000}, {"ann", "2025-06-02", 10}},
			want: []day{
				{"ann", "2025-06-01", 9000, true},
				{"ann", "2025-06-02", 10, true},
				{"ann", "2025-06-03", 0, false},
			},
		},
		{
			name:    "users_are_independent",
			records: []record{{"ann", "2025-06-01", 9000}, {"bob", "2025-06-01", 10}},
			want: []day{
				{"ann", "2025-06-01", 9000, true},
				{"bob", "2025-06-01", 10, true},
				{"cat", "2025-06-01", 0, false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := build(t, tt.records...)
			for _, w := range tt.want {
				got, ok := m.Steps(w.user, w.date)
				if got != w.steps || ok != w.ok {
					t.Errorf("Steps(%q, %q) = %d, %v; want %d, %v", w.user, w.date, got, ok, w.steps, w.ok)
				}
			}
		})
	}
}

func TestNameIsStable(t *testing.T) {
	if m := steps.New(); m.Name() != "steps" || steps.Name != "steps" || m.Version() != 2 {
		t.Errorf("Name, Version = %q, %d; renaming or re-versioning is a migration", m.Name(), m.Version())
	}
}

func TestApplyIgnoresOtherEventsButAdvancesPosition(t *testing.T) {
	m := build(t, record{"ann", "2025-06-01", 100})
	m.Apply(event(7, &stepsv1.RecordStepsRequest{UserId: "ann", Date: "2025-06-01", Steps: 999}))
	m.Apply(event(8, nil)) // an event of a type this build does not know
	if got, _ := m.Steps("ann", "2025-06-01"); got != 100 {
		t.Errorf("Steps = %d, want 100", got)
	}
	if got := m.Position(); got != 8 {
		t.Errorf("Position = %d, want 8", got)
	}
}

func TestLeaderboard(t *testing.T) {
	const d = "2025-06-01"
	tests := []struct {
		name    string
		records []record
		n       int
		want    []steps.Entry
	}{
		{
			name:    "steps_descending",
			records: []record{{"ann", d, 10}, {"bob", d, 30}, {"cat", d, 20}},
			n:       10,
			want:    []steps.Entry{{1, "bob", 30}, {2, "cat", 20}, {3, "ann", 10}},
		},
		{
			name:    "ties_order_by_user_id",
			records: []record{{"cat", d, 20}, {"ann", d, 20}, {"bob", d, 20}, {"dan", d, 50}},
			n:       10,
			want:    []steps.Entry{{1, "dan", 50}, {2, "ann", 20}, {3, "bob", 20}, {4, "cat", 20}},
		},
		{
			name:    "zero_steps_is_ranked_last",
			records: []record{{"ann", d, 0}, {"bob", d, 1}},
			n:       10,
			want:    []steps.Entry{{1, "bob", 1}, {2, "ann", 0}},
		},
		{
			name:    "raise_moves_the_user_up",
			records: []record{{"ann", d, 10}, {"bob", d, 20}, {"cat", d, 30}, {"ann", d, 25}},
			n:       10,
			want:    []steps.Entry{{1, "cat", 30}, {2, "ann", 25}, {3, "bob", 20}},
		},
		{
			name:    "lower_resend_does_not_move_the_user",
			records: []record{{"ann", d, 40}, {"bob", d, 20}, {"ann", d, 5}},
			n:       10,
			want:    []steps.Entry{{1, "ann", 40}, {2, "bob", 20}},
		},
		{
			name:    "top_n_cuts_the_board",
			records: []record{{"ann", d, 10}, {"bob", d, 30}, {"cat", d, 20}},
			n:       2,
			want:    []steps.Entry{{1, "bob", 30}, {2, "cat", 20}},
		},
		{
			name:    "top_zero_is_empty",
			records: []record{{"ann", d, 10}},
			n:       0,
			want:    nil,
		},
		{
			name:    "other_dates_do_not_count",
			records: []record{{"ann", d, 10}, {"bob", "2025-06-02", 99}},
			n:       10,
			want:    []steps.Entry{{1, "ann", 10}},
		},
		{
			name:    "no_records_no_board",
			records: []record{{"ann", "2025-06-02", 10}},
			n:       10,
			want:    nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := build(t, tt.records...)
			if got := m.Top(d, tt.n); !slices.Equal(got, tt.want) {
				t.Errorf("Top(%d) = %v, want %v", tt.n, got, tt.want)
			}
			all := m.Top(d, 1000)
			if got := m.Total(d); got != int64(len(all)) {
				t.Errorf("Total = %d, want %d", got, len(all))
			}
			for _, e := range all {
				if got, ok := m.Rank(d, e.UserID); !ok || got != e {
					t.Errorf("Rank(%q) = %v, %v; want %v", e.UserID, got, ok, e)
				}
			}
			if got, ok := m.Rank(d, "nobody"); ok {
				t.Errorf("Rank(nobody) = %v, want none", got)
			}
		})
	}
}

func TestRange(t *testing.T) {
	m := build(t,
		record{"ann", "2025-05-31", 1},
		record{"ann", "2025-06-01", 2},
		record{"ann", "2025-06-03", 3},
		record{"ann", "2025-06-04", 4},
		record{"bob", "2025-06-02", 9},
	)
	ann := func(date string, n int32) steps.Daily { return steps.Daily{UserID: "ann", Date: date, Steps: n} }
	tests := []struct {
		name, user, from, to string
		want                 []steps.Daily
	}{
		{"both_ends_inclusive", "ann", "2025-06-01", "2025-06-03", []steps.Daily{ann("2025-06-01", 2), ann("2025-06-03", 3)}},
		{"single_day", "ann", "2025-06-03", "2025-06-03", []steps.Daily{ann("2025-06-03", 3)}},
		{"day_without_record_is_skipped", "ann", "2025-06-02", "2025-06-02", nil},
		{"ends_between_records", "ann", "2025-05-01", "2025-06-02", []steps.Daily{ann("2025-05-31", 1), ann("2025-06-01", 2)}},
		{"wide_range_is_all_in_date_order", "ann", "0000-00-00", "9999-99-99", []steps.Daily{
			ann("2025-05-31", 1), ann("2025-06-01", 2), ann("2025-06-03", 3), ann("2025-06-04", 4),
		}},
		{"after_last_record", "ann", "2025-06-05", "2025-07-01", nil},
		{"from_after_to_is_empty", "ann", "2025-06-04", "2025-06-01", nil},
		{"other_users_are_not_included", "bob", "2025-05-01", "2025-07-01", []steps.Daily{{UserID: "bob", Date: "2025-06-02", Steps: 9}}},
		{"unknown_user", "cat", "2025-05-01", "2025-07-01", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, horizon := m.Range(tt.user, tt.from, tt.to)
			if !slices.Equal(got, tt.want) || horizon != "2025-05-01" {
				t.Errorf("Range(%q, %q, %q) = %v, %q; want %v, 2025-05-01", tt.user, tt.from, tt.to, got, horizon, tt.want)
			}
		})
	}
}

func TestReset(t *testing.T) {
	m := build(t, record{"ann", "2025-06-01", 10})
	m.Reset()
	if !bytes.Equal(snapshot(t, m), snapshot(t, steps.New())) {
		t.Error("Reset model differs from a new one")
	}
	if _, ok := m.Steps("ann", "2025-06-01"); ok || m.Total("2025-06-01") != 0 || m.Position() != 0 {
		t.Error("Reset left state behind")
	}
}

func randomRecords(rng *rand.Rand, n, users int, dates []string, maxSteps int32) []record {
	out := make([]record, n)
	for i := range out {
		out[i] = record{
			user:  fmt.Sprintf("user-%03d", rng.IntN(users)),
			date:  dates[rng.IntN(len(dates))],
			steps: rng.Int32N(maxSteps + 1),
		}
	}
	return out
}

func TestSnapshotRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dates := []string{"2025-06-01", "2025-06-02", "2025-06-03"}
	tests := []struct {
		name    string
		records []record
	}{
		{"empty", nil},
		{"one_record", []record{{"ann", "2025-06-01", 0}}},
		{"random", randomRecords(rng, 2000, 300, dates, 50)},
		{"odd_ids_and_extreme_counts", []record{
			{"", "2025-06-02", -5}, {"ünï", "2025-06-01", 2147483647}, {"b", "2025-06-01", -2147483648}, {"a", "2025-06-01", 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := build(t, tt.records...)
			data := snapshot(t, orig)
			got := steps.New()
			if err := got.Restore(data); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if !bytes.Equal(snapshot(t, got), data) {
				t.Fatal("snapshot of the restored model differs")
			}
			if got.Position() != orig.Position() {
				t.Errorf("Position = %d, want %d", got.Position(), orig.Position())
			}
			assertSameAnswers(t, got, orig, tt.records)

			// The restored trees must keep working under updates.
			more := randomRecords(rng, 500, 320, dates, 80)
			for i, r := range more {
				e := event(uint64(len(tt.records)+i+1), &stepsv1.StepsRecorded{UserId: r.user, Date: r.date, Steps: r.steps})
				orig.Apply(e)
				got.Apply(e)
			}
			if !bytes.Equal(snapshot(t, got), snapshot(t, orig)) {
				t.Error("restored model diverged after more events")
			}
			assertSameAnswers(t, got, orig, append(tt.records, more...))
		})
	}
}

func assertSameAnswers(tb testing.TB, got, want *steps.Model, records []record) {
	tb.Helper()
	for _, r := range records {
		if g, w := got.Top(r.date, 1<<20), want.Top(r.date, 1<<20); !slices.Equal(g, w) {
			tb.Fatalf("Top(%q) = %v, want %v", r.date, g, w)
		}
		g, gok := got.Rank(r.date, r.user)
		w, wok := want.Rank(r.date, r.user)
		if g != w || gok != wok {
			tb.Fatalf("Rank(%q, %q) = %v, %v; want %v, %v", r.date, r.user, g, gok, w, wok)
		}
	}
}

// snap encodes a snapshot by hand, to make ones Snapshot never would.
type snapDate struct {
	date  string
	users []record // user and steps; date ignored
}

func snap(pos uint64, dates ...snapDate) []byte {
	str := func(b []byte, s string) []byte { return append(binary.AppendUvarint(b, uint64(len(s))), s...) }
	b := binary.AppendUvarint([]byte("tlsteps\x02"), pos)
	b = binary.AppendUvarint(binary.AppendUvarint(b, steps.DefaultWindow), steps.SummaryTop)
	b = binary.AppendUvarint(b, 0) // summaries
	b = binary.AppendUvarint(b, uint64(len(dates)))
	for _, d := range dates {
		b = str(b, d.date)
		b = binary.AppendUvarint(b, uint64(len(d.users)))
		for i, u := range d.users {
			b = str(b, u.user)
			if i == 0 {
				b = binary.AppendVarint(b, int64(u.steps))
			} else {
				b = binary.AppendUvarint(b, uint64(int64(d.users[i-1].steps)-int64(u.steps)))
			}
		}
	}
	return b
}

func TestRestoreRejectsGarbage(t *testing.T) {
	valid := snapshot(t, build(t, record{"ann", "2025-06-01", 10}, record{"bob", "2025-06-01", 10}, record{"ann", "2025-06-02", 3}))
	tests := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"text", []byte("not a snapshot at all")},
		{"json", []byte(`{"days":{}}`)},
		{"other_format_version", append([]byte("tlsteps\x01"), valid[8:]...)},
		{"other_window", func() []byte {
			b := build(t, record{"ann", "2025-06-01", 10})
			other := steps.New(steps.Window(7))
			other.Apply(event(1, &stepsv1.StepsRecorded{UserId: "ann", Date: "2025-06-01", Steps: 10}))
			if bytes.Equal(snapshot(t, b), snapshot(t, other)) {
				t.Fatal("windows of 35 and 7 days give the same snapshot")
			}
			return snapshot(t, other)
		}()},
		{"date_not_a_date", snap(1, snapDate{"June 1st", []record{{user: "ann", steps: 1}}})},
		{"date_before_the_window", snap(1,
			snapDate{"2025-04-01", []record{{user: "ann", steps: 1}}},
			snapDate{"2025-06-01", []record{{user: "ann", steps: 1}}})},
		{"trailing_byte", append(slices.Clone(valid), 0)},
		{"dates_out_of_order", snap(1,
			snapDate{"2025-06-02", []record{{user: "ann", steps: 1}}},
			snapDate{"2025-06-01", []record{{user: "ann", steps: 1}}})},
		{"date_twice", snap(1,
			snapDate{"2025-06-01", []record{{user: "ann", steps: 1}}},
			snapDate{"2025-06-01", []record{{user: "bob", steps: 1}}})},
		{"date_without_users", snap(1, snapDate{"2025-06-01", nil})},
		{"tie_out_of_user_order", snap(1, snapDate{"2025-06-01", []record{{user: "bob", steps: 5}, {user: "ann", steps: 5}}})},
		{"user_twice", snap(1, snapDate{"2025-06-01", []record{{user: "ann", steps: 9}, {user: "ann", steps: 5}}})},
		{"steps_rising", snap(1, snapDate{"2025-06-01", []record{{user: "ann", steps: -2147483648}, {user: "bob", steps: 1}}})},
		{"huge_count", append([]byte("tlsteps\x02\x00\x23\x64\x00"), binary.AppendUvarint(nil, 1<<62)...)},
	}
	for n := range len(valid) {
		tests = append(tests, struct {
			name string
			data []byte
		}{fmt.Sprintf("truncated_to_%d_bytes", n), valid[:n]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := build(t, record{"cat", "2025-06-05", 77})
			before := snapshot(t, m)
			if err := m.Restore(tt.data); err == nil {
				t.Fatal("Restore accepted garbage")
			}
			if !bytes.Equal(snapshot(t, m), before) {
				t.Error("failed Restore changed the model")
			}
		})
	}
}

// TestAnyOrderGivesSameAnswers checks the model against a brute-force one
// that sorts, for random records applied in order and shuffled.
func TestAnyOrderGivesSameAnswers(t *testing.T) {
	dates := []string{"2025-06-01", "2025-06-02", "2025-06-03"}
	for seed := range uint64(5) {
		t.Run(fmt.Sprintf("seed_%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			records := randomRecords(rng, 2000, 300, dates, 40) // small range: many ties
			inOrder := steps.New()
			for i, r := range records {
				inOrder.Apply(event(uint64(i+1), &stepsv1.StepsRecorded{UserId: r.user, Date: r.date, Steps: r.steps}))
				if (i+1)%400 == 0 {
					assertMatchesBruteForce(t, inOrder, records[:i+1], dates)
				}
			}
			shuffled := slices.Clone(records)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			m := build(t, shuffled...)
			assertMatchesBruteForce(t, m, records, dates)
			if !bytes.Equal(snapshot(t, m), snapshot(t, inOrder)) {
				t.Error("shuffled model's snapshot differs from in-order model's")
			}
		})
	}
}

func assertMatchesBruteForce(tb testing.TB, m *steps.Model, records []record, dates []string) {
	tb.Helper()
	best := map[string]map[string]int32{}
	for _, r := range records {
		if best[r.date] == nil {
			best[r.date] = map[string]int32{}
		}
		if old, ok := best[r.date][r.user]; !ok || r.steps > old {
			best[r.date][r.user] = r.steps
		}
	}
	for _, d := range dates {
		var board []steps.Entry
		for u, s := range best[d] {
			board = append(board, steps.Entry{UserID: u, Steps: s})
		}
		slices.SortFunc(board, func(a, b steps.Entry) int {
			return cmp.Or(cmp.Compare(b.Steps, a.Steps), cmp.Compare(a.UserID, b.UserID))
		})
		for i := range board {
			board[i].Rank = int64(i + 1)
		}
		if got := m.Total(d); got != int64(len(board)) {
			tb.Fatalf("Total(%q) = %d, want %d", d, got, len(board))
		}
		if got := m.Top(d, len(board)+5); !slices.Equal(got, board) {
			tb.Fatalf("Top(%q, all) differs from brute force", d)
		}
		if got, want := m.Top(d, 10), board[:min(10, len(board))]; !slices.Equal(got, want) {
			tb.Fatalf("Top(%q, 10) = %v, want %v", d, got, want)
		}
		for _, e := range board {
			if got, ok := m.Rank(d, e.UserID); !ok || got != e {
				tb.Fatalf("Rank(%q, %q) = %v, %v; want %v", d, e.UserID, got, ok, e)
			}
			if got, ok := m.Steps(e.UserID, d); !ok || got != e.Steps {
				tb.Fatalf("Steps(%q, %q) = %d, %v; want %d", e.UserID, d, got, ok, e.Steps)
			}
		}
	}
}

// TestQueriesDuringApply is for the race detector.
func TestQueriesDuringApply(t *testing.T) {
	m := steps.New()
	rng := rand.New(rand.NewPCG(7, 7))
	records := randomRecords(rng, 5000, 500, []string{"2025-06-01", "2025-06-02"}, 1000)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				m.Top("2025-06-01", 10)
				m.Rank("2025-06-01", "user-007")
				m.Range("user-007", "2025-06-01", "2025-06-02")
				m.Total("2025-06-02")
				m.Position()
				if _, err := m.Snapshot(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i, r := range records {
		m.Apply(event(uint64(i+1), &stepsv1.StepsRecorded{UserId: r.user, Date: r.date, Steps: r.steps}))
	}
	close(done)
	wg.Wait()
	assertMatchesBruteForce(t, m, records, []string{"2025-06-01", "2025-06-02"})
}

// TestBatchesApplyAsTheirCounts applies the same counts twice: one
// StepsRecorded each, and grouped into StepsBatchRecorded events as a
// client stream's ingest writes them (a user's counts, runs of one date).
// The two models answer alike.
func TestBatchesApplyAsTheirCounts(t *testing.T) {
	if got, want := steps.New().EventTypes(), []string{"tideline.steps.v1.StepsRecorded", "tideline.steps.v1.StepsBatchRecorded"}; !slices.Equal(got, want) {
		t.Fatalf("EventTypes = %v, want %v", got, want)
	}
	r := rand.New(rand.NewPCG(4, 2))
	users := []string{"ann", "bob", "cat", "dan"}
	dates := []string{"2025-06-01", "2025-06-02", "2025-06-03"}
	var records []record
	for range 3000 {
		records = append(records, record{users[r.IntN(len(users))], dates[r.IntN(len(dates))], r.Int32N(20000)})
	}
	one := build(t, records...)

	batched := steps.New()
	seq := uint64(0)
	for rest := records; len(rest) > 0; {
		// The next batch: up to 40 counts of the first record's user.
		user, n := rest[0].user, 1+r.IntN(40)
		b := &stepsv1.StepsBatchRecorded{UserId: user}
		var left []record
		for _, rec := range rest {
			if rec.user != user || n == 0 {
				left = append(left, rec)
				continue
			}
			n--
			if k := len(b.Days); k == 0 || b.Days[k-1].Date != rec.date {
				b.Days = append(b.Days, &stepsv1.DayCounts{Date: rec.date})
			}
			d := b.Days[len(b.Days)-1]
			d.Steps = append(d.Steps, rec.steps)
		}
		seq++
		batched.Apply(event(seq, b))
		rest = left
	}
	if seq >= uint64(len(records))/2 {
		t.Fatalf("%d batches for %d counts: hardly batched", seq, len(records))
	}
	for _, d := range dates {
		if got, want := batched.Top(d, len(users)), one.Top(d, len(users)); !slices.Equal(got, want) {
			t.Errorf("Top(%s) = %v, want %v", d, got, want)
		}
		if got, want := batched.Total(d), one.Total(d); got != want {
			t.Errorf("Total(%s) = %d, want %d", d, got, want)
		}
		for _, u := range users {
			got, gok := batched.Steps(u, d)
			want, wok := one.Steps(u, d)
			if got != want || gok != wok {
				t.Errorf("Steps(%s, %s) = %d, %v; want %d, %v", u, d, got, gok, want, wok)
			}
		}
	}
}
