// Package api serves Tideline's Connect-RPC services (Connect, gRPC and
// gRPC-Web on one HTTP/2-cleartext port) with reflection, health, CORS,
// bearer-token auth and one mapping from domain errors to Connect codes.
package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	connectcors "connectrpc.com/cors"
	"connectrpc.com/grpcreflect"
	"github.com/rs/cors"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
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
// adapters/jetstream.Runner implements it (through cmd/tideline/server).
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

// DeviceDirectory is the edge device registry as the admin API reads it.
type DeviceDirectory interface {
	// Devices returns every registered device, sorted by id.
	Devices() ([]*adminv1.Device, error)
}

// Config is what every service shares: token checks, the admin
// service's projections, read-your-writes and live-stream bounds, health,
// reflection and CORS. Nothing in it belongs to one context: each
// context's handlers come as Services (StepsServices, SafetyServices,
// DeliveryServices, DashboardServices).
type Config struct {
	Tokens *Tokens
	// IdP, when set, also accepts an external identity provider's access
	// tokens (those not issued by Tokens).
	IdP *IdP
	// Projections by name, for the admin service.
	Projections map[string]ProjectionControl
	// DeviceRejections lists the edge device commits the hub refused
	// (adapters/devicegate.Gate). Optional: without it
	// ListRejectedDeviceCommits is Unavailable.
	DeviceRejections DeviceRejections
	// Devices lists the registered edge devices. Optional: without it
	// ListDevices is Unavailable.
	Devices DeviceDirectory
	// History answers the admin service's ProjectionAt, by projection
	// name; a projection missing from it is Unavailable there.
	History map[string]Past
	// LastPosition reports the event stream's last position. Queries use
	// it to refuse a min_position past the stream's end.
	LastPosition func(ctx context.Context) (uint64, error)
	// CORSOrigins allowed for browsers; empty allows any origin.
	CORSOrigins []string
	// MaxWait bounds how long a query waits for min_position; default 5s.
	MaxWait time.Duration
	// Reflection says who may use gRPC server reflection; the zero value
	// serves it to callers with a valid token.
	Reflection Reflection
	// MaxMessageBytes bounds every request message, as sent (compressed)
	// and decompressed, and a unary call's whole body; default
	// DefaultMaxMessageBytes. Larger messages are ResourceExhausted.
	MaxMessageBytes int
	// SendTimeout bounds how long a live stream (watch) waits for a client
	// to take one update; a client that reads nothing for that long is
	// dropped. Default DefaultSendTimeout.
	SendTimeout time.Duration
	// MaxLiveStreams bounds the live streams (watches, health watches)
	// open at once; more are ResourceExhausted. Default
	// DefaultMaxLiveStreams.
	MaxLiveStreams int
	// Console, when set, serves the web console under ConsolePath without
	// a token (the page signs in and sends its token with each call); /
	// redirects to it.
	Console http.Handler
	// Health reports what the server depends on (the event store, every
	// projection, the reactions): nil when all can serve, else why not.
	// The health service answers NOT_SERVING while it fails. Optional.
	Health func(ctx context.Context) error
	// Interceptors run around every call of the Services (not health or
	// reflection), outside the error mapping, so they see Connect errors:
	// tracing, built by cmd. Optional.
	Interceptors []connect.Interceptor
	// ReadyLag is how many events any projection may lag behind the
	// stream while /readyz says ready; default DefaultReadyLag.
	ReadyLag uint64
	// Metrics, when set, is served at MetricsPath on the API's port to
	// callers with an admin or metrics token (wrap nothing: New does).
	Metrics http.Handler
	// ObserveCall, when set, is told of every RPC a service handled
	// (procedure "/pkg.Service/Method", whether it is a stream, how long
	// it took, its error as the client gets it) and of every call to a
	// known procedure the auth gate refused. It must be quick and safe
	// for concurrent use.
	ObserveCall func(procedure string, stream bool, took time.Duration, err error)
}

// Defaults of Config.
const (
	DefaultMaxMessageBytes = 1 << 20
	DefaultSendTimeout     = 10 * time.Second
	DefaultMaxLiveStreams  = 10000
)

// Service is one Connect service of a context, as the context's
// constructor (StepsServices, ...) builds it over the context's domain
// service and read models. New mounts it behind the shared auth gate,
// limits and error mapping, and lists it in reflection and health.
type Service struct {
	Name  string // fully qualified, e.g. tideline.steps.v1.StepsService; a Handler's path prefix
	mount func(rt *runtime, opts connect.HandlerOption) (string, http.Handler)
	plain http.Handler // a Handler's
}

// Handler returns a Service that serves h, a plain HTTP handler, for
// every path under prefix ("/blobs/": a path of one segment without a
// dot, so it never meets a Connect service's "/pkg.Service/"). New serves
// it on the API's port behind the same CORS policy (with the methods GET,
// HEAD, PUT and POST), but neither asks for a bearer token nor bounds
// request bodies: h authenticates (a signed URL) and bounds what it
// reads itself.
func Handler(prefix string, h http.Handler) Service { return Service{Name: prefix, plain: h} }

// runtime is what every handler shares: the config, with defaults
// applied, and the live streams' state.
type runtime struct {
	Config
	closing chan struct{}
	live    *atomic.Int64 // open live streams
}

// API is the set of services over a Config.
type API struct {
	handler http.Handler
	closing chan struct{}
	once    sync.Once
	live    *atomic.Int64
}

// LiveStreams returns how many live streams (watches) are open.
func (a *API) LiveStreams() int64 { return a.live.Load() }

// Handler returns the HTTP handler serving every service.
func (a *API) Handler() http.Handler { return a.handler }

// Close ends every live stream (watch RPCs) so an HTTP server shutdown
// does not wait for clients that never leave. Safe to call twice.
func (a *API) Close() { a.once.Do(func() { close(a.closing) }) }

// New returns the API serving services and the admin service (with
// health and reflection). Every call but health checks (and reflection
// when d.Reflection is ReflectionOpen) needs a valid bearer token,
// checked before the request body is read.
func New(d Config, services ...Service) (*API, error) {
	if d.Tokens == nil {
		return nil, errors.New("api: Tokens is required")
	}
	if d.MaxWait == 0 {
		d.MaxWait = 5 * time.Second
	}
	if d.MaxMessageBytes <= 0 {
		d.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if d.SendTimeout <= 0 {
		d.SendTimeout = DefaultSendTimeout
	}
	if d.MaxLiveStreams <= 0 {
		d.MaxLiveStreams = DefaultMaxLiveStreams
	}
	if d.ReadyLag == 0 {
		d.ReadyLag = DefaultReadyLag
	}
	rt := &runtime{Config: d, closing: make(chan struct{}), live: new(atomic.Int64)}
	limits := []connect.HandlerOption{connect.WithReadMaxBytes(d.MaxMessageBytes)}
	// Outermost first: tracing (d.Interceptors), the metrics' observer,
	// then the error mapping, so both see the errors clients get.
	interceptors := slices.Clip(d.Interceptors)
	if d.ObserveCall != nil {
		interceptors = append(interceptors, observer{d.ObserveCall})
	}
	interceptors = append(interceptors, errorInterceptor{})
	opts := connect.WithHandlerOptions(append(limits,
		connect.WithInterceptors(interceptors...),
		// Compressing responses of a few bytes costs more than it saves.
		connect.WithCompressMinBytes(1024),
	)...)
	mux := http.NewServeMux()
	var names []string
	plain := prefixes{}
	if d.Console != nil {
		plain[ConsolePath] = d.Console
	}
	for _, s := range append(services, adminService()) {
		if slices.Contains(names, s.Name) || plain[s.Name] != nil {
			return nil, fmt.Errorf("api: service %s given twice", s.Name)
		}
		if s.plain != nil {
			seg, rest, _ := strings.Cut(strings.TrimPrefix(s.Name, "/"), "/")
			if !strings.HasPrefix(s.Name, "/") || seg == "" || strings.Contains(seg, ".") || rest != "" {
				return nil, fmt.Errorf("api: handler prefix %q: want /name/, name without a dot", s.Name)
			}
			plain[s.Name] = s.plain
			continue
		}
		names = append(names, s.Name)
		mux.Handle(s.mount(rt, opts))
	}

	g := &gate{
		tokens:  d.Tokens,
		idp:     d.IdP,
		open:    map[string]bool{},
		streams: map[string]bool{},
		live:    map[string]bool{},
		maxBody: int64(d.MaxMessageBytes) + envelopeSlack,
		errors:  connect.NewErrorWriter(limits...),
		observe: d.ObserveCall,
	}
	for _, s := range append(names, healthv1connect.HealthName) {
		if err := g.addStreams(s); err != nil {
			return nil, err
		}
	}
	health := newHealthHandler(rt, names)
	healthOpts := limits
	if d.ObserveCall != nil { // probes' calls count too
		healthOpts = append(slices.Clip(limits), connect.WithInterceptors(observer{d.ObserveCall}))
	}
	path, h := healthv1connect.NewHealthHandler(health, healthOpts...)
	mux.Handle(path, h)
	g.open[path] = true
	if d.Reflection != ReflectionOff {
		reflector := grpcreflect.NewStaticReflector(append(names, healthv1connect.HealthName)...)
		for _, newHandler := range []func(*grpcreflect.Reflector, ...connect.HandlerOption) (string, http.Handler){grpcreflect.NewHandlerV1, grpcreflect.NewHandlerV1Alpha} {
			path, h := newHandler(reflector, limits...)
			mux.Handle(path, h)
			g.open[path] = d.Reflection == ReflectionOpen
			g.streams[path+"ServerReflectionInfo"] = true // bidirectional
		}
	}
	g.next = mux

	c := cors.New(cors.Options{
		AllowedOrigins: d.CORSOrigins,
		AllowedMethods: connectcors.AllowedMethods(),
		// Browsers may send every request header the API reads (the token,
		// and step.StepService's idempotency key and min position) and
		// read the position it returns.
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization", IdempotencyKeyHeader, MinPositionHeader),
		ExposedHeaders: append(connectcors.ExposedHeaders(), PositionHeader),
		MaxAge:         7200,
	})
	handler := c.Handler(g)
	if len(plain) > 0 {
		pc := cors.New(cors.Options{
			AllowedOrigins: d.CORSOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost},
			AllowedHeaders: []string{"Content-Type", "Range", "If-Range", "If-None-Match", "If-Modified-Since"},
			ExposedHeaders: []string{"ETag", "Content-Range", "Accept-Ranges", "Content-Disposition"},
			MaxAge:         7200,
		})
		for p, ph := range plain {
			plain[p] = pc.Handler(ph)
		}
		handler = plain.or(handler)
	}
	if d.Console != nil {
		handler = toConsole(handler)
	}
	pr := probes{next: handler, health: health, rt: rt}
	if d.Metrics != nil {
		pr.metrics = MetricsHandler(d.Metrics, d.Tokens, d.IdP, false)
	}
	handler = pr
	return &API{handler: handler, closing: rt.closing, live: rt.live}, nil
}

// ConsolePath is where Config.Console is served.
const ConsolePath = "/console/"

// toConsole sends a browser that asks for / (or /console) to the console.
func toConsole(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path == "/" || r.URL.Path == "/console") && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			http.Redirect(w, r, ConsolePath, http.StatusFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// prefixes are the Handlers, by path prefix.
type prefixes map[string]http.Handler

// or returns a handler that serves a request with the Handler of its
// path's first segment, if any, else with next.
func (ps prefixes) or(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.IndexByte(r.URL.Path[min(1, len(r.URL.Path)):], '/'); i >= 0 {
			if h := ps[r.URL.Path[:i+2]]; h != nil {
				h.ServeHTTP(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Reflection is who may use gRPC server reflection.
type Reflection int

const (
	ReflectionToken Reflection = iota // callers with a valid token, any role
	ReflectionOpen                    // anyone
	ReflectionOff                     // not served
)

func (r Reflection) String() string {
	switch r {
	case ReflectionOpen:
		return "open"
	case ReflectionOff:
		return "off"
	}
	return "token"
}

// ParseReflection reads the --reflection flag: "auto" is ReflectionOpen
// when the API listens on a loopback address only and ReflectionToken
// otherwise; "on" is ReflectionOpen, "token" ReflectionToken, "off"
// ReflectionOff.
func ParseReflection(mode string, listen net.Addr) (Reflection, error) {
	switch mode {
	case "auto":
		if a, ok := listen.(*net.TCPAddr); ok && a.IP.IsLoopback() {
			return ReflectionOpen, nil
		}
		return ReflectionToken, nil
	case "on":
		return ReflectionOpen, nil
	case "token":
		return ReflectionToken, nil
	case "off":
		return ReflectionOff, nil
	}
	return 0, fmt.Errorf("want auto, on, token or off, got %q", mode)
}

// HTTP server defaults.
const (
	DefaultIdleTimeout = 60 * time.Second
	DefaultMaxConns    = 4096
)

// NewServer returns an HTTP server for h that speaks HTTP/1.1 and
// HTTP/2 cleartext (gRPC needs HTTP/2), with bounds against clients that
// hold connections: a connection without a request for IdleTimeout
// (DefaultIdleTimeout) is closed, headers must arrive within 10s, an
// HTTP/2 connection silent for 30s is pinged and closed if the ping is not
// answered in 15s, one whose writes make no progress for 30s is closed,
// and it carries at most 100 concurrent calls. Callers may change the
// fields before serving; serve on LimitListener to cap connections.
func NewServer(h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
		Protocols:         &p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       DefaultIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 100,
			SendPingTimeout:      30 * time.Second,
			PingTimeout:          15 * time.Second,
			WriteByteTimeout:     30 * time.Second,
		},
	}
}

// waitFor implements min_position: it waits, bounded by rt.MaxWait, until
// rm has applied pos. A pos past anything written is OutOfRange at once
// (it is never trusted, nor waited for); a read model stopped before pos
// is Unavailable at once.
func (rt *runtime) waitFor(ctx context.Context, rm ReadModel, pos uint64) error {
	if pos == 0 || rm.Position() >= pos {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, rt.MaxWait)
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
	return es.Errorf(es.Unavailable, "read model has not reached min_position %d within %s (at %d)", pos, rt.MaxWait, rm.Position())
}

// checkPosition refuses a min_position past the event stream's end.
func (rt *runtime) checkPosition(ctx context.Context, pos uint64) error {
	if pos == 0 || rt.LastPosition == nil {
		return nil
	}
	last, err := rt.LastPosition(ctx)
	if err != nil {
		return es.Wrap(es.Unavailable, "event store unreachable", err)
	}
	if pos > last {
		return &es.Error{Kind: es.OutOfRange, Field: "min_position", Message: fmt.Sprintf("%d is past the last written position %d", pos, last)}
	}
	return nil
}

// validTime checks a query's timestamp field: a valid timestamp no
// earlier than es.MinTime.
func validTime(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, es.Invalidf(field, "%v", err)
	}
	t := ts.AsTime()
	if t.Before(es.MinTime) {
		return time.Time{}, es.Invalidf(field, "%s is before %s, the earliest time accepted", t.Format(time.RFC3339), es.MinTime.Format(time.RFC3339))
	}
	return t, nil
}
