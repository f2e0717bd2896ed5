package rewards_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	rewardsmodel "github.com/tideline/tideline/projections/rewards"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

var t0 = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

type model interface{ Apply(es.Event) }

func apply(m model, seq uint64, d proto.Message) {
	m.Apply(es.Event{Data: d, Position: es.Position{Seq: seq}, OccurredAt: t0.Add(time.Duration(seq) * time.Second)})
}

func positions(lines []*rewardsv1.LedgerLine) []uint64 {
	var out []uint64
	for _, l := range lines {
		out = append(out, l.Position)
	}
	return out
}

func TestAccountsLedgerPagesAndBounds(t *testing.T) {
	m := rewardsmodel.NewAccounts()
	n := rewardsmodel.MaxLines + 10
	bal := int64(0)
	for i := 1; i <= n; i++ {
		bal += 10
		apply(m, uint64(i), &rewardsv1.PointsCredited{UserId: "kim", Points: 10, Cause: rewardsv1.Cause_CAUSE_LABEL_ACCEPTED, BalanceAfter: bal})
	}
	apply(m, uint64(n+1), &rewardsv1.PointsDebited{UserId: "kim", Points: 30, Cause: rewardsv1.Cause_CAUSE_RAFFLE_ENTRY, Ref: "raffle:r1", BalanceAfter: bal - 30})
	apply(m, uint64(n+2), &rewardsv1.StampCollected{UserId: "kim", Date: "2026-12-02", Streak: 3})
	if a := m.Account("kim"); a.Balance != bal-30 || a.Streak != 3 || a.LastStampDate != "2026-12-02" {
		t.Fatalf("account %v", a)
	}
	first, next := m.Ledger("kim", 0, 20)
	if len(first) != 20 || first[0].Points != -30 || first[0].Position != uint64(n+1) || next != first[19].Position {
		t.Fatalf("first page %v, next %d", positions(first), next)
	}
	var all []uint64
	for before := uint64(0); ; {
		page, nx := m.Ledger("kim", before, 20)
		all = append(all, positions(page)...)
		if nx == 0 {
			break
		}
		before = nx
	}
	if len(all) != rewardsmodel.MaxLines || all[0] != uint64(n+1) || !slices.IsSortedFunc(all, func(a, b uint64) int { return int(b) - int(a) }) {
		t.Fatalf("pages hold %d lines %v, want the newest %d, newest first", len(all), all, rewardsmodel.MaxLines)
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := rewardsmodel.NewAccounts()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	a, _ := m.Ledger("kim", 0, 50)
	b, _ := r.Ledger("kim", 0, 50)
	if fmt.Sprint(a) != fmt.Sprint(b) || r.Position() != m.Position() || !proto.Equal(r.Account("kim"), m.Account("kim")) {
		t.Fatal("restored model differs")
	}
}

func TestRafflesListDueAndSnapshot(t *testing.T) {
	m := rewardsmodel.NewRaffles()
	open := func(id string, at time.Duration) *rewardsv1.RaffleOpened {
		return &rewardsv1.RaffleOpened{RaffleId: id, Prize: "p-" + id, EntryCost: 5, MaxEntriesPerPerson: 3, Winners: 1, DrawAt: timestamppb.New(t0.Add(at))}
	}
	apply(m, 1, open("late", 2*time.Hour))
	apply(m, 2, open("soon", time.Hour))
	apply(m, 3, open("done", time.Minute))
	apply(m, 4, &rewardsv1.RaffleEntered{RaffleId: "soon", UserId: "kim", EntryId: "e1", Tickets: 2})
	apply(m, 5, &rewardsv1.RaffleEntered{RaffleId: "soon", UserId: "kim", EntryId: "e2", Tickets: 1})
	apply(m, 6, &rewardsv1.RaffleEntered{RaffleId: "soon", UserId: "lee", EntryId: "e3", Tickets: 1})
	apply(m, 7, &rewardsv1.RaffleDrawn{RaffleId: "done", Seed: "00", Winners: []string{}})
	if due := m.Due(t0.Add(time.Hour)); !slices.Equal(due, []string{"soon"}) {
		t.Fatalf("due at +1h: %v", due)
	}
	list := m.List(rewardsv1.RaffleState_RAFFLE_STATE_UNSPECIFIED, "kim", 10)
	var ids []string
	for _, r := range list {
		ids = append(ids, r.RaffleId)
	}
	if !slices.Equal(ids, []string{"soon", "late", "done"}) {
		t.Fatalf("list %v, want open by draw time then drawn", ids)
	}
	if s := list[0]; s.MyTickets != 3 || s.TicketsTotal != 4 || s.Entrants != 2 {
		t.Fatalf("soon: mine %d total %d entrants %d", s.MyTickets, s.TicketsTotal, s.Entrants)
	}
	if drawn := m.List(rewardsv1.RaffleState_RAFFLE_STATE_DRAWN, "kim", 10); len(drawn) != 1 || drawn[0].RaffleId != "done" {
		t.Fatalf("drawn %v", drawn)
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := rewardsmodel.NewRaffles()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"kim", "lee"} {
		a, b := m.List(0, u, 10), r.List(0, u, 10)
		for i := range a {
			if !proto.Equal(a[i], b[i]) {
				t.Fatalf("%s: restored %v, want %v", u, b[i], a[i])
			}
		}
	}
}
