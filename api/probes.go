package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
)

// Paths of the probes and the metrics on the API's port.
const (
	HealthzPath = "/healthz"
	ReadyzPath  = "/readyz"
	MetricsPath = "/metrics"
)

// DefaultReadyLag is Config.ReadyLag's default: how many events a
// projection may lag behind the stream while the server is ready.
const DefaultReadyLag = 1000

// Readiness is /readyz's JSON body.
type Readiness struct {
	Ready bool `json:"ready"`
	// Reason says why not, when the health check fails (the store, a
	// stopped projection, the reactions).
	Reason string `json:"reason,omitempty"`
	// Lagging lists the projections further behind than MaxLag.
	Lagging []LaggingProjection `json:"lagging,omitempty"`
	MaxLag  uint64              `json:"max_lag"`
}

// LaggingProjection is a projection /readyz finds too far behind.
type LaggingProjection struct {
	Projection string `json:"projection"`
	Position   uint64 `json:"position"`
	Lag        uint64 `json:"lag"`
	State      string `json:"state"`
}

// probes serves /healthz and /readyz without a token, like the gRPC
// health service, and /metrics with one; anything else goes to next.
type probes struct {
	next    http.Handler
	health  *healthHandler
	rt      *runtime
	metrics http.Handler // nil: /metrics is not served here
}

func (p probes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case HealthzPath:
		if !getOrHead(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	case ReadyzPath:
		if !getOrHead(w, r) {
			return
		}
		ready := p.ready(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !ready.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(ready)
	case MetricsPath:
		if p.metrics == nil {
			p.next.ServeHTTP(w, r)
			return
		}
		p.metrics.ServeHTTP(w, r)
	default:
		p.next.ServeHTTP(w, r)
	}
}

func getOrHead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// ready is the health service's verdict (the store, every projection
// running, the reactions, the Modules' checks) and every projection's lag
// within Config.ReadyLag; the body lists the lagging projections either
// way.
func (p probes) ready(ctx context.Context) Readiness {
	out := Readiness{Ready: true, MaxLag: p.rt.ReadyLag}
	if err := p.health.check(ctx); err != nil {
		out.Ready, out.Reason = false, err.Error()
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	names := make([]string, 0, len(p.rt.Projections))
	for name := range p.rt.Projections {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		st := p.rt.Projections[name].Status(cctx)
		if st.Lag > p.rt.ReadyLag {
			out.Ready = false
			out.Lagging = append(out.Lagging, LaggingProjection{Projection: name, Position: st.Position, Lag: st.Lag, State: stateName(st.State)})
		}
	}
	if cctx.Err() != nil && out.Ready {
		out.Ready, out.Reason = false, "projection status not read within 2s"
	}
	return out
}

func stateName(s adminv1.ProjectionState) string {
	switch s {
	case adminv1.ProjectionState_PROJECTION_STATE_RUNNING:
		return "running"
	case adminv1.ProjectionState_PROJECTION_STATE_REBUILDING:
		return "rebuilding"
	case adminv1.ProjectionState_PROJECTION_STATE_STOPPED:
		return "stopped"
	}
	return "not running"
}

// MetricsHandler returns h behind a check of the caller's bearer token:
// unless open, only tokens of role admin or metrics get through, others
// get 401 (none, or not valid) or 403 (another role). idp, when set, also
// accepts an identity provider's tokens.
func MetricsHandler(h http.Handler, tokens *Tokens, idp *IdP, open bool) http.Handler {
	if open {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := tokens.authenticate(r.Header, idp)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tideline metrics"`)
			http.Error(w, "metrics: "+publicMessage(err), http.StatusUnauthorized)
			return
		}
		if p.Role != auth.Admin && p.Role != auth.Metrics {
			http.Error(w, "metrics: role "+string(p.Role)+" may not read metrics (admin or metrics)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// publicMessage is what a client may be told of an auth error.
func publicMessage(err error) string {
	var e *es.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "unauthenticated"
}

// MetricsOpen reports whether a metrics listener on addr is served
// without a token: only when it listens on a loopback address (as
// --reflection auto).
func MetricsOpen(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// observer reports every call a handler served to Config.ObserveCall,
// with the error as the client gets it (it sits outside errorInterceptor).
type observer struct {
	observe func(procedure string, stream bool, took time.Duration, err error)
}

func (o observer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		o.observe(req.Spec().Procedure, false, time.Since(start), err)
		return res, err
	}
}

func (o observer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o observer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		o.observe(conn.Spec().Procedure, true, time.Since(start), err)
		return err
	}
}
