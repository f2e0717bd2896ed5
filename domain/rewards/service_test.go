package rewards_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/rewards"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

var admin = auth.Principal{Subject: "ada", Role: auth.Admin}

// fixedSeeds is a Seeds in memory.
type fixedSeeds struct{}

func (fixedSeeds) Seed(_ context.Context, id string) ([]byte, error) {
	return []byte("seed-of-" + id), nil
}

// countingStore counts the appends that conflicted.
type countingStore struct {
	es.Store
	conflicts atomic.Int64
}

func (s *countingStore) Append(ctx context.Context, stream es.StreamID, events []proto.Message, opts es.AppendOptions) (es.AppendResult, error) {
	res, err := s.Store.Append(ctx, stream, events, opts)
	if errors.Is(err, es.ErrConflict) {
		s.conflicts.Add(1)
	}
	return res, err
}

func openStore(tb testing.TB) *countingStore {
	tb.Helper()
	_, nc := natstest.Start(tb)
	s, err := jetstream.Open(context.Background(), nc, jetstream.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return &countingStore{Store: s}
}

// debitAll runs n debits of points on user's account at once, spread
// over services (each with its own cache, as on several API nodes), and
// returns how many succeeded; every other must be ErrInsufficientPoints.
func debitAll(tb testing.TB, svcs []*rewards.Service, user string, n int, points int64) int {
	tb.Helper()
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = svcs[i%len(svcs)].Adjust(context.Background(), admin, user, -points, fmt.Sprintf("debit %d", i))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, rewards.ErrInsufficientPoints):
			tb.Fatalf("debit %d: %v (kind %v), want success or ErrInsufficientPoints", i, err, es.KindOf(err))
		}
	}
	return ok
}

// TestConcurrentDebitsNeverOverdraw races 100 debits of 10 points on an
// account of 375 through the real JetStream store: exactly the 37
// affordable succeed, the balance ends at 5, and no line of the stored
// ledger is below zero.
func TestConcurrentDebitsNeverOverdraw(t *testing.T) {
	store := openStore(t)
	ctx := context.Background()
	svcs := []*rewards.Service{rewards.NewService(store, fixedSeeds{}, nil), rewards.NewService(store, fixedSeeds{}, nil),
		rewards.NewService(store, fixedSeeds{}, nil), rewards.NewService(store, fixedSeeds{}, nil)}
	if _, err := svcs[0].Adjust(ctx, admin, "kim", 375, "start"); err != nil {
		t.Fatal(err)
	}
	if ok := debitAll(t, svcs, "kim", 100, 10); ok != 37 {
		t.Fatalf("%d debits succeeded, want 37", ok)
	}
	a, _, err := rewards.NewService(store, fixedSeeds{}, nil).Account(ctx, admin, "kim")
	if err != nil || a.Balance != 5 {
		t.Fatalf("balance %d (%v), want 5", a.Balance, err)
	}
	commits, _, err := store.Load(ctx, rewards.AccountStream("kim"), 0)
	if err != nil {
		t.Fatal(err)
	}
	bal := int64(0)
	for _, c := range commits {
		for _, e := range c.Events {
			switch d := e.Data.(type) {
			case *rewardsv1.PointsCredited:
				bal += d.Points
			case *rewardsv1.PointsDebited:
				bal -= d.Points
			}
			if bal < 0 {
				t.Fatalf("balance below zero at commit %d", c.Seq)
			}
		}
	}
	t.Logf("%d conflicts retried", store.conflicts.Load())
}

// TestSettleEntry is the safety net of a process that stopped between
// paying for an entry and recording it: the reaction records the entry
// while the raffle takes it, refunds it once it does not, and does either
// once however often it runs.
func TestSettleEntry(t *testing.T) {
	store := openStore(t)
	ctx := context.Background()
	clock := time.Now()
	svc := rewards.NewService(store, fixedSeeds{}, func() time.Time { return clock })
	if _, err := svc.Adjust(ctx, admin, "kim", 100, "start"); err != nil {
		t.Fatal(err)
	}
	r, _, err := svc.OpenRaffle(ctx, admin, rewards.Open{ID: "r1", Prize: "mug", EntryCost: 10, MaxPerPerson: 5, Winners: 1, DrawAt: clock.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// A debit whose call stopped before recording its entry.
	paid := func(points int64) (uint64, *rewardsv1.PointsDebited) {
		a, version, err := svc.Account(ctx, admin, "kim")
		if err != nil {
			t.Fatal(err)
		}
		d := &rewardsv1.PointsDebited{UserId: "kim", Points: points, Cause: rewardsv1.Cause_CAUSE_RAFFLE_ENTRY, Ref: rewards.RaffleRef(r.ID), BalanceAfter: a.Balance - points}
		res, err := store.Append(ctx, rewards.AccountStream("kim"), []proto.Message{d}, es.AppendOptions{ExpectedVersion: int64(version)})
		if err != nil {
			t.Fatal(err)
		}
		return res.Position.Seq, d
	}
	seq, d := paid(20)
	for range 2 {
		if err := svc.SettleEntry(ctx, seq, d); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := svc.Raffle(ctx, admin, r.ID)
	if err != nil || len(got.Entries) != 1 || got.Entries[0].ID != rewards.EntryID("kim", seq) || got.Entries[0].Tickets != 2 {
		t.Fatalf("entries %+v (%v): want kim's 2 tickets recorded once", got.Entries, err)
	}
	clock = clock.Add(time.Hour) // past the draw time: entries are refused
	seq, d = paid(30)
	for range 2 {
		if err := svc.SettleEntry(ctx, seq, d); err != nil {
			t.Fatal(err)
		}
	}
	a, _, err := svc.Account(ctx, admin, "kim")
	if err != nil || a.Balance != 80 || !a.Refunded[rewards.EntryID("kim", seq)] {
		t.Fatalf("balance %d refunded %v (%v): want 80, the refused entry refunded once", a.Balance, a.Refunded, err)
	}
	if _, err := svc.Draw(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	got, _, _ = svc.Raffle(ctx, admin, r.ID)
	if !got.Drawn || len(got.Won) != 1 || got.Won[0] != "kim" {
		t.Fatalf("drawn %v winners %v", got.Drawn, got.Won)
	}
}

// TestEnterRefundsWhatTheRaffleRefuses: an entry paid for, then refused
// by the raffle (here: the draw time came between the check and the
// record, as the clock moves on), is refunded and the call fails with
// the raffle's reason.
func TestEnterRefundsWhatTheRaffleRefuses(t *testing.T) {
	store := openStore(t)
	ctx := context.Background()
	base := time.Now()
	var calls atomic.Int64
	// Once counting, the clock passes the draw time after its first
	// reading: Enter's check before paying.
	calls.Store(-1 << 30)
	clock := func() time.Time {
		if calls.Add(1) > 1 {
			return base.Add(2 * time.Hour)
		}
		return base
	}
	svc := rewards.NewService(store, fixedSeeds{}, clock)
	if _, err := svc.Adjust(ctx, admin, "kim", 50, "start"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.OpenRaffle(ctx, admin, rewards.Open{ID: "r2", Prize: "mug", EntryCost: 10, MaxPerPerson: 5, Winners: 1, DrawAt: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	calls.Store(0)
	_, err := svc.Enter(ctx, auth.Principal{Subject: "kim", Role: auth.Labeler}, "r2", 2, "")
	if !errors.Is(err, rewards.ErrRaffleClosed) {
		t.Fatalf("err = %v, want ErrRaffleClosed", err)
	}
	a, _, err := svc.Account(ctx, admin, "kim")
	if err != nil || a.Balance != 50 || len(a.Refunded) != 1 {
		t.Fatalf("balance %d refunds %v (%v): want 50 after a refund", a.Balance, a.Refunded, err)
	}
}

// TestEnterWithAKeyPaysOnce: the same entry asked again with its
// idempotency key — at once, concurrently, or after its debit was paid
// but not recorded (a crash) — pays once and records once; another key
// is another entry.
func TestEnterWithAKeyPaysOnce(t *testing.T) {
	store := openStore(t)
	ctx := context.Background()
	svc := rewards.NewService(store, fixedSeeds{}, nil)
	kim := auth.Principal{Subject: "kim", Role: auth.Labeler}
	if _, err := svc.Adjust(ctx, admin, "kim", 100, "start"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.OpenRaffle(ctx, admin, rewards.Open{ID: "r3", Prize: "mug", EntryCost: 10, MaxPerPerson: 5, Winners: 1, DrawAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := svc.Enter(ctx, kim, "r3", 2, "tap-1")
			if err != nil {
				t.Error(err)
			}
			ids[i] = e.EntryID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != rewards.KeyedEntryID("kim", "r3", "tap-1") {
			t.Fatalf("entry ids %v", ids)
		}
	}
	// A debit paid but never recorded (the process stopped): the retry
	// records it without paying again.
	if _, err := store.Append(ctx, rewards.AccountStream("kim"), []proto.Message{&rewardsv1.PointsDebited{UserId: "kim", Points: 20,
		Cause: rewards.CauseRaffleEntry, Ref: rewards.RaffleRef("r3"), BalanceAfter: 60, EntryId: rewards.KeyedEntryID("kim", "r3", "tap-2")}},
		es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	e, err := svc.Enter(ctx, kim, "r3", 2, "tap-2")
	if err != nil || e.Balance != 60 {
		t.Fatalf("retry after a crash: %+v %v", e, err)
	}
	r, _, err := svc.Raffle(ctx, admin, "r3")
	if err != nil || len(r.Entries) != 2 || r.TicketsOf("kim") != 4 {
		t.Fatalf("entries %+v (%v): want two of 2 tickets", r.Entries, err)
	}
	a, _, err := svc.Account(ctx, admin, "kim")
	if err != nil || a.Balance != 60 {
		t.Fatalf("balance %d (%v), want 100 - 2 entries × 20", a.Balance, err)
	}
}
