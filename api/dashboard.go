package api

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
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
		watches := &dashboardWatches{encodings: newSharedEncodings(), byQuery: map[watchKey]*watchedDashboard{}}
		h := &dashboardHandler{rt: rt, model: model, feed: feed, past: past, watches: watches}
		return dashboardv1connect.NewDashboardServiceHandler(h, connect.WithHandlerOptions(opts, watches.encodings.options()))
	}}}
}

// dashboardHandler serves tideline.dashboard.v1.DashboardService.
type dashboardHandler struct {
	rt      *runtime
	model   *dashboard.Model
	feed    ReadModel
	past    Past
	watches *dashboardWatches
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
// after a quiet spell, else liveMinGap after the previous update, so a
// burst of events costs one update). An update with no figure changed is
// not sent. The watchers of one query share its answer: computed, encoded
// and compressed once per change (see dashboardWatches), and a watcher
// slower than the changes gets the latest.
func (h *dashboardHandler) WatchDashboard(ctx context.Context, req *connect.Request[dashboardv1.WatchDashboardRequest], s *connect.ServerStream[dashboardv1.WatchDashboardResponse]) error {
	q, err := h.query(ctx, req.Msg.Query, time.Now())
	if err != nil {
		return err
	}
	fixedHeat := req.Msg.Query.GetHeatFrom() != nil || req.Msg.Query.GetHeatTo() != nil
	key := watchKey{rider: q.RiderID, cell: q.CellDeg, ranking: q.RankingLimit, active: q.ActiveLimit, trend: q.TrendLimit}
	if fixedHeat {
		key.heatFrom, key.heatTo = q.HeatFrom.UnixNano(), q.HeatTo.UnixNano()
	}
	w := h.watches.join(key)
	defer h.watches.leave(key, w)
	var sent uint64 // the version of the figures last sent
	return live(ctx, h.rt, h.feed, watchRefresh, s, func(now time.Time) []*dashboardv1.WatchDashboardResponse {
		msg, version := w.latest(h.watches.encodings, h.feed, now, func(now time.Time) *dashboardv1.Dashboard {
			q.Now = now
			if !fixedHeat { // the default heat map follows today
				q.HeatFrom = dashboard.StartOfDay(now)
				q.HeatTo = q.HeatFrom.AddDate(0, 0, 1)
			}
			return h.dashboard(q)
		})
		if version == sent {
			return nil
		}
		sent = version
		return []*dashboardv1.WatchDashboardResponse{msg}
	})
}

// dashboardWatches shares one answer among the watchers of the same
// query. Safe for concurrent use.
type dashboardWatches struct {
	encodings *sharedEncodings
	mu        sync.Mutex
	byQuery   map[watchKey]*watchedDashboard
}

// watchKey is a watch's query as resolved; a heat map without a range
// (zero) follows today.
type watchKey struct {
	rider                  string
	heatFrom, heatTo       int64
	cell                   float64
	ranking, active, trend int
}

// watchedDashboard is the latest answer to one query. Its figures are a
// function of the read model's position and of the hour of "now" (today,
// this month and the next hour follow it; KST is a whole-hour offset), so
// an answer is computed again only when either moves; version counts the
// answers whose figures changed.
type watchedDashboard struct {
	refs int // guarded by dashboardWatches.mu

	mu      sync.Mutex
	msg     *dashboardv1.WatchDashboardResponse // shared: never changed once set
	pos     uint64
	hour    int64
	version uint64
}

func (ws *dashboardWatches) join(key watchKey) *watchedDashboard {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.byQuery[key]
	if w == nil {
		w = &watchedDashboard{}
		ws.byQuery[key] = w
	}
	w.refs++
	return w
}

func (ws *dashboardWatches) leave(key watchKey, w *watchedDashboard) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if w.refs--; w.refs > 0 {
		return
	}
	delete(ws.byQuery, key)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.msg != nil {
		ws.encodings.unshare(w.msg)
	}
}

// latest returns the answer at feed's position and now's hour, computing
// it with compute if no watcher has yet, and the version of its figures.
// Watchers that ask together wait for one computation.
func (w *watchedDashboard) latest(enc *sharedEncodings, feed ReadModel, now time.Time, compute func(time.Time) *dashboardv1.Dashboard) (*dashboardv1.WatchDashboardResponse, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	hour := now.Unix() / 3600
	if w.msg != nil && w.pos == feed.Position() && w.hour == hour {
		return w.msg, w.version
	}
	d := compute(now)
	if w.msg == nil || !sameFigures(w.msg.Dashboard, d) {
		w.version++
	}
	old := w.msg
	w.msg, w.pos, w.hour = &dashboardv1.WatchDashboardResponse{Dashboard: d}, d.Position, hour
	if err := enc.share(w.msg); err != nil { // then each stream encodes it, and fails as it would have
		slog.Warn("dashboard watch: shared encoding", "err", err)
	}
	if old != nil {
		enc.unshare(old)
	}
	return w.msg, w.version
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
