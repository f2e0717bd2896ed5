package api

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"

	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
)

// healthEvery is how long a serving verdict stands: health checks from
// load balancers arrive often, and each verdict asks the store.
// unhealthyEvery is how long a not-serving verdict stands: a server
// catching up becomes ready within it of the moment it has, not half a
// second later (a check costs a request to the store, well under a
// millisecond).
const (
	healthEvery    = 500 * time.Millisecond
	unhealthyEvery = 50 * time.Millisecond
)

// maxServiceName bounds the service name a health request may carry.
const maxServiceName = 256

// healthHandler serves grpc.health.v1.Health. Every served service is as
// healthy as the server: they share the store, projections and reactions.
type healthHandler struct {
	rt       *runtime
	services []string

	mu     sync.Mutex
	at     time.Time // when err was found
	err    error
	logged string // the last reason logged, "" when healthy
}

func newHealthHandler(rt *runtime, services []string) *healthHandler {
	return &healthHandler{rt: rt, services: services}
}

// check returns why the server cannot serve, or nil; at most one check per
// healthEvery (unhealthyEvery while not serving) reaches Config.Health. A
// change of verdict is logged once.
func (h *healthHandler) check(ctx context.Context) error {
	if h.rt.Health == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	stands := healthEvery
	if h.err != nil {
		stands = unhealthyEvery
	}
	if !h.at.IsZero() && time.Since(h.at) < stands {
		return h.err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	h.err, h.at = h.rt.Health(cctx), time.Now()
	reason := ""
	if h.err != nil {
		reason = h.err.Error()
	}
	if reason != h.logged {
		if reason == "" {
			slog.Info("health: serving again")
		} else {
			slog.Warn("health: not serving", "reason", reason)
		}
		h.logged = reason
	}
	return h.err
}

func (h *healthHandler) status(ctx context.Context, name string) (healthv1.HealthCheckResponse_ServingStatus, error) {
	if len(name) > maxServiceName {
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("service: must be at most %d bytes, got %d", maxServiceName, len(name)))
	}
	if name != "" && !slices.Contains(h.services, name) {
		return 0, connect.NewError(connect.CodeNotFound, fmt.Errorf("service: unknown service %q", name))
	}
	if h.check(ctx) != nil {
		return healthv1.HealthCheckResponse_NOT_SERVING, nil
	}
	return healthv1.HealthCheckResponse_SERVING, nil
}

func (h *healthHandler) Check(ctx context.Context, req *connect.Request[healthv1.HealthCheckRequest]) (*connect.Response[healthv1.HealthCheckResponse], error) {
	st, err := h.status(ctx, req.Msg.Service)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&healthv1.HealthCheckResponse{Status: st}), nil
}

// Watch sends the service's status, then again whenever it changes, until
// the client leaves or the server closes. It counts as a live stream.
func (h *healthHandler) Watch(ctx context.Context, req *connect.Request[healthv1.HealthCheckRequest], s *connect.ServerStream[healthv1.HealthCheckResponse]) error {
	st, err := h.status(ctx, req.Msg.Service)
	if connect.CodeOf(err) == connect.CodeInvalidArgument {
		return err
	}
	known := err == nil
	if !known {
		st = healthv1.HealthCheckResponse_SERVICE_UNKNOWN
	}
	release, err := h.rt.liveSlot()
	if err != nil {
		return err
	}
	defer release()
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	for sent := healthv1.HealthCheckResponse_ServingStatus(-1); ; {
		if st != sent {
			if err := sendWithin(ctx, h.rt.SendTimeout, s, &healthv1.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			sent = st
		}
		select {
		case <-ctx.Done():
			return nil
		case <-h.rt.closing:
			return nil
		case <-tick.C:
		}
		if known {
			st, _ = h.status(ctx, req.Msg.Service)
		}
	}
}
