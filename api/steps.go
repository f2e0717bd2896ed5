package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/steps"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// Headers for clients of the fixed step.StepService contract, whose
// messages have no room for them.
const (
	PositionHeader       = "Tideline-Position"     // response: position of the recorded event
	MinPositionHeader    = "Tideline-Min-Position" // request: read-your-writes for queries
	IdempotencyKeyHeader = "Idempotency-Key"       // request: safe retries of RecordSteps
)

// Query limits.
const (
	maxUsersPerQuery = 1000
	maxRangeDays     = 366
	maxLeaderboard   = 1000
	// historyReaders is how many users' streams one query reads from the
	// event store at once, for dates the read model no longer holds.
	historyReaders = 8
)

// StepsServices serves the steps context over svc, the steps read model
// and its runner: step.StepService, exactly as the pedometer clients'
// contract (shared/contracts/step.proto) defines it, and
// tideline.steps.v1.StepsService.
//
// past answers as-of leaderboards (nil: they are Unavailable).
func StepsServices(svc *steps.Service, model *stepsmodel.Model, feed ReadModel, past Past) []Service {
	deps := func(rt *runtime) stepsDeps { return stepsDeps{rt: rt, svc: svc, model: model, feed: feed, past: past} }
	return []Service{
		{Name: stepconnect.StepServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
			return stepconnect.NewStepServiceHandler(&stepHandler{deps(rt)}, opts)
		}},
		{Name: stepsv1connect.StepsServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
			h := &stepsHandler{stepsDeps: deps(rt)}
			h.boards = newSharedAnswers(rt, feed, 0, func(k leaderboardKey) *stepsv1.WatchLeaderboardResponse {
				return &stepsv1.WatchLeaderboardResponse{Leaderboard: h.leaderboard(k.date, k.limit, k.user)}
			}, func(a, b *stepsv1.WatchLeaderboardResponse) bool { return sameRanking(a.Leaderboard, b.Leaderboard) })
			return stepsv1connect.NewStepsServiceHandler(h, connect.WithHandlerOptions(opts, h.boards.enc.options()))
		}},
	}
}

// stepsDeps are what the steps handlers serve from.
type stepsDeps struct {
	rt    *runtime
	svc   *steps.Service
	model *stepsmodel.Model
	feed  ReadModel
	past  Past
}

// daily returns users' counts for the dates from..to, user by user, each
// in date order: the read model's for the dates it holds, the event
// store's (each such user's stream, read whole) for the dates before its
// window.
func (d stepsDeps) daily(ctx context.Context, users []string, from, to string) ([]stepsmodel.Daily, error) {
	per := make([][]stepsmodel.Daily, len(users))
	errs := make([]error, len(users))
	sem := make(chan struct{}, historyReaders)
	var wg sync.WaitGroup
	for i, u := range users {
		days, horizon := d.model.Range(u, from, to)
		per[i] = days
		if from >= horizon {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			old, err := d.svc.History(ctx, u, from, to)
			var earlier []stepsmodel.Daily
			for _, c := range old {
				if c.Date < horizon {
					earlier = append(earlier, stepsmodel.Daily{UserID: u, Date: c.Date, Steps: c.Steps})
				}
			}
			per[i], errs[i] = append(earlier, days...), err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(per...), nil
}

// stepHandler serves step.StepService.
type stepHandler struct{ stepsDeps }

func (h *stepHandler) RecordSteps(ctx context.Context, req *connect.Request[steppb.StepInput]) (*connect.Response[steppb.StepResponse], error) {
	m := req.Msg
	res, err := h.svc.Record(ctx, caller(ctx), steps.Record{
		UserID: m.UserId, Date: m.Date, Steps: m.Steps,
		IdempotencyKey: req.Header().Get(IdempotencyKeyHeader),
	})
	if err != nil {
		return nil, legacyFields(err)
	}
	out := connect.NewResponse(&steppb.StepResponse{Message: "ok"})
	out.Header().Set(PositionHeader, strconv.FormatUint(res.Position.Seq, 10))
	return out, nil
}

func (h *stepHandler) GetStepsByUuids(ctx context.Context, req *connect.Request[steppb.GetStepsByUuidsInput]) (*connect.Response[steppb.StepResponse], error) {
	if err := validateUsers("userIds", req.Msg.UserIds); err != nil {
		return nil, err
	}
	if err := steps.ValidateDate("date", req.Msg.Date, time.Now()); err != nil {
		return nil, err
	}
	minPos, err := minPositionHeader(req.Header().Get(MinPositionHeader))
	if err != nil {
		return nil, err
	}
	if err := h.rt.waitFor(ctx, h.feed, minPos); err != nil {
		return nil, legacyFields(err)
	}
	counts := make(map[string]int32, len(req.Msg.UserIds))
	for _, u := range req.Msg.UserIds {
		counts[u] = 0
	}
	days, err := h.daily(ctx, dedup(req.Msg.UserIds), req.Msg.Date, req.Msg.Date)
	if err != nil {
		return nil, err
	}
	for _, d := range days {
		counts[d.UserID] = d.Steps
	}
	b, err := json.Marshal(counts)
	if err != nil {
		return nil, fmt.Errorf("encode counts: %w", err)
	}
	out := connect.NewResponse(&steppb.StepResponse{Message: string(b)})
	out.Header().Set(PositionHeader, strconv.FormatUint(h.feed.Position(), 10))
	return out, nil
}

// StreamSteps sends each listed user's current count for the date, then
// every change until the client leaves (a live stream, see live).
// Changes are read from the read model as it advances, so a burst of
// updates to one user may arrive as its latest value only (counts are
// cumulative, so nothing is lost). For a date before the read model's
// window the counts are read from the event store once, and no change
// follows: the model no longer holds the date.
func (h *stepHandler) StreamSteps(ctx context.Context, req *connect.Request[steppb.GetStepsByUuidsInput], s *connect.ServerStream[steppb.StepInput]) error {
	if err := validateUsers("userIds", req.Msg.UserIds); err != nil {
		return err
	}
	date := req.Msg.Date
	if err := steps.ValidateDate("date", date, time.Now()); err != nil {
		return err
	}
	users := dedup(req.Msg.UserIds)
	last := make(map[string]int32, len(users))
	for _, u := range users {
		last[u] = 0
	}
	days, err := h.daily(ctx, users, date, date)
	if err != nil {
		return err
	}
	for _, d := range days {
		last[d.UserID] = d.Steps
	}
	first := true
	return live(ctx, h.rt, h.feed, 0, s, func(time.Time) []*steppb.StepInput {
		var out []*steppb.StepInput
		held := date >= h.model.Horizon()
		for _, u := range users {
			n, changed := last[u], first
			if m, _ := h.model.Steps(u, date); held && !first && m != n {
				n, changed = m, true
			}
			if changed {
				last[u] = n
				out = append(out, &steppb.StepInput{UserId: u, Steps: n, Date: date})
			}
		}
		first = false
		return out
	})
}

// StreamUserSteps records each update as it arrives. Updates are
// validated in order as they are read and appended by an ingest: each
// user's updates that queued while earlier ones were being written go
// to the store together, one commit of one event (steps.DecideAll: a
// StepsBatchRecorded holding them in order, or a StepsRecorded for
// one; counts are max-merged, so landing order does not matter). An
// invalid update ends the stream with InvalidArgument naming it;
// earlier updates stay recorded and the error says how many.
func (h *stepHandler) StreamUserSteps(ctx context.Context, s *connect.ClientStream[steppb.StepInput]) (*connect.Response[steppb.StepResponse], error) {
	p := caller(ctx)
	g := newIngest(func(batch []steps.Record) error {
		_, err := h.svc.RecordAll(ctx, p, batch)
		return err
	})
	n := 0
	for s.Receive() {
		m := s.Msg()
		cmd := steps.Record{UserID: m.UserId, Date: m.Date, Steps: m.Steps}
		if err := steps.Validate(p, cmd, time.Now()); err != nil {
			if serr := g.close(); serr != nil {
				return nil, serr
			}
			var e *es.Error
			if errors.As(legacyFields(err), &e) && e.Field != "" {
				return nil, es.Invalidf(fmt.Sprintf("update[%d].%s", n, e.Field), "%s (%d earlier updates were recorded)", e.Message, n)
			}
			return nil, err
		}
		if err := g.add(cmd); err != nil {
			g.close()
			return nil, err
		}
		n++
	}
	if err := g.close(); err != nil {
		return nil, err
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&steppb.StepResponse{Message: fmt.Sprintf("ok: %d recorded", n)}), nil
}

// legacyFields renames fields to the step.proto contract's JSON names
// (and min_position and idempotency_key to the headers that carry them
// there).
func legacyFields(err error) error {
	var e *es.Error
	if errors.As(err, &e) {
		if name, ok := map[string]string{"user_id": "userId", "min_position": MinPositionHeader, "idempotency_key": IdempotencyKeyHeader}[e.Field]; ok {
			c := *e
			c.Field = name
			return &c
		}
	}
	return err
}

// stepsHandler serves tideline.steps.v1.StepsService.
type stepsHandler struct {
	stepsDeps
	boards *sharedAnswers[leaderboardKey, *stepsv1.WatchLeaderboardResponse] // the watched leaderboards
}

// leaderboardKey is a watched leaderboard's query.
type leaderboardKey struct {
	date  string
	limit int
	user  string
}

func (h *stepsHandler) RecordSteps(ctx context.Context, req *connect.Request[stepsv1.RecordStepsRequest]) (*connect.Response[stepsv1.RecordStepsResponse], error) {
	m := req.Msg
	res, err := h.svc.Record(ctx, caller(ctx), steps.Record{UserID: m.UserId, Date: m.Date, Steps: m.Steps, IdempotencyKey: m.IdempotencyKey})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&stepsv1.RecordStepsResponse{Position: res.Position.Seq, Duplicate: res.Duplicate}), nil
}

func (h *stepsHandler) GetSteps(ctx context.Context, req *connect.Request[stepsv1.GetStepsRequest]) (*connect.Response[stepsv1.GetStepsResponse], error) {
	m := req.Msg
	if err := validateUsers("user_ids", m.UserIds); err != nil {
		return nil, err
	}
	now := time.Now()
	if err := steps.ValidateDate("from_date", m.FromDate, now); err != nil {
		return nil, err
	}
	to := m.ToDate
	if to == "" {
		to = m.FromDate
	}
	if err := steps.ValidateDate("to_date", to, now); err != nil {
		return nil, err
	}
	from, _ := time.Parse(steps.DateLayout, m.FromDate)
	until, _ := time.Parse(steps.DateLayout, to)
	if until.Before(from) {
		return nil, es.Invalidf("to_date", "%s is before from_date %s", to, m.FromDate)
	}
	if until.Sub(from) > maxRangeDays*24*time.Hour {
		return nil, es.Invalidf("to_date", "range is longer than %d days", maxRangeDays)
	}
	if err := h.rt.waitFor(ctx, h.feed, m.MinPosition); err != nil {
		return nil, err
	}
	out := &stepsv1.GetStepsResponse{Position: h.feed.Position()}
	days, err := h.daily(ctx, dedup(m.UserIds), m.FromDate, to)
	if err != nil {
		return nil, err
	}
	for _, d := range days {
		out.Steps = append(out.Steps, &stepsv1.DailySteps{UserId: d.UserID, Date: d.Date, Steps: d.Steps})
	}
	return connect.NewResponse(out), nil
}

func (h *stepsHandler) leaderboardArgs(ctx context.Context, date string, limit int32, user string) (int, string, error) {
	if err := steps.ValidateDate("date", date, time.Now()); err != nil {
		return 0, "", err
	}
	if limit == 0 {
		limit = 10
	}
	if limit < 1 || limit > maxLeaderboard {
		return 0, "", es.Invalidf("limit", "must be between 1 and %d, got %d", maxLeaderboard, limit)
	}
	if user == "" {
		user = caller(ctx).Subject
	} else if err := es.ValidateToken("user_id", user); err != nil {
		return 0, "", err
	}
	return int(limit), user, nil
}

func (h *stepsHandler) leaderboard(date string, limit int, user string) *stepsv1.Leaderboard {
	return leaderboardOf(h.model, h.feed.Position(), date, limit, user)
}

// leaderboardOf reads a leaderboard from model, stamped with pos.
func leaderboardOf(model *stepsmodel.Model, pos uint64, date string, limit int, user string) *stepsv1.Leaderboard {
	lb := &stepsv1.Leaderboard{Date: date, Position: pos}
	for _, e := range model.Top(date, limit) {
		lb.Top = append(lb.Top, &stepsv1.LeaderboardEntry{Rank: e.Rank, UserId: e.UserID, Steps: e.Steps})
	}
	if e, ok := model.Rank(date, user); ok {
		lb.Me = &stepsv1.LeaderboardEntry{Rank: e.Rank, UserId: e.UserID, Steps: e.Steps}
	}
	lb.Total = model.Total(date)
	return lb
}

func (h *stepsHandler) GetLeaderboard(ctx context.Context, req *connect.Request[stepsv1.GetLeaderboardRequest]) (*connect.Response[stepsv1.GetLeaderboardResponse], error) {
	m := req.Msg
	limit, user, err := h.leaderboardArgs(ctx, m.Date, m.Limit, m.UserId)
	if err != nil {
		return nil, err
	}
	if past, ok, err := asOf(ctx, h.past, "as_of_position", "as_of_time", m.AsOfPosition, m.AsOfTime); err != nil {
		return nil, err
	} else if ok {
		lb := leaderboardOf(past.Model.(*stepsmodel.Model), past.Position, m.Date, limit, user)
		return connect.NewResponse(&stepsv1.GetLeaderboardResponse{Leaderboard: lb}), nil
	}
	if err := h.rt.waitFor(ctx, h.feed, m.MinPosition); err != nil {
		return nil, err
	}
	return connect.NewResponse(&stepsv1.GetLeaderboardResponse{Leaderboard: h.leaderboard(m.Date, limit, user)}), nil
}

// WatchLeaderboard sends the leaderboard, then again whenever it changes
// (a live stream, see live: bursts are coalesced into one update). The
// watchers of one leaderboard share it (sharedAnswers): a write wakes
// them only if it changed the leaderboard they watch.
func (h *stepsHandler) WatchLeaderboard(ctx context.Context, req *connect.Request[stepsv1.WatchLeaderboardRequest], s *connect.ServerStream[stepsv1.WatchLeaderboardResponse]) error {
	m := req.Msg
	limit, user, err := h.leaderboardArgs(ctx, m.Date, m.Limit, m.UserId)
	if err != nil {
		return err
	}
	key := leaderboardKey{date: m.Date, limit: limit, user: user}
	board := h.boards.join(key)
	defer h.boards.leave(key, board)
	var sent uint64 // the version last sent
	return live(ctx, h.rt, board, 0, s, func(time.Time) []*stepsv1.WatchLeaderboardResponse {
		msg, version := board.latest()
		if version == sent {
			return nil
		}
		sent = version
		return []*stepsv1.WatchLeaderboardResponse{msg}
	})
}

// sameRanking compares two leaderboards ignoring their positions. a may
// be shared with streams encoding it, so only b is touched.
func sameRanking(a, b *stepsv1.Leaderboard) bool {
	pb := b.Position
	b.Position = a.Position
	eq := proto.Equal(a, b)
	b.Position = pb
	return eq
}

func validateUsers(field string, users []string) error {
	if len(users) == 0 {
		return es.Invalidf(field, "must list at least one user")
	}
	if len(users) > maxUsersPerQuery {
		return es.Invalidf(field, "must list at most %d users, got %d", maxUsersPerQuery, len(users))
	}
	for i, u := range users {
		if err := es.ValidateToken(fmt.Sprintf("%s[%d]", field, i), u); err != nil {
			return err
		}
	}
	return nil
}

func minPositionHeader(v string) (uint64, error) {
	if v == "" {
		return 0, nil
	}
	p, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, es.Invalidf(MinPositionHeader, "must be a non-negative integer, got %q", v)
	}
	return p, nil
}

func dedup(xs []string) []string {
	seen := make(map[string]bool, len(xs))
	out := xs[:0:0]
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
