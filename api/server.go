// Package api serves Tideline's Connect-RPC services (Connect, gRPC and
// gRPC-Web on one HTTP/2-cleartext port) with reflection, health, CORS,
// bearer-token auth and one mapping from domain errors to Connect codes.
package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpcreflect"
	"github.com/rs/cors"

	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/domain/steps"
	alertsmodel "github.com/tideline/tideline/projections/alerts"
	dashboardmodel "github.com/tideline/tideline/projections/dashboard"
	nearbymodel "github.com/tideline/tideline/projections/nearby"
	safetymodel "github.com/tideline/tideline/projections/safety"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// ReadModel is what queries need of a running projection: its applied
// position, a way to wait for one (read-your-writes), and a broadcast of
// advances (live streams). adapters/jetstream.Runner implements it.
type ReadModel interface {
	Position() uint64
	WaitFor(ctx context.Context, pos uint64) error
	Advanced() <-chan struct{}
}

// ProjectionStatus is one projection's state as the admin API reports it.
type ProjectionStatus struct {
	Name     string
	Version  int
	Position uint64
	Lag      uint64
	State    adminv1.ProjectionState
	// StoppedAt is, when stopped, the position of the commit it cannot
	// apply; Reason says why it is stopped or not running.
	StoppedAt uint64
	Reason    string
}

// ProjectionControl is a running projection as the admin API operates it.
// adapters/jetstream.Runner implements it (through cmd/tideline).
type ProjectionControl interface {
	Status(ctx context.Context) ProjectionStatus
	// Rebuild replays the projection from position 1 and returns once it
	// has caught up.
	Rebuild(ctx context.Context) error
	// Resume retries a stopped projection from the commit it stopped at;
	// es.FailedPrecondition if it is not stopped or stops there again.
	Resume(ctx context.Context) error
	// Skip records the decision (by meta's actor) that the projection
	// skips the commit at position, the one it is stopped at, resumes it,
	// and returns the decision's position. es.FailedPrecondition unless it
	// is stopped at exactly position; es.Invalid for a bad reason.
	Skip(ctx context.Context, position uint64, reason string, meta es.Metadata) (uint64, error)
}

// DeviceRejections is the device gate as the admin API reads it.
type DeviceRejections interface {
	// Rejected returns up to limit refused commits of device (empty: all),
	// newest first, and how many are kept for it.
	Rejected(device string, limit int) ([]*adminv1.RejectedDeviceCommit, int)
}

// Deps are what the API serves.
type Deps struct {
	Tokens *Tokens
	Steps  *steps.Service
	// StepsModel is the steps read model and StepsFeed its runner.
	StepsModel *stepsmodel.Model
	StepsFeed  ReadModel
	// SafetyModel is riders' danger events and SafetyFeed its runner.
	SafetyModel *safetymodel.Model
	SafetyFeed  ReadModel
	// Safety records danger reports and runs alert commands; AlertsModel
	// is the alert rules and alerts read model, AlertsFeed its runner.
	// Optional: without them ReportDanger, ListAlerts and AcknowledgeAlert
	// are Unavailable.
	Safety      *safety.Service
	AlertsModel *alertsmodel.Model
	AlertsFeed  ReadModel
	// Delivery runs order commands; NearbyModel is the open-orders index
	// and NearbyFeed its runner. Optional: without all three the
	// DeliveryService is not served.
	Delivery    *delivery.Service
	NearbyModel *nearbymodel.Model
	NearbyFeed  ReadModel
	// DashboardModel is the admin dashboard read model and DashboardFeed
	// its runner. Optional: without both the DashboardService is not served.
	DashboardModel *dashboardmodel.Model
	DashboardFeed  ReadModel
	// Projections by name, for the admin service.
	Projections map[string]ProjectionControl
	// DeviceRejections lists the edge device commits the hub refused
	// (adapters/devicegate.Gate). Optional: without it
	// ListRejectedDeviceCommits is Unavailable.
	DeviceRejections DeviceRejections
	// LastPosition reports the event stream's last position.
	LastPosition func(ctx context.Context) (uint64, error)
	// CORSOrigins allowed for browsers; empty allows any origin.
	CORSOrigins []string
	// MaxWait bounds how long a query waits for min_position; default 5s.
	MaxWait time.Duration

	closing chan struct{}
}

// API is the set of services over Deps.
type API struct {
	handler http.Handler
	closing chan struct{}
	once    sync.Once
}

// Handler returns the HTTP handler serving every service.
func (a *API) Handler() http.Handler { return a.handler }

// Close ends every live stream (watch RPCs) so an HTTP server shutdown
// does not wait for clients that never leave. Safe to call twice.
func (a *API) Close() { a.once.Do(func() { close(a.closing) }) }

// New returns the API serving d.
func New(d Deps) (*API, error) {
	if d.Tokens == nil || d.Steps == nil || d.StepsModel == nil || d.StepsFeed == nil || d.SafetyModel == nil || d.SafetyFeed == nil {
		return nil, errors.New("api: Tokens, Steps, StepsModel, StepsFeed, SafetyModel and SafetyFeed are required")
	}
	if d.MaxWait == 0 {
		d.MaxWait = 5 * time.Second
	}
	d.closing = make(chan struct{})
	opts := connect.WithHandlerOptions(
		connect.WithInterceptors(errorInterceptor{}, authInterceptor{tokens: d.Tokens}),
		// Compressing responses of a few bytes costs more than it saves.
		connect.WithCompressMinBytes(1024),
	)
	mux := http.NewServeMux()
	services := []string{
		stepconnect.StepServiceName,
		stepsv1connect.StepsServiceName,
		adminv1connect.AdminServiceName,
		safetyv1connect.SafetyServiceName,
	}
	mux.Handle(stepconnect.NewStepServiceHandler(&stepHandler{d: d}, opts))
	mux.Handle(stepsv1connect.NewStepsServiceHandler(&stepsHandler{d: d}, opts))
	mux.Handle(adminv1connect.NewAdminServiceHandler(&adminHandler{d: d}, opts))
	mux.Handle(safetyv1connect.NewSafetyServiceHandler(&safetyHandler{d: d}, opts))
	if d.Delivery != nil && d.NearbyModel != nil && d.NearbyFeed != nil {
		services = append(services, deliveryv1connect.DeliveryServiceName)
		mux.Handle(deliveryv1connect.NewDeliveryServiceHandler(&deliveryHandler{d: d}, opts))
	}
	if d.DashboardModel != nil && d.DashboardFeed != nil {
		services = append(services, dashboardv1connect.DashboardServiceName)
		mux.Handle(dashboardv1connect.NewDashboardServiceHandler(&dashboardHandler{d: d}, opts))
	}

	reflector := grpcreflect.NewStaticReflector(append(services, healthv1connect.HealthName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	mux.Handle(healthv1connect.NewHealthHandler(healthHandler{services: services, closing: d.closing}))

	c := cors.New(cors.Options{
		AllowedOrigins: d.CORSOrigins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
		ExposedHeaders: append(connectcors.ExposedHeaders(), PositionHeader),
		MaxAge:         7200,
	})
	return &API{handler: c.Handler(mux), closing: d.closing}, nil
}

// NewServer returns an HTTP server for h that speaks HTTP/1.1 and
// HTTP/2 cleartext (gRPC needs HTTP/2).
func NewServer(h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
}

// await blocks until ch fires (true) or a live stream must end because
// the client left or the server is closing (false).
func await[T any](ctx context.Context, closing <-chan struct{}, ch <-chan T) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	case <-closing:
		return false
	}
}

// waitFor implements min_position: it waits, bounded by MaxWait, until
// the read model has applied pos. A pos past anything written is
// OutOfRange at once (it is never trusted, nor waited for); a read model
// stopped before pos is Unavailable at once.
func waitFor(ctx context.Context, rm ReadModel, pos uint64, max time.Duration) error {
	if pos == 0 || rm.Position() >= pos {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	err := rm.WaitFor(wctx, pos)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case es.KindOf(err) == es.OutOfRange:
		return &es.Error{Kind: es.OutOfRange, Field: "min_position", Message: fmt.Sprintf("%d is past the last written position", pos)}
	}
	var e *es.Error
	if errors.As(err, &e) && e.Kind == es.Unavailable && e.Err == nil {
		return err // the read model says why, e.g. it is stopped
	}
	return es.Errorf(es.Unavailable, "read model has not reached min_position %d within %s (at %d)", pos, max, rm.Position())
}

type healthHandler struct {
	services []string
	closing  chan struct{}
}

func (h healthHandler) status(name string) (healthv1.HealthCheckResponse_ServingStatus, error) {
	if name == "" {
		return healthv1.HealthCheckResponse_SERVING, nil
	}
	for _, s := range h.services {
		if s == name {
			return healthv1.HealthCheckResponse_SERVING, nil
		}
	}
	return 0, connect.NewError(connect.CodeNotFound, errors.New("unknown service "+name))
}

func (h healthHandler) Check(_ context.Context, req *connect.Request[healthv1.HealthCheckRequest]) (*connect.Response[healthv1.HealthCheckResponse], error) {
	st, err := h.status(req.Msg.Service)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&healthv1.HealthCheckResponse{Status: st}), nil
}

func (h healthHandler) Watch(ctx context.Context, req *connect.Request[healthv1.HealthCheckRequest], s *connect.ServerStream[healthv1.HealthCheckResponse]) error {
	st, err := h.status(req.Msg.Service)
	if err != nil {
		st = healthv1.HealthCheckResponse_SERVICE_UNKNOWN
	}
	if err := s.Send(&healthv1.HealthCheckResponse{Status: st}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-h.closing:
	}
	return nil
}
