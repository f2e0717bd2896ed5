package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
)

// adminService is tideline.admin.v1.AdminService (admin role only),
// which every API serves.
func adminService() Service {
	return Service{Name: adminv1connect.AdminServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return adminv1connect.NewAdminServiceHandler(&adminHandler{rt: rt}, opts)
	}}
}

// adminHandler serves tideline.admin.v1.AdminService.
type adminHandler struct{ rt *runtime }

func statusPB(s ProjectionStatus) *adminv1.ProjectionStatus {
	return &adminv1.ProjectionStatus{
		Name: s.Name, Version: int32(s.Version), Position: s.Position, Lag: s.Lag,
		Rebuilding: s.State == adminv1.ProjectionState_PROJECTION_STATE_REBUILDING,
		State:      s.State, StoppedAt: s.StoppedAt, Reason: s.Reason,
	}
}

// projection returns the named projection, for an admin caller.
func (h *adminHandler) projection(ctx context.Context, name string) (ProjectionControl, error) {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return nil, err
	}
	p, ok := h.rt.Projections[name]
	if !ok {
		return nil, es.Invalidf("name", "no projection named %q", name)
	}
	return p, nil
}

func (h *adminHandler) ListProjections(ctx context.Context, _ *connect.Request[adminv1.ListProjectionsRequest]) (*connect.Response[adminv1.ListProjectionsResponse], error) {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return nil, err
	}
	out := &adminv1.ListProjectionsResponse{}
	names := make([]string, 0, len(h.rt.Projections))
	for n := range h.rt.Projections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out.Projections = append(out.Projections, statusPB(h.rt.Projections[n].Status(ctx)))
	}
	if h.rt.LastPosition != nil {
		last, err := h.rt.LastPosition(ctx)
		if err != nil {
			return nil, err
		}
		out.LastPosition = last
	}
	return connect.NewResponse(out), nil
}

func (h *adminHandler) RebuildProjection(ctx context.Context, req *connect.Request[adminv1.RebuildProjectionRequest]) (*connect.Response[adminv1.RebuildProjectionResponse], error) {
	p, err := h.projection(ctx, req.Msg.Name)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := p.Rebuild(ctx); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	st := p.Status(ctx)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(st.Position) / elapsed.Seconds()
	}
	return connect.NewResponse(&adminv1.RebuildProjectionResponse{
		Status: statusPB(st), EventsPerSecond: rate, DurationMs: elapsed.Milliseconds(),
	}), nil
}

func (h *adminHandler) ResumeProjection(ctx context.Context, req *connect.Request[adminv1.ResumeProjectionRequest]) (*connect.Response[adminv1.ResumeProjectionResponse], error) {
	p, err := h.projection(ctx, req.Msg.Name)
	if err != nil {
		return nil, err
	}
	if err := p.Resume(ctx); err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.ResumeProjectionResponse{Status: statusPB(p.Status(ctx))}), nil
}

func (h *adminHandler) SkipProjectionCommit(ctx context.Context, req *connect.Request[adminv1.SkipProjectionCommitRequest]) (*connect.Response[adminv1.SkipProjectionCommitResponse], error) {
	p, err := h.projection(ctx, req.Msg.Name)
	if err != nil {
		return nil, err
	}
	if req.Msg.Position == 0 {
		return nil, es.Invalidf("position", "must be the position the projection is stopped at, got 0")
	}
	decision, err := p.Skip(ctx, req.Msg.Position, req.Msg.Reason, es.Metadata{Actor: caller(ctx).String(), Source: "api"})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.SkipProjectionCommitResponse{Status: statusPB(p.Status(ctx)), DecisionPosition: decision}), nil
}

const maxRejected = 1000

// ListRejectedDeviceCommits lists the edge device commits the hub refused.
func (h *adminHandler) ListRejectedDeviceCommits(ctx context.Context, req *connect.Request[adminv1.ListRejectedDeviceCommitsRequest]) (*connect.Response[adminv1.ListRejectedDeviceCommitsResponse], error) {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return nil, err
	}
	m := req.Msg
	if m.DeviceId != "" {
		if err := es.ValidateToken("device_id", m.DeviceId); err != nil {
			return nil, err
		}
	}
	limit := int(m.Limit)
	if limit == 0 {
		limit = 50
	}
	if limit < 1 || limit > maxRejected {
		return nil, es.Invalidf("limit", "must be between 1 and %d, got %d", maxRejected, m.Limit)
	}
	if h.rt.DeviceRejections == nil {
		return nil, es.Errorf(es.Unavailable, "this server does not accept edge devices")
	}
	commits, total := h.rt.DeviceRejections.Rejected(m.DeviceId, limit)
	return connect.NewResponse(&adminv1.ListRejectedDeviceCommitsResponse{Commits: commits, Total: int64(total)}), nil
}

// ListDevices lists the registered edge devices.
func (h *adminHandler) ListDevices(ctx context.Context, _ *connect.Request[adminv1.ListDevicesRequest]) (*connect.Response[adminv1.ListDevicesResponse], error) {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return nil, err
	}
	if h.rt.Devices == nil {
		return nil, es.Errorf(es.Unavailable, "this server does not accept edge devices (start it with --leaf-listen)")
	}
	devs, err := h.rt.Devices.Devices()
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.ListDevicesResponse{Devices: devs}), nil
}

// ProjectionAt rebuilds a projection as of a position or time and returns
// its summary.
func (h *adminHandler) ProjectionAt(ctx context.Context, req *connect.Request[adminv1.ProjectionAtRequest]) (*connect.Response[adminv1.ProjectionAtResponse], error) {
	if _, err := h.projection(ctx, req.Msg.Name); err != nil {
		return nil, err
	}
	m := req.Msg
	if m.Position == 0 && m.Time == nil {
		return nil, es.Invalidf("position", "set position or time")
	}
	past := h.rt.History[m.Name]
	if past == nil {
		return nil, es.Errorf(es.Unavailable, "projection %s does not answer as-of queries", m.Name)
	}
	start := time.Now()
	pm, ok, err := asOf(ctx, past, "position", "time", m.Position, m.Time)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, es.Invalidf("position", "set position or time")
	}
	var summary any = map[string]any{"name": m.Name, "position": pm.Position}
	if pm.Summary != nil {
		summary = pm.Summary()
	}
	js, err := json.MarshalIndent(summary, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode summary: %w", err)
	}
	return connect.NewResponse(&adminv1.ProjectionAtResponse{
		Name: m.Name, Version: int32(pm.Version), Position: pm.Position, SummaryJson: string(js),
		SnapshotPosition: pm.Snapshot, Replayed: pm.Replayed, DurationMs: time.Since(start).Milliseconds(),
	}), nil
}
