package api

import (
	"context"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/dashboard"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
)

// Dashboard query limits and the watch's pacing.
const (
	maxDashboardLimit = 1000
	maxHeatRange      = 366 * 24 * time.Hour
	minHeatCellDeg    = 0.0001
	maxHeatCellDeg    = 1
	// watchRefresh recomputes a watched dashboard without events, so that
	// "today", "this month" and the next hour roll over.
	watchRefresh = time.Minute
)

// DashboardServices serves the admin dashboard:
// tideline.dashboard.v1.DashboardService over the dashboard read model,
// its runner and its past (nil: as-of queries are Unavailable).
func DashboardServices(model *dashboard.Model, feed ReadModel, past Past) []Service {
	return []Service{{Name: dashboardv1connect.DashboardServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		h := &dashboardHandler{rt: rt, model: model, feed: feed, past: past}
		h.watches = newSharedAnswers(rt, feed, watchRefresh, h.watched, func(a, b *dashboardv1.WatchDashboardResponse) bool {
			return sameFigures(a.Dashboard, b.Dashboard)
		})
		return dashboardv1connect.NewDashboardServiceHandler(h, connect.WithHandlerOptions(opts, h.watches.enc.options()))
	}}}
}

// dashboardHandler serves tideline.dashboard.v1.DashboardService.
type dashboardHandler struct {
	rt      *runtime
	model   *dashboard.Model
	feed    ReadModel
	past    Past
	watches *sharedAnswers[watchKey, *dashboardv1.WatchDashboardResponse]
}

// query checks the caller's role and q's fields, and resolves the heat
// map's range (default: now's KST day; one bound alone spans a day).
func (h *dashboardHandler) query(ctx context.Context, q *dashboardv1.DashboardQuery, now time.Time) (dashboard.Query, error) {
	if err := requireRole(ctx, auth.Admin, auth.Enterprise); err != nil {
		return dashboard.Query{}, err
	}
	if q == nil {
		q = &dashboardv1.DashboardQuery{}
	}
	out := dashboard.Query{
		Now:          now,
		RiderID:      q.RiderId,
		CellDeg:      q.HeatCellDeg,
		RankingLimit: int(q.RankingLimit),
		ActiveLimit:  int(q.ActiveLimit),
		TrendLimit:   int(q.TrendLimit),
	}
	if q.RiderId != "" {
		if err := es.ValidateToken("query.rider_id", q.RiderId); err != nil {
			return dashboard.Query{}, err
		}
	}
	for _, l := range []struct {
		field string
		v     int32
	}{{"query.ranking_limit", q.RankingLimit}, {"query.active_limit", q.ActiveLimit}, {"query.trend_limit", q.TrendLimit}} {
		if l.v < 0 || l.v > maxDashboardLimit {
			return dashboard.Query{}, es.Invalidf(l.field, "must be between 1 and %d (0: default), got %d", maxDashboardLimit, l.v)
		}
	}
	if c := q.HeatCellDeg; c != 0 && !(c >= minHeatCellDeg && c <= maxHeatCellDeg) {
		return dashboard.Query{}, es.Invalidf("query.heat_cell_deg", "must be between %g and %g degrees (0: default %g), got %g", minHeatCellDeg, float64(maxHeatCellDeg), dashboard.DefaultCellDeg, c)
	}
	var err error
	if q.HeatFrom != nil {
		if out.HeatFrom, err = validTime("query.heat_from", q.HeatFrom); err != nil {
			return dashboard.Query{}, err
		}
	}
	if q.HeatTo != nil {
		if out.HeatTo, err = validTime("query.heat_to", q.HeatTo); err != nil {
			return dashboard.Query{}, err
		}
	}
	switch {
	case q.HeatFrom == nil && q.HeatTo == nil:
		out.HeatFrom = dashboard.StartOfDay(now)
		out.HeatTo = out.HeatFrom.AddDate(0, 0, 1)
	case q.HeatTo == nil:
		out.HeatTo = out.HeatFrom.Add(24 * time.Hour)
	case q.HeatFrom == nil:
		out.HeatFrom = out.HeatTo.Add(-24 * time.Hour)
	}
	if !out.HeatTo.After(out.HeatFrom) {
		return dashboard.Query{}, es.Invalidf("query.heat_to", "must be after heat_from")
	}
	if out.HeatTo.Sub(out.HeatFrom) > maxHeatRange {
		return dashboard.Query{}, es.Invalidf("query.heat_to", "heat map range is longer than %d days", int(maxHeatRange/(24*time.Hour)))
	}
	return out, nil
}

// dashboard returns the dashboard for q, stamped with the runner's
// position, read before the figures so that they include at least it.
func (h *dashboardHandler) dashboard(q dashboard.Query) *dashboardv1.Dashboard {
	pos := h.feed.Position()
	d := h.model.Dashboard(q)
	d.Position = pos
	return d
}

func (h *dashboardHandler) GetDashboard(ctx context.Context, req *connect.Request[dashboardv1.GetDashboardRequest]) (*connect.Response[dashboardv1.GetDashboardResponse], error) {
	q, err := h.query(ctx, req.Msg.Query, time.Now())
	if err != nil {
		return nil, err
	}
	if past, ok, err := asOf(ctx, h.past, "as_of_position", "as_of_time", req.Msg.AsOfPosition, req.Msg.AsOfTime); err != nil {
		return nil, err
	} else if ok {
		if q, err = h.query(ctx, req.Msg.Query, past.Time); err != nil { // "today" is the day of the position
			return nil, err
		}
		d := past.Model.(*dashboard.Model).Dashboard(q)
		d.Position = past.Position
		return connect.NewResponse(&dashboardv1.GetDashboardResponse{Dashboard: d}), nil
	}
	if err := h.rt.waitFor(ctx, h.feed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	q.Now = time.Now()
	return connect.NewResponse(&dashboardv1.GetDashboardResponse{Dashboard: h.dashboard(q)}), nil
}

// WatchDashboard sends the dashboard now, then after each advance of the
// read model and every watchRefresh (a live stream, see live: at once
// after a quiet spell, else liveGap after the previous update, so a
// burst of events costs one update). An update with no figure changed is
// not sent. The watchers of one query share its answer (sharedAnswers):
// computed, encoded and compressed once per change, waking its watchers
// only when a figure changed; a watcher slower than the changes gets the
// latest.
func (h *dashboardHandler) WatchDashboard(ctx context.Context, req *connect.Request[dashboardv1.WatchDashboardRequest], s *connect.ServerStream[dashboardv1.WatchDashboardResponse]) error {
	q, err := h.query(ctx, req.Msg.Query, time.Now())
	if err != nil {
		return err
	}
	key := watchKey{rider: q.RiderID, cell: q.CellDeg, ranking: q.RankingLimit, active: q.ActiveLimit, trend: q.TrendLimit}
	if req.Msg.Query.GetHeatFrom() != nil || req.Msg.Query.GetHeatTo() != nil {
		key.fixedHeat, key.heatFrom, key.heatTo = true, q.HeatFrom.UnixNano(), q.HeatTo.UnixNano()
	}
	w := h.watches.join(key)
	defer h.watches.leave(key, w)
	var sent uint64 // the version of the figures last sent
	return live(ctx, h.rt, w, 0, s, func(time.Time) []*dashboardv1.WatchDashboardResponse {
		msg, version := w.latest()
		if version == sent {
			return nil
		}
		sent = version
		return []*dashboardv1.WatchDashboardResponse{msg}
	})
}

// watchKey is a watched dashboard's query as resolved; a heat map without
// a fixed range follows today.
type watchKey struct {
	rider                  string
	fixedHeat              bool
	heatFrom, heatTo       int64
	cell                   float64
	ranking, active, trend int
}

// watched computes the answer to a watched query now. Its figures depend
// on the read model and on the hour (today, this month and the next hour
// follow it), which the shared answer's refresh catches.
func (h *dashboardHandler) watched(k watchKey) *dashboardv1.WatchDashboardResponse {
	q := dashboard.Query{Now: time.Now(), RiderID: k.rider, CellDeg: k.cell, RankingLimit: k.ranking, ActiveLimit: k.active, TrendLimit: k.trend}
	if k.fixedHeat {
		q.HeatFrom, q.HeatTo = time.Unix(0, k.heatFrom), time.Unix(0, k.heatTo)
	} else {
		q.HeatFrom = dashboard.StartOfDay(q.Now)
		q.HeatTo = q.HeatFrom.AddDate(0, 0, 1)
	}
	return &dashboardv1.WatchDashboardResponse{Dashboard: h.dashboard(q)}
}

// sameFigures compares two dashboards ignoring their position and time.
// a may be shared with streams encoding it, so only b, not yet shared,
// is touched while comparing.
func sameFigures(a, b *dashboardv1.Dashboard) bool {
	pb, gb := b.Position, b.GeneratedAt
	b.Position, b.GeneratedAt = a.Position, a.GeneratedAt
	eq := proto.Equal(a, b)
	b.Position, b.GeneratedAt = pb, gb
	return eq
}
