package api

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/rewards"
	rewardsmodel "github.com/tideline/tideline/projections/rewards"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/rewards/v1/rewardsv1connect"
)

// Rewards are the rewards read models and their runners.
type Rewards struct {
	Accounts     *rewardsmodel.Accounts
	AccountsFeed ReadModel
	Raffles      *rewardsmodel.Raffles
	RafflesFeed  ReadModel
}

// RewardsServices serves tideline.rewards.v1.RewardsService over svc and
// the read models m.
func RewardsServices(svc *rewards.Service, m Rewards) []Service {
	return []Service{{Name: rewardsv1connect.RewardsServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return rewardsv1connect.NewRewardsServiceHandler(&rewardsHandler{rt: rt, svc: svc, m: m}, opts)
	}}}
}

type rewardsHandler struct {
	rt  *runtime
	svc *rewards.Service
	m   Rewards
}

const (
	maxLedgerPage = rewardsmodel.MaxLines
	maxRaffleList = 100
)

func (h *rewardsHandler) GetAccount(ctx context.Context, req *connect.Request[rewardsv1.GetAccountRequest]) (*connect.Response[rewardsv1.GetAccountResponse], error) {
	if err := h.rt.checkPosition(ctx, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	a, version, err := h.svc.Account(ctx, caller(ctx), req.Msg.UserId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewardsv1.GetAccountResponse{Account: &rewardsv1.Account{UserId: a.UserID, Balance: a.Balance,
		Streak: a.Streak, LastStampDate: a.LastStamp, Version: version}}), nil
}

// owner returns whose account p asks for: their own, or (admin) any.
func owner(p auth.Principal, userID string) (string, error) {
	if err := rewards.MayUse(p); err != nil {
		return "", err
	}
	if userID == "" || userID == p.Subject {
		return p.Subject, nil
	}
	if p.Role != auth.Admin {
		return "", &es.Error{Kind: es.Forbidden, Field: "user_id", Message: "only admins read another's account"}
	}
	return userID, es.ValidateToken("user_id", userID)
}

func (h *rewardsHandler) ListLedger(ctx context.Context, req *connect.Request[rewardsv1.ListLedgerRequest]) (*connect.Response[rewardsv1.ListLedgerResponse], error) {
	user, err := owner(caller(ctx), req.Msg.UserId)
	if err != nil {
		return nil, err
	}
	limit := int(req.Msg.Limit)
	if limit == 0 {
		limit = 20
	}
	if limit < 1 || limit > maxLedgerPage {
		return nil, es.Invalidf("limit", "must be between 1 and %d, got %d", maxLedgerPage, req.Msg.Limit)
	}
	if err := h.rt.checkPosition(ctx, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	if err := h.rt.waitFor(ctx, h.m.AccountsFeed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	pos := h.m.AccountsFeed.Position()
	lines, next := h.m.Accounts.Ledger(user, req.Msg.BeforePosition, limit)
	return connect.NewResponse(&rewardsv1.ListLedgerResponse{Lines: lines, NextBeforePosition: next, Position: pos}), nil
}

func (h *rewardsHandler) AdjustPoints(ctx context.Context, req *connect.Request[rewardsv1.AdjustPointsRequest]) (*connect.Response[rewardsv1.AdjustPointsResponse], error) {
	p := caller(ctx)
	res, err := h.svc.Adjust(ctx, p, req.Msg.UserId, req.Msg.Points, req.Msg.Reason)
	if err != nil {
		return nil, err
	}
	a, _, err := h.svc.Account(ctx, p, req.Msg.UserId)
	if err != nil {
		return nil, err
	}
	return withPosition(&rewardsv1.AdjustPointsResponse{Balance: a.Balance, Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *rewardsHandler) OpenRaffle(ctx context.Context, req *connect.Request[rewardsv1.OpenRaffleRequest]) (*connect.Response[rewardsv1.OpenRaffleResponse], error) {
	p := caller(ctx)
	if p.Role != auth.Admin {
		return nil, rewards.ErrAdminOnly
	}
	drawAt, err := validTime("draw_at", req.Msg.DrawAt)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	r, res, err := h.svc.OpenRaffle(ctx, p, rewards.Open{ID: m.RaffleId, Prize: m.Prize, EntryCost: m.EntryCost,
		MaxPerPerson: m.MaxEntriesPerPerson, Winners: m.Winners, DrawAt: drawAt})
	if err != nil {
		return nil, err
	}
	return withPosition(&rewardsv1.OpenRaffleResponse{Raffle: raffleProto(r, res.Position.Seq, p.Subject), Position: res.Position.Seq}, res.Position.Seq), nil
}

// raffleProto is r for user; its entries only once drawn, with the seed.
func raffleProto(r rewards.Raffle, version uint64, user string) *rewardsv1.Raffle {
	out := &rewardsv1.Raffle{RaffleId: r.ID, Prize: r.Prize, EntryCost: r.EntryCost, MaxEntriesPerPerson: r.MaxPerPerson,
		WinnersCount: r.Winners, DrawAt: timestamppb.New(r.DrawAt), SeedSha256: r.SeedSHA256, OpenedBy: r.OpenedBy,
		State: rewardsv1.RaffleState_RAFFLE_STATE_OPEN, MyTickets: r.TicketsOf(user), OpenedAt: timestamppb.New(r.OpenedAt), Version: version}
	people := map[string]bool{}
	for _, e := range r.Entries {
		out.TicketsTotal += int64(e.Tickets)
		people[e.UserID] = true
	}
	out.Entrants = int32(len(people))
	if r.Drawn {
		out.State, out.Seed, out.Winners, out.DrawnAt = rewardsv1.RaffleState_RAFFLE_STATE_DRAWN, r.Seed, r.Won, timestamppb.New(r.DrawnAt)
		for _, e := range r.Entries {
			out.Entries = append(out.Entries, &rewardsv1.RaffleEntry{EntryId: e.ID, UserId: e.UserID, Tickets: e.Tickets})
		}
	}
	return out
}

func (h *rewardsHandler) ListRaffles(ctx context.Context, req *connect.Request[rewardsv1.ListRafflesRequest]) (*connect.Response[rewardsv1.ListRafflesResponse], error) {
	p := caller(ctx)
	if err := rewards.MayUse(p); err != nil {
		return nil, err
	}
	limit := int(req.Msg.Limit)
	if limit == 0 {
		limit = 20
	}
	if limit < 1 || limit > maxRaffleList {
		return nil, es.Invalidf("limit", "must be between 1 and %d, got %d", maxRaffleList, req.Msg.Limit)
	}
	if _, ok := rewardsv1.RaffleState_name[int32(req.Msg.State)]; !ok {
		return nil, es.Invalidf("state", "unknown state %d", req.Msg.State)
	}
	if err := h.rt.checkPosition(ctx, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	if err := h.rt.waitFor(ctx, h.m.RafflesFeed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	pos := h.m.RafflesFeed.Position()
	return connect.NewResponse(&rewardsv1.ListRafflesResponse{Raffles: h.m.Raffles.List(req.Msg.State, p.Subject, limit), Position: pos}), nil
}

func (h *rewardsHandler) GetRaffle(ctx context.Context, req *connect.Request[rewardsv1.GetRaffleRequest]) (*connect.Response[rewardsv1.GetRaffleResponse], error) {
	if err := h.rt.checkPosition(ctx, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	p := caller(ctx)
	r, version, err := h.svc.Raffle(ctx, p, req.Msg.RaffleId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&rewardsv1.GetRaffleResponse{Raffle: raffleProto(r, version, p.Subject)}), nil
}

func (h *rewardsHandler) EnterRaffle(ctx context.Context, req *connect.Request[rewardsv1.EnterRaffleRequest]) (*connect.Response[rewardsv1.EnterRaffleResponse], error) {
	tickets := req.Msg.Tickets
	if tickets == 0 {
		tickets = 1
	}
	e, err := h.svc.Enter(ctx, caller(ctx), req.Msg.RaffleId, tickets, req.Header().Get(IdempotencyKeyHeader))
	if err != nil {
		return nil, err
	}
	return withPosition(&rewardsv1.EnterRaffleResponse{EntryId: e.EntryID, Balance: e.Balance, Position: e.Result.Position.Seq}, e.Result.Position.Seq), nil
}
