package rewards_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/rewards"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

var now = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func on(c rewards.LedgerCommand) rewards.OnAccount {
	return rewards.OnAccount{UserID: "kim", Command: c}
}

// ledger decides cmds in order from a new account, folding each
// result, and returns the state, the events of the last command and its
// error (earlier errors fail the test).
func ledger(t *testing.T, cmds ...rewards.LedgerCommand) (rewards.Account, []proto.Message, error) {
	t.Helper()
	a := rewards.LedgerDecider.Initial()
	var evs []proto.Message
	var err error
	for i, c := range cmds {
		evs, err = rewards.LedgerDecider.Decide(a, on(c))
		if err != nil && i < len(cmds)-1 {
			t.Fatalf("command %d %T: %v", i, c, err)
		}
		for _, e := range evs {
			a = rewards.LedgerDecider.Evolve(a, e)
		}
	}
	return a, evs, err
}

func credit(points int64, seq uint64) rewards.Credit {
	return rewards.Credit{Points: points, Cause: rewards.CauseLabelAccepted, Ref: "task-1", Source: "labeling", SourceSeq: seq}
}

func stamp(date string, seq uint64) rewards.Stamp {
	return rewards.Stamp{Date: date, Source: "labeling", SourceSeq: seq}
}

func names(evs []proto.Message) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, string(e.ProtoReflect().Descriptor().Name()))
	}
	return out
}

func TestLedger(t *testing.T) {
	debit := func(p int64) rewards.Debit {
		return rewards.Debit{Points: p, Cause: rewards.CauseRaffleEntry, Ref: "raffle:r1"}
	}
	cases := []struct {
		name    string
		cmds    []rewards.LedgerCommand
		balance int64
		events  []string
		err     error  // the last command's, matched by errors.Is
		field   string // of an Invalid error
	}{
		{"credit_adds", []rewards.LedgerCommand{credit(10, 1)}, 10, []string{"PointsCredited"}, nil, ""},
		{"same_commit_again_credits_nothing", []rewards.LedgerCommand{credit(10, 1), credit(10, 1)}, 10, []string{}, nil, ""},
		{"older_commit_credits_nothing", []rewards.LedgerCommand{credit(10, 5), credit(10, 3)}, 10, []string{}, nil, ""},
		{"next_commit_credits", []rewards.LedgerCommand{credit(10, 1), credit(5, 2)}, 15, []string{"PointsCredited"}, nil, ""},
		{"another_source_has_its_own_marks", []rewards.LedgerCommand{credit(10, 5),
			rewards.Credit{Points: 1, Cause: rewards.CauseMissionCompleted, Source: "missions", SourceSeq: 2}}, 11, []string{"PointsCredited"}, nil, ""},
		{"credit_needs_points", []rewards.LedgerCommand{credit(0, 1)}, 0, nil, nil, "points"},
		{"credit_needs_a_reaction_cause", []rewards.LedgerCommand{rewards.Credit{Points: 1, Cause: rewards.CauseRaffleRefund, Source: "x", SourceSeq: 1}}, 0, nil, nil, "cause"},
		{"credit_needs_a_source", []rewards.LedgerCommand{rewards.Credit{Points: 1, Cause: rewards.CauseLabelAccepted, SourceSeq: 1}}, 0, nil, nil, "source"},
		{"credit_needs_a_source_seq", []rewards.LedgerCommand{rewards.Credit{Points: 1, Cause: rewards.CauseLabelAccepted, Source: "x"}}, 0, nil, nil, "source_seq"},
		{"debit_within_balance", []rewards.LedgerCommand{credit(10, 1), debit(10)}, 0, []string{"PointsDebited"}, nil, ""},
		{"debit_past_balance_is_refused", []rewards.LedgerCommand{credit(10, 1), debit(11)}, 10, nil, rewards.ErrInsufficientPoints, ""},
		{"debit_of_empty_account_is_refused", []rewards.LedgerCommand{debit(1)}, 0, nil, rewards.ErrInsufficientPoints, ""},
		{"adjust_credits", []rewards.LedgerCommand{rewards.Adjust{Points: 7, Reason: "goodwill"}}, 7, []string{"PointsCredited"}, nil, ""},
		{"adjust_debits", []rewards.LedgerCommand{credit(10, 1), rewards.Adjust{Points: -4, Reason: "duplicate label"}}, 6, []string{"PointsDebited"}, nil, ""},
		{"adjust_never_below_zero", []rewards.LedgerCommand{credit(3, 1), rewards.Adjust{Points: -4, Reason: "x"}}, 3, nil, rewards.ErrInsufficientPoints, ""},
		{"adjust_needs_a_reason", []rewards.LedgerCommand{rewards.Adjust{Points: 4, Reason: "  "}}, 0, nil, nil, "reason"},
		{"adjust_needs_points", []rewards.LedgerCommand{rewards.Adjust{Points: 0, Reason: "x"}}, 0, nil, nil, "points"},
		{"refund_credits_once", []rewards.LedgerCommand{credit(10, 1), debit(4), rewards.Refund{RaffleID: "r1", EntryID: "e1", Points: 4},
			rewards.Refund{RaffleID: "r1", EntryID: "e1", Points: 4}}, 10, []string{}, nil, ""},
		{"stamp", []rewards.LedgerCommand{stamp("2026-12-01", 1)}, 0, []string{"StampCollected"}, nil, ""},
		{"stamp_same_date_again_is_nothing", []rewards.LedgerCommand{stamp("2026-12-01", 1), stamp("2026-12-01", 2)}, 0, []string{}, nil, ""},
		{"stamp_earlier_date_is_nothing", []rewards.LedgerCommand{stamp("2026-12-02", 1), stamp("2026-12-01", 2)}, 0, []string{}, nil, ""},
		{"stamp_same_commit_is_nothing", []rewards.LedgerCommand{stamp("2026-12-01", 4), stamp("2026-12-02", 4)}, 0, []string{}, nil, ""},
		{"stamp_bad_date", []rewards.LedgerCommand{stamp("2026-13-01", 1)}, 0, nil, nil, "date"},
		{"credit_and_stamp_of_one_commit_both_count", []rewards.LedgerCommand{credit(10, 3), stamp("2026-12-01", 3)}, 10, []string{"StampCollected"}, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, evs, err := ledger(t, tc.cmds...)
			switch {
			case tc.field != "":
				var e *es.Error
				if !errors.As(err, &e) || e.Kind != es.Invalid || e.Field != tc.field {
					t.Fatalf("err = %v, want Invalid naming %s", err, tc.field)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if got := names(evs); !slices.Equal(got, tc.events) {
					t.Errorf("last command appended %v, want %v", got, tc.events)
				}
			}
			if a.Balance != tc.balance || a.Balance < 0 {
				t.Errorf("balance = %d, want %d", a.Balance, tc.balance)
			}
		})
	}
}

func TestStreak(t *testing.T) {
	day := func(d int) string {
		return time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d).Format(rewards.DateLayout)
	}
	a := rewards.LedgerDecider.Initial()
	var last []proto.Message
	seq := uint64(0)
	collect := func(d int) {
		seq++
		evs, err := rewards.LedgerDecider.Decide(a, on(stamp(day(d), seq)))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			a = rewards.LedgerDecider.Evolve(a, e)
		}
		last = evs
	}
	for d := range 6 { // days 0..5 across a month's end
		collect(d)
	}
	if a.Streak != 6 || a.Balance != 0 || a.LastStamp != "2026-12-05" {
		t.Fatalf("after 6 days: streak %d balance %d last %s", a.Streak, a.Balance, a.LastStamp)
	}
	collect(6)
	if a.Streak != 7 || a.Balance != rewards.StreakBonus || !slices.Equal(names(last), []string{"StampCollected", "PointsCredited"}) {
		t.Fatalf("day 7: streak %d balance %d events %v, want the bonus", a.Streak, a.Balance, names(last))
	}
	if c := last[1].(*rewardsv1.PointsCredited); c.Cause != rewards.CauseStreakBonus || c.Ref != "streak:2026-12-06" {
		t.Fatalf("bonus %v", c)
	}
	collect(8) // a gap of one day starts again
	if a.Streak != 1 {
		t.Fatalf("after a gap: streak %d, want 1", a.Streak)
	}
	for d := 9; d <= 21; d++ {
		collect(d)
	}
	if a.Streak != 14 || a.Balance != 3*rewards.StreakBonus {
		t.Fatalf("14 days after the gap: streak %d balance %d, want two more bonuses", a.Streak, a.Balance)
	}
}

var seed = []byte("0123456789abcdef0123456789abcdef")

func seedHash() string {
	s := sha256.Sum256(seed)
	return hex.EncodeToString(s[:])
}

func openCmd() rewards.Open {
	return rewards.Open{ID: "r1", Prize: "coffee voucher", EntryCost: 10, MaxPerPerson: 3, Winners: 2,
		DrawAt: now.Add(time.Hour), SeedSHA256: seedHash(), OpenedBy: "ada", Now: now}
}

func raffle(t *testing.T, cmds ...rewards.RaffleCommand) (rewards.Raffle, []proto.Message, error) {
	t.Helper()
	r := rewards.RaffleDecider.Initial()
	var evs []proto.Message
	var err error
	for i, c := range cmds {
		evs, err = rewards.RaffleDecider.Decide(r, c)
		if err != nil && i < len(cmds)-1 {
			t.Fatalf("command %d %T: %v", i, c, err)
		}
		for _, e := range evs {
			r = rewards.RaffleDecider.Evolve(r, e)
		}
	}
	return r, evs, err
}

func TestRaffle(t *testing.T) {
	enter := func(user, id string, n int32) rewards.Enter {
		return rewards.Enter{UserID: user, EntryID: id, Tickets: n, Now: now}
	}
	draw := rewards.Draw{Seed: seed, Now: now.Add(time.Hour)}
	other := openCmd()
	other.Prize = "another"
	past := openCmd()
	past.DrawAt = now
	cases := []struct {
		name   string
		cmds   []rewards.RaffleCommand
		events []string
		err    error
		field  string
	}{
		{"open", []rewards.RaffleCommand{openCmd()}, []string{"RaffleOpened"}, nil, ""},
		{"open_again_is_nothing", []rewards.RaffleCommand{openCmd(), openCmd()}, []string{}, nil, ""},
		{"open_id_with_other_terms", []rewards.RaffleCommand{openCmd(), other}, nil, rewards.ErrRaffleExists, ""},
		{"open_draw_not_in_future", []rewards.RaffleCommand{past}, nil, nil, "draw_at"},
		{"enter", []rewards.RaffleCommand{openCmd(), enter("kim", "e1", 2)}, []string{"RaffleEntered"}, nil, ""},
		{"enter_same_entry_again_is_nothing", []rewards.RaffleCommand{openCmd(), enter("kim", "e1", 2), enter("kim", "e1", 2)}, []string{}, nil, ""},
		{"enter_past_max_per_person", []rewards.RaffleCommand{openCmd(), enter("kim", "e1", 2), enter("kim", "e2", 2)}, nil, rewards.ErrTooManyTickets, ""},
		{"others_have_their_own_max", []rewards.RaffleCommand{openCmd(), enter("kim", "e1", 3), enter("lee", "e2", 3)}, []string{"RaffleEntered"}, nil, ""},
		{"enter_unknown_raffle", []rewards.RaffleCommand{enter("kim", "e1", 1)}, nil, rewards.ErrRaffleNotFound, ""},
		{"enter_at_draw_time", []rewards.RaffleCommand{openCmd(), rewards.Enter{UserID: "kim", EntryID: "e1", Tickets: 1, Now: now.Add(time.Hour)}}, nil, rewards.ErrRaffleClosed, ""},
		{"enter_after_draw", []rewards.RaffleCommand{openCmd(), draw, enter("kim", "e1", 1)}, nil, rewards.ErrRaffleDrawn, ""},
		{"entry_recorded_before_draw_stays_recorded", []rewards.RaffleCommand{openCmd(), enter("kim", "e1", 1), draw, enter("kim", "e1", 1)}, []string{}, nil, ""},
		{"draw_before_time", []rewards.RaffleCommand{openCmd(), rewards.Draw{Seed: seed, Now: now}}, nil, rewards.ErrNotDue, ""},
		{"draw_with_wrong_seed", []rewards.RaffleCommand{openCmd(), rewards.Draw{Seed: []byte("x"), Now: now.Add(time.Hour)}}, nil, rewards.ErrSeedMismatch, ""},
		{"draw_without_entries", []rewards.RaffleCommand{openCmd(), draw}, []string{"RaffleDrawn"}, nil, ""},
		{"draw_twice_is_nothing", []rewards.RaffleCommand{openCmd(), draw, draw}, []string{}, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, evs, err := raffle(t, tc.cmds...)
			switch {
			case tc.field != "":
				var e *es.Error
				if !errors.As(err, &e) || e.Kind != es.Invalid || e.Field != tc.field {
					t.Fatalf("err = %v, want Invalid naming %s", err, tc.field)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if got := names(evs); !slices.Equal(got, tc.events) {
					t.Errorf("last command appended %v, want %v", got, tc.events)
				}
			}
		})
	}
}

func TestValidateOpen(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*rewards.Open)
		field string
	}{
		{"valid", func(*rewards.Open) {}, ""},
		{"no_prize", func(o *rewards.Open) { o.Prize = "" }, "prize"},
		{"long_prize", func(o *rewards.Open) { o.Prize = string(make([]byte, 201)) }, "prize"},
		{"free_entry", func(o *rewards.Open) { o.EntryCost = 0 }, "entry_cost"},
		{"no_entries", func(o *rewards.Open) { o.MaxPerPerson = 0 }, "max_entries_per_person"},
		{"no_winners", func(o *rewards.Open) { o.Winners = 0 }, "winners"},
		{"draw_in_past", func(o *rewards.Open) { o.DrawAt = now.Add(-time.Second) }, "draw_at"},
		{"bad_id", func(o *rewards.Open) { o.ID = "a.b" }, "raffle_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := openCmd()
			tc.edit(&o)
			err := rewards.ValidateOpen(o, now)
			var e *es.Error
			if tc.field == "" && err != nil || tc.field != "" && (!errors.As(err, &e) || e.Field != tc.field || e.Kind != es.Invalid) {
				t.Fatalf("err = %v, want field %q", err, tc.field)
			}
		})
	}
}

func TestDrawWinners(t *testing.T) {
	var tickets []rewards.Ticket
	for _, u := range []string{"a", "b", "b", "c", "c", "c", "d"} {
		tickets = append(tickets, rewards.Ticket{UserID: u})
	}
	w := rewards.DrawWinners(seed, tickets, 3)
	if len(w) != 3 || len(slices.Compact(slices.Sorted(slices.Values(w)))) != 3 {
		t.Fatalf("winners %v: want 3 distinct", w)
	}
	if again := rewards.DrawWinners(seed, tickets, 3); !slices.Equal(w, again) {
		t.Fatalf("not deterministic: %v then %v", w, again)
	}
	if all := rewards.DrawWinners(seed, tickets, 10); len(all) != 4 {
		t.Fatalf("k past the entrants: %v, want all 4", all)
	}
	if none := rewards.DrawWinners(seed, nil, 3); len(none) != 0 {
		t.Fatalf("no tickets: %v", none)
	}
	// More tickets, more chances: over many seeds c (3 of 7 tickets) wins
	// the first draw about 3/7 of the time.
	wins := 0
	const n = 7000
	for i := range n {
		s := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		if rewards.DrawWinners(s[:], tickets, 1)[0] == "c" {
			wins++
		}
	}
	if got := float64(wins) / n; got < 0.40 || got > 0.46 {
		t.Fatalf("c won %.3f of first draws, want about %.3f", got, 3.0/7)
	}
}
