package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/rewards"
	"github.com/tideline/tideline/internal/poll"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/rewards/v1/rewardsv1connect"
)

// rewardsServer starts a server that looks for raffles to draw every
// 50 ms.
func rewardsServer(t *testing.T) (rewardsv1connect.RewardsServiceClient, func(sub string, role auth.Role) string, func() uint64) {
	t.Helper()
	f := start(t, func(m *server.Main) { m.Config.RaffleTick = 50 * time.Millisecond })
	c := rewardsv1connect.NewRewardsServiceClient(h2c, f.URL)
	return c, func(sub string, role auth.Role) string { return f.Token(t, sub, role) }, func() uint64 { return f.Last(t) }
}

// Bad input is InvalidArgument naming the field, and appends nothing;
// callers without the role are PermissionDenied.
func TestRewardsRefusesBadInput(t *testing.T) {
	t.Parallel()
	c, token, last := rewardsServer(t)
	ctx := context.Background()
	ada, kim := token("ada", auth.Admin), token("kim", auth.Labeler)
	future := timestamppb.New(time.Now().Add(time.Hour))
	open := func(edit func(*rewardsv1.OpenRaffleRequest)) func() error {
		return func() error {
			req := &rewardsv1.OpenRaffleRequest{Prize: "a mug", EntryCost: 5, MaxEntriesPerPerson: 2, Winners: 1, DrawAt: future}
			edit(req)
			_, err := c.OpenRaffle(ctx, withToken(req, ada))
			return err
		}
	}
	cases := []struct {
		name  string
		call  func() error
		code  connect.Code
		field string
	}{
		{"adjust_without_reason", func() error {
			_, err := c.AdjustPoints(ctx, withToken(&rewardsv1.AdjustPointsRequest{UserId: "kim", Points: 5}, ada))
			return err
		}, connect.CodeInvalidArgument, "reason"},
		{"adjust_zero_points", func() error {
			_, err := c.AdjustPoints(ctx, withToken(&rewardsv1.AdjustPointsRequest{UserId: "kim", Reason: "x"}, ada))
			return err
		}, connect.CodeInvalidArgument, "points"},
		{"adjust_bad_user", func() error {
			_, err := c.AdjustPoints(ctx, withToken(&rewardsv1.AdjustPointsRequest{UserId: "a.b", Points: 5, Reason: "x"}, ada))
			return err
		}, connect.CodeInvalidArgument, "user_id"},
		{"adjust_below_zero", func() error {
			_, err := c.AdjustPoints(ctx, withToken(&rewardsv1.AdjustPointsRequest{UserId: "kim", Points: -5, Reason: "x"}, ada))
			return err
		}, connect.CodeFailedPrecondition, ""},
		{"adjust_by_labeler", func() error {
			_, err := c.AdjustPoints(ctx, withToken(&rewardsv1.AdjustPointsRequest{UserId: "kim", Points: 5, Reason: "x"}, kim))
			return err
		}, connect.CodePermissionDenied, ""},
		{"open_without_prize", open(func(r *rewardsv1.OpenRaffleRequest) { r.Prize = "" }), connect.CodeInvalidArgument, "prize"},
		{"open_long_prize", open(func(r *rewardsv1.OpenRaffleRequest) { r.Prize = strings.Repeat("x", 201) }), connect.CodeInvalidArgument, "prize"},
		{"open_free", open(func(r *rewardsv1.OpenRaffleRequest) { r.EntryCost = 0 }), connect.CodeInvalidArgument, "entry_cost"},
		{"open_no_entries", open(func(r *rewardsv1.OpenRaffleRequest) { r.MaxEntriesPerPerson = 0 }), connect.CodeInvalidArgument, "max_entries_per_person"},
		{"open_no_winners", open(func(r *rewardsv1.OpenRaffleRequest) { r.Winners = 0 }), connect.CodeInvalidArgument, "winners"},
		{"open_draw_in_past", open(func(r *rewardsv1.OpenRaffleRequest) { r.DrawAt = timestamppb.New(time.Now().Add(-time.Minute)) }), connect.CodeInvalidArgument, "draw_at"},
		{"open_no_draw_time", open(func(r *rewardsv1.OpenRaffleRequest) { r.DrawAt = nil }), connect.CodeInvalidArgument, "draw_at"},
		{"open_bad_id", open(func(r *rewardsv1.OpenRaffleRequest) { r.RaffleId = "a b" }), connect.CodeInvalidArgument, "raffle_id"},
		{"open_by_labeler", func() error {
			_, err := c.OpenRaffle(ctx, withToken(&rewardsv1.OpenRaffleRequest{Prize: "x", EntryCost: 1, MaxEntriesPerPerson: 1, Winners: 1, DrawAt: future}, kim))
			return err
		}, connect.CodePermissionDenied, ""},
		{"enter_negative_tickets", func() error {
			_, err := c.EnterRaffle(ctx, withToken(&rewardsv1.EnterRaffleRequest{RaffleId: "r1", Tickets: -1}, kim))
			return err
		}, connect.CodeInvalidArgument, "tickets"},
		{"enter_unknown_raffle", func() error {
			_, err := c.EnterRaffle(ctx, withToken(&rewardsv1.EnterRaffleRequest{RaffleId: "nope"}, kim))
			return err
		}, connect.CodeNotFound, ""},
		{"ledger_limit", func() error {
			_, err := c.ListLedger(ctx, withToken(&rewardsv1.ListLedgerRequest{Limit: 99}, kim))
			return err
		}, connect.CodeInvalidArgument, "limit"},
		{"another_account", func() error {
			_, err := c.GetAccount(ctx, withToken(&rewardsv1.GetAccountRequest{UserId: "lee"}, kim))
			return err
		}, connect.CodePermissionDenied, ""},
		{"device_account", func() error {
			_, err := c.GetAccount(ctx, withToken(&rewardsv1.GetAccountRequest{}, token("dev1", auth.Device)))
			return err
		}, connect.CodePermissionDenied, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := last()
			err := tc.call()
			if connect.CodeOf(err) != tc.code {
				t.Fatalf("code = %v (%v), want %v", connect.CodeOf(err), err, tc.code)
			}
			if tc.field != "" && !strings.HasPrefix(err.(*connect.Error).Message(), tc.field+": ") {
				t.Fatalf("message %q does not name %s", err.(*connect.Error).Message(), tc.field)
			}
			if after := last(); after != before {
				t.Fatalf("a refused call appended: position %d → %d", before, after)
			}
		})
	}
}

// Points, a raffle, entries, the ticker's draw, and anyone recomputing
// the winners from what GetRaffle reveals.
func TestRewardsRaffleEndToEnd(t *testing.T) {
	t.Parallel()
	c, token, _ := rewardsServer(t)
	ctx := context.Background()
	ada := token("ada", auth.Admin)
	people := []string{"kim", "lee", "park", "choi"}
	tok := map[string]string{}
	for _, p := range people {
		tok[p] = token(p, auth.Labeler)
		if _, err := c.AdjustPoints(ctx, withToken(&rewardsv1.AdjustPointsRequest{UserId: p, Points: 100, Reason: "welcome"}, ada)); err != nil {
			t.Fatal(err)
		}
	}
	drawAt := time.Now().Add(2 * time.Second)
	opened, err := c.OpenRaffle(ctx, withToken(&rewardsv1.OpenRaffleRequest{Prize: "gift card", EntryCost: 10,
		MaxEntriesPerPerson: 3, Winners: 2, DrawAt: timestamppb.New(drawAt)}, ada))
	if err != nil {
		t.Fatal(err)
	}
	r := opened.Msg.Raffle
	if r.Seed != "" || len(r.SeedSha256) != 64 || r.State != rewardsv1.RaffleState_RAFFLE_STATE_OPEN {
		t.Fatalf("opened raffle %v: want the seed's hash, not the seed", r)
	}
	again, err := c.OpenRaffle(ctx, withToken(&rewardsv1.OpenRaffleRequest{Prize: "gift card", EntryCost: 10,
		MaxEntriesPerPerson: 3, Winners: 2, DrawAt: timestamppb.New(drawAt)}, ada))
	if err != nil || again.Msg.Raffle.RaffleId != r.RaffleId || again.Msg.Raffle.SeedSha256 != r.SeedSha256 {
		t.Fatalf("the same open again: %v, %v; want the same raffle", again, err)
	}
	for i, p := range people {
		res, err := c.EnterRaffle(ctx, withToken(&rewardsv1.EnterRaffleRequest{RaffleId: r.RaffleId, Tickets: int32(i%3 + 1)}, tok[p]))
		if err != nil {
			t.Fatalf("%s enters: %v", p, err)
		}
		if want := int64(100 - 10*(i%3+1)); res.Msg.Balance != want || res.Msg.EntryId == "" {
			t.Fatalf("%s: balance %d entry %q, want %d", p, res.Msg.Balance, res.Msg.EntryId, want)
		}
	}
	// Past the maximum per person: refused before any point is spent.
	_, err = c.EnterRaffle(ctx, withToken(&rewardsv1.EnterRaffleRequest{RaffleId: r.RaffleId, Tickets: 3}, tok["kim"]))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("kim's 4th ticket: %v, want FailedPrecondition", err)
	}
	acct, err := c.GetAccount(ctx, withToken(&rewardsv1.GetAccountRequest{}, tok["kim"]))
	if err != nil || acct.Msg.Account.Balance != 90 {
		t.Fatalf("kim's account %v, %v: want 90", acct, err)
	}
	// Not enough points.
	broke := token("broke", auth.Walker)
	if _, err := c.EnterRaffle(ctx, withToken(&rewardsv1.EnterRaffleRequest{RaffleId: r.RaffleId}, broke)); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("entering without points: %v, want FailedPrecondition", err)
	}
	led, err := c.ListLedger(ctx, withToken(&rewardsv1.ListLedgerRequest{MinPosition: acct.Msg.Account.Version}, tok["kim"]))
	if err != nil || len(led.Msg.Lines) != 2 || led.Msg.Lines[0].Points != -10 || led.Msg.Lines[0].Cause != rewardsv1.Cause_CAUSE_RAFFLE_ENTRY ||
		led.Msg.Lines[1].Cause != rewardsv1.Cause_CAUSE_ADMIN_ADJUSTMENT || led.Msg.Lines[1].Reason != "welcome" {
		t.Fatalf("kim's ledger %v, %v", led, err)
	}
	list, err := c.ListRaffles(ctx, withToken(&rewardsv1.ListRafflesRequest{State: rewardsv1.RaffleState_RAFFLE_STATE_OPEN, MinPosition: acct.Msg.Account.Version}, tok["lee"]))
	if err != nil || len(list.Msg.Raffles) != 1 || list.Msg.Raffles[0].MyTickets != 2 || list.Msg.Raffles[0].TicketsTotal != 7 {
		t.Fatalf("open raffles %v, %v", list, err)
	}

	var drawn *rewardsv1.Raffle
	poll.Until(t, 10*time.Second, "the ticker to draw the raffle", func() bool {
		res, err := c.GetRaffle(ctx, withToken(&rewardsv1.GetRaffleRequest{RaffleId: r.RaffleId}, tok["kim"]))
		if err != nil {
			t.Fatal(err)
		}
		drawn = res.Msg.Raffle
		return drawn.State == rewardsv1.RaffleState_RAFFLE_STATE_DRAWN
	})
	// Verify the draw from what GetRaffle reveals, as anyone could.
	seed, err := hex.DecodeString(drawn.Seed)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(seed); hex.EncodeToString(sum[:]) != r.SeedSha256 {
		t.Fatal("the revealed seed does not match the hash published at opening")
	}
	var tickets []rewards.Ticket
	for _, e := range drawn.Entries {
		for range e.Tickets {
			tickets = append(tickets, rewards.Ticket{UserID: e.UserId})
		}
	}
	if len(tickets) != 7 || drawn.TicketsTotal != 7 {
		t.Fatalf("entries %v", drawn.Entries)
	}
	if want := rewards.DrawWinners(seed, tickets, int(drawn.WinnersCount)); len(drawn.Winners) != 2 || !slices.Equal(drawn.Winners, want) {
		t.Fatalf("winners %v, recomputed %v", drawn.Winners, want)
	}
	if _, err := c.EnterRaffle(ctx, withToken(&rewardsv1.EnterRaffleRequest{RaffleId: r.RaffleId}, tok["choi"])); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("entering a drawn raffle: %v, want FailedPrecondition", err)
	}
}
