package api

import (
	"context"
	"strconv"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

const maxAlerts = 1000

// ReportDanger records a phone's danger report (see safety.Service.Report).
func (h *safetyHandler) ReportDanger(ctx context.Context, req *connect.Request[safetyv1.ReportDangerRequest]) (*connect.Response[safetyv1.ReportDangerResponse], error) {
	if err := requireRole(ctx, auth.Rider, auth.Device, auth.Service, auth.Admin); err != nil {
		return nil, err
	}
	res, err := h.svc.Report(ctx, caller(ctx), req.Msg.Event)
	if err != nil {
		return nil, subfield("event", err)
	}
	out := connect.NewResponse(&safetyv1.ReportDangerResponse{Position: res.Position.Seq, Duplicate: res.Duplicate})
	out.Header().Set(PositionHeader, strconv.FormatUint(res.Position.Seq, 10))
	return out, nil
}

// ListAlerts serves the alerts read model. Admin only.
func (h *safetyHandler) ListAlerts(ctx context.Context, req *connect.Request[safetyv1.ListAlertsRequest]) (*connect.Response[safetyv1.ListAlertsResponse], error) {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return nil, err
	}
	m := req.Msg
	if m.RiderId != "" {
		if err := es.ValidateToken("rider_id", m.RiderId); err != nil {
			return nil, err
		}
	}
	limit := int(m.Limit)
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > maxAlerts {
		return nil, es.Invalidf("limit", "must be between 1 and %d, got %d", maxAlerts, m.Limit)
	}
	if err := h.rt.waitFor(ctx, h.alertsFeed, m.MinPosition); err != nil {
		return nil, err
	}
	pos := h.alertsFeed.Position()
	alerts, total := h.alerts.List(m.RiderId, m.OpenOnly, limit)
	return connect.NewResponse(&safetyv1.ListAlertsResponse{Alerts: alerts, Total: int64(total), Position: pos}), nil
}

// AcknowledgeAlert acknowledges an alert. Admin only; acknowledging
// twice succeeds with already true; an unknown alert is NotFound.
func (h *safetyHandler) AcknowledgeAlert(ctx context.Context, req *connect.Request[safetyv1.AcknowledgeAlertRequest]) (*connect.Response[safetyv1.AcknowledgeAlertResponse], error) {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return nil, err
	}
	res, already, err := h.svc.Acknowledge(ctx, caller(ctx), req.Msg.AlertId)
	if err != nil {
		return nil, err
	}
	out := connect.NewResponse(&safetyv1.AcknowledgeAlertResponse{Position: res.Position.Seq, Already: already})
	out.Header().Set(PositionHeader, strconv.FormatUint(res.Position.Seq, 10))
	return out, nil
}
