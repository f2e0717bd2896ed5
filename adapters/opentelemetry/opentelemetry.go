// Package opentelemetry traces Tideline with OpenTelemetry: the tracer
// provider that exports spans over OTLP/HTTP (NewTracerProvider), the
// server span of each Connect RPC (Interceptor), and the span of each
// notification sent (Notifier). The event store, the projection runners
// and the reactions start their own spans from the provider they are
// given (adapters/jetstream, adapters/reactions); the trace context
// travels between them in each commit's headers (wire.HeaderTraceParent).
//
// (connectrpc.com/otelconnect would give the RPC spans, but its v0.11.0,
// which buf's requirement fixes in go.mod, is built for connect-go v2,
// and the API serves connect-go v1: Interceptor follows otelconnect's
// span names, attributes and its untrusted-remote default. The exporter
// is ours too: see exporter.)
package opentelemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tideline/tideline/domain/media"
)

// Config configures tracing.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's URL (http or https), e.g.
	// http://localhost:4318; spans go to its path, or to /v1/traces when
	// it has none. Empty: the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// (the traces URL itself) or OTEL_EXPORTER_OTLP_ENDPOINT (a base URL,
	// /v1/traces appended).
	Endpoint string
	// SampleRatio is the share of new traces recorded, 0 to 1; a trace
	// begun by a caller keeps its caller's decision (parent-based).
	SampleRatio float64
	// ServiceName is the service.name resource attribute; default
	// "tideline". OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override.
	ServiceName    string
	ServiceVersion string
}

// The standard environment variables that name the OTLP endpoint when
// Config.Endpoint is empty, and the headers every export sends (a
// backend's API key: key=value pairs, comma-separated, values
// percent-encoded); the traces' own variable wins over the general one.
const (
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesHeaders  = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
	EnvHeaders        = "OTEL_EXPORTER_OTLP_HEADERS"
)

// exportHeaders reads EnvTracesHeaders, else EnvHeaders.
func exportHeaders() (http.Header, error) {
	name := EnvTracesHeaders
	v := os.Getenv(name)
	if v == "" {
		name = EnvHeaders
		v = os.Getenv(name)
	}
	h := http.Header{}
	for pair := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: %q is not key=value", name, pair)
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("%s: value of %s: %w", name, k, err)
		}
		h.Add(k, dec)
	}
	return h, nil
}

// Configured reports whether tracing is asked for: endpoint is set, or
// EnvTracesEndpoint or EnvEndpoint.
func Configured(endpoint string) bool {
	return endpoint != "" || os.Getenv(EnvTracesEndpoint) != "" || os.Getenv(EnvEndpoint) != ""
}

// tracesURL is where spans go: cfg.Endpoint's path, or /v1/traces when
// it has none; else the environment's.
func tracesURL(endpoint string) (string, error) {
	name, base := "otlp endpoint", true
	switch {
	case endpoint != "":
	case os.Getenv(EnvTracesEndpoint) != "":
		name, endpoint, base = EnvTracesEndpoint, os.Getenv(EnvTracesEndpoint), false
	case os.Getenv(EnvEndpoint) != "":
		name, endpoint = EnvEndpoint, os.Getenv(EnvEndpoint)
	default:
		return "", errors.New("no otlp endpoint: set one, or " + EnvTracesEndpoint + " or " + EnvEndpoint)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%s %q: want an http or https URL with a host, e.g. http://localhost:4318", name, endpoint)
	}
	switch {
	case name == EnvEndpoint: // a base URL, per the OTLP exporter specification
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	case base && (u.Path == "" || u.Path == "/"):
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// NewTracerProvider returns a tracer provider that samples as cfg says
// and exports spans in batches over OTLP/HTTP (protobuf) to cfg.Endpoint
// or the environment's (see Config.Endpoint). Nothing is sent until the
// first batch (every 5 s, or OTEL_BSP_SCHEDULE_DELAY ms), so an
// unreachable collector is no error here: each batch it fails to take is
// dropped and reported to the OpenTelemetry error handler (logged). The
// caller must Shutdown the provider, which sends what is still buffered.
func NewTracerProvider(ctx context.Context, cfg Config) (*sdktrace.TracerProvider, error) {
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, fmt.Errorf("trace sample ratio %v: want 0 to 1", cfg.SampleRatio)
	}
	u, err := tracesURL(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	headers, err := exportHeaders()
	if err != nil {
		return nil, err
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", cmp.Or(cfg.ServiceName, "tideline"))}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.ServiceVersion))
	}
	// Later detectors win: the environment overrides the defaults.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(&exporter{url: u, headers: headers, client: &http.Client{Timeout: exportTimeout}}),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	), nil
}

// tracerName names the spans this package starts.
const tracerName = "github.com/tideline/tideline/adapters/opentelemetry"

// Interceptor returns a Connect interceptor that makes each RPC a
// server span named after its procedure (tideline.steps.v1.StepsService/RecordSteps),
// with rpc.system, rpc.service and rpc.method attributes and the RPC's
// code. A trace context the caller sends (traceparent) is not trusted
// to be the parent, as otelconnect does by default: the RPC starts a new
// trace, linked to the caller's span. Handlers get the span in their
// context, so what they append continues the trace. Client calls pass
// through untraced.
func Interceptor(tp trace.TracerProvider) connect.Interceptor {
	return interceptor{tracer: tp.Tracer(tracerName)}
}

type interceptor struct{ tracer trace.Tracer }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, span := i.start(ctx, req.Spec(), req.Peer(), req.Header())
		res, err := next(ctx, req)
		end(span, req.Peer().Protocol, err)
		return res, err
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, span := i.start(ctx, conn.Spec(), conn.Peer(), conn.RequestHeader())
		err := next(ctx, conn)
		end(span, conn.Peer().Protocol, err)
		return err
	}
}

// rpcSystem is the rpc.system attribute of each Connect protocol.
var rpcSystem = map[string]string{connect.ProtocolConnect: "connect_rpc", connect.ProtocolGRPC: "grpc", connect.ProtocolGRPCWeb: "grpc_web"}

func (i interceptor) start(ctx context.Context, spec connect.Spec, peer connect.Peer, h map[string][]string) (context.Context, trace.Span) {
	name := strings.TrimPrefix(spec.Procedure, "/")
	service, method, _ := strings.Cut(name, "/")
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("rpc.system", cmp.Or(rpcSystem[peer.Protocol], peer.Protocol)),
		attribute.String("rpc.service", service),
		attribute.String("rpc.method", method))}
	if remote := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(h))); remote.IsValid() {
		opts = append(opts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: remote}))
	}
	return i.tracer.Start(ctx, name, opts...)
}

// end ends an RPC's span with its code: an error status for the codes a
// server is to blame for, as the OpenTelemetry RPC conventions say.
func end(span trace.Span, protocol string, err error) {
	code := connect.Code(0) // ok
	if err != nil {
		code = connect.CodeOf(err)
	}
	if protocol == connect.ProtocolConnect {
		if err != nil {
			span.SetAttributes(attribute.String("rpc.connect_rpc.error_code", code.String()))
		}
	} else {
		span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	}
	switch code {
	case connect.CodeUnknown, connect.CodeDeadlineExceeded, connect.CodeUnimplemented,
		connect.CodeInternal, connect.CodeUnavailable, connect.CodeDataLoss:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Notifier returns n, each of whose sends within a trace (a sampled span
// in ctx: a traced reaction's) is a span "notify <kind>", child of that
// one; outside a trace it adds nothing. A nil n stays nil.
func Notifier(kind string, n media.Notifier) media.Notifier {
	if n == nil {
		return nil
	}
	return notifier{kind: kind, n: n}
}

type notifier struct {
	kind string
	n    media.Notifier
}

func (n notifier) Notify(ctx context.Context, m media.Message) error {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsSampled() {
		return n.n.Notify(ctx, m)
	}
	ctx, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "notify "+n.kind,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attribute.String("tideline.notifier", n.kind)))
	defer span.End()
	err := n.n.Notify(ctx, m)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
