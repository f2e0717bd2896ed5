package api

import (
	"context"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	alertsmodel "github.com/tideline/tideline/projections/alerts"
	safetymodel "github.com/tideline/tideline/projections/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
)

// SafetyServices serves the safety context: tideline.safety.v1.SafetyService
// over svc (danger reports, alert commands), the danger events read model
// and its runner, and the alerts read model and its runner.
func SafetyServices(svc *safety.Service, dangers *safetymodel.Model, dangersFeed ReadModel, alerts *alertsmodel.Model, alertsFeed ReadModel) []Service {
	return []Service{{Name: safetyv1connect.SafetyServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return safetyv1connect.NewSafetyServiceHandler(&safetyHandler{rt: rt, svc: svc,
			dangers: dangers, dangersFeed: dangersFeed, alerts: alerts, alertsFeed: alertsFeed}, opts)
	}}}
}

// safetyHandler serves tideline.safety.v1.SafetyService.
type safetyHandler struct {
	rt          *runtime
	svc         *safety.Service
	dangers     *safetymodel.Model
	dangersFeed ReadModel
	alerts      *alertsmodel.Model
	alertsFeed  ReadModel
}

const maxDangerEvents = 1000

func (h *safetyHandler) ListDangerEvents(ctx context.Context, req *connect.Request[safetyv1.ListDangerEventsRequest]) (*connect.Response[safetyv1.ListDangerEventsResponse], error) {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return nil, err
	}
	m := req.Msg
	if err := es.ValidateToken("rider_id", m.RiderId); err != nil {
		return nil, err
	}
	limit := int(m.Limit)
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > maxDangerEvents {
		return nil, es.Invalidf("limit", "must be between 1 and %d, got %d", maxDangerEvents, m.Limit)
	}
	var since time.Time // zero: every event kept
	if m.Since != nil {
		var err error
		if since, err = validTime("since", m.Since); err != nil {
			return nil, err
		}
	}
	if err := h.rt.waitFor(ctx, h.dangersFeed, m.MinPosition); err != nil {
		return nil, err
	}
	pos := h.dangersFeed.Position()
	events, total := h.dangers.List(m.RiderId, since, limit)
	return connect.NewResponse(&safetyv1.ListDangerEventsResponse{Events: events, Total: int64(total), Position: pos}), nil
}
