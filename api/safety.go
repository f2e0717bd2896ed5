package api

import (
	"context"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// safetyHandler serves tideline.safety.v1.SafetyService.
type safetyHandler struct{ d Deps }

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
	if err := h.d.waitFor(ctx, h.d.SafetyFeed, m.MinPosition); err != nil {
		return nil, err
	}
	pos := h.d.SafetyFeed.Position()
	events, total := h.d.SafetyModel.List(m.RiderId, since, limit)
	return connect.NewResponse(&safetyv1.ListDangerEventsResponse{Events: events, Total: int64(total), Position: pos}), nil
}
