package opentelemetry_test

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/opentelemetry"
	"github.com/tideline/tideline/domain/media"
)

// receiver keeps the OTLP/HTTP export requests it gets, decoded as
// TracesData (on the wire an ExportTraceServiceRequest).
type receiver struct {
	mu     sync.Mutex
	paths  []string
	apiKey []string
	data   []*tracepb.TracesData
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var d tracepb.TracesData
	if err := proto.Unmarshal(body, &d); err != nil || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.paths = append(r.paths, req.URL.Path)
	r.apiKey = append(r.apiKey, req.Header.Get("X-Api-Key"))
	r.data = append(r.data, &d)
}

func TestExportOverOTLPHTTP(t *testing.T) {
	cases := []struct {
		name, endpoint, env, envValue, path string
	}{
		{"flag_without_path", "", "", "", "/v1/traces"},
		{"flag_with_path", "/custom/traces", "", "", "/custom/traces"},
		{"env_base_url", "-", opentelemetry.EnvEndpoint, "/base", "/base/v1/traces"},
		{"env_traces_url", "-", opentelemetry.EnvTracesEndpoint, "/exact", "/exact"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &receiver{}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			cfg := opentelemetry.Config{Endpoint: srv.URL + tc.endpoint, SampleRatio: 1, ServiceVersion: "v9"}
			t.Setenv(opentelemetry.EnvEndpoint, "")
			t.Setenv(opentelemetry.EnvTracesEndpoint, "")
			t.Setenv(opentelemetry.EnvHeaders, "x-api-key=general")
			t.Setenv(opentelemetry.EnvTracesHeaders, "x-api-key=s3cr%3Dt, other = 1")
			if tc.env != "" {
				cfg.Endpoint = ""
				t.Setenv(tc.env, srv.URL+tc.envValue)
			}
			if !opentelemetry.Configured(cfg.Endpoint) {
				t.Fatal("not configured")
			}
			tp, err := opentelemetry.NewTracerProvider(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, parent := tp.Tracer("test").Start(context.Background(), "parent", trace.WithSpanKind(trace.SpanKindServer))
			_, child := tp.Tracer("test").Start(ctx, "child", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
				attribute.String("s", "x"), attribute.Int64("i", 7), attribute.Bool("b", true), attribute.Float64("f", 1.5),
				attribute.StringSlice("ss", []string{"a", "b"})))
			child.SetStatus(codes.Error, "it broke")
			child.End()
			parent.End()
			if err := tp.Shutdown(context.Background()); err != nil { // sends the batch
				t.Fatal(err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.paths) != 1 || rec.paths[0] != tc.path {
				t.Fatalf("exports to %v, want one to %s", rec.paths, tc.path)
			}
			if rec.apiKey[0] != "s3cr=t" {
				t.Errorf("x-api-key = %q, want %s's, decoded", rec.apiKey[0], opentelemetry.EnvTracesHeaders)
			}
			rs := rec.data[0].ResourceSpans
			if len(rs) != 1 || len(rs[0].ScopeSpans) != 1 || len(rs[0].ScopeSpans[0].Spans) != 2 {
				t.Fatalf("export = %v", rec.data[0])
			}
			res := attrs(rs[0].Resource.Attributes)
			if res["service.name"].GetStringValue() != "tideline" || res["service.version"].GetStringValue() != "v9" {
				t.Errorf("resource = %v", res)
			}
			spans := map[string]*tracepb.Span{}
			for _, s := range rs[0].ScopeSpans[0].Spans {
				spans[s.Name] = s
			}
			p, c := spans["parent"], spans["child"]
			if p == nil || c == nil || hex.EncodeToString(c.TraceId) != parent.SpanContext().TraceID().String() ||
				hex.EncodeToString(c.ParentSpanId) != parent.SpanContext().SpanID().String() ||
				hex.EncodeToString(c.SpanId) != child.SpanContext().SpanID().String() || len(p.ParentSpanId) != 0 {
				t.Fatalf("spans = %v", spans)
			}
			if p.Kind != tracepb.Span_SPAN_KIND_SERVER || c.Kind != tracepb.Span_SPAN_KIND_PRODUCER {
				t.Errorf("kinds %v %v", p.Kind, c.Kind)
			}
			if c.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || c.Status.GetMessage() != "it broke" || p.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
				t.Errorf("statuses %v %v", c.Status, p.Status)
			}
			if c.StartTimeUnixNano == 0 || c.EndTimeUnixNano < c.StartTimeUnixNano || c.Flags&1 != 1 {
				t.Errorf("child times %d..%d, flags %x", c.StartTimeUnixNano, c.EndTimeUnixNano, c.Flags)
			}
			a := attrs(c.Attributes)
			if a["s"].GetStringValue() != "x" || a["i"].GetIntValue() != 7 || !a["b"].GetBoolValue() || a["f"].GetDoubleValue() != 1.5 ||
				len(a["ss"].GetArrayValue().GetValues()) != 2 || a["ss"].GetArrayValue().GetValues()[1].GetStringValue() != "b" {
				t.Errorf("attributes = %v", a)
			}
		})
	}
}

func attrs(kvs []*commonpb.KeyValue) map[string]*commonpb.AnyValue {
	m := map[string]*commonpb.AnyValue{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestNewTracerProviderRefuses(t *testing.T) {
	t.Setenv(opentelemetry.EnvEndpoint, "")
	t.Setenv(opentelemetry.EnvTracesEndpoint, "")
	for name, cfg := range map[string]opentelemetry.Config{
		"no_endpoint":     {SampleRatio: 1},
		"not_http":        {Endpoint: "grpc://collector:4317", SampleRatio: 1},
		"no_host":         {Endpoint: "http:///v1/traces", SampleRatio: 1},
		"ratio_above_one": {Endpoint: "http://localhost:4318", SampleRatio: 1.5},
		"ratio_below_0":   {Endpoint: "http://localhost:4318", SampleRatio: -0.1},
	} {
		t.Run(name, func(t *testing.T) {
			if tp, err := opentelemetry.NewTracerProvider(context.Background(), cfg); err == nil {
				tp.Shutdown(context.Background())
				t.Fatal("accepted")
			}
		})
	}
	if opentelemetry.Configured("") {
		t.Error("configured without an endpoint")
	}
	t.Setenv(opentelemetry.EnvHeaders, "novalue")
	if tp, err := opentelemetry.NewTracerProvider(context.Background(), opentelemetry.Config{Endpoint: "http://localhost:4318", SampleRatio: 1}); err == nil {
		tp.Shutdown(context.Background())
		t.Error("malformed headers accepted")
	}
}

type sendFunc func(ctx context.Context, m media.Message) error

func (f sendFunc) Notify(ctx context.Context, m media.Message) error { return f(ctx, m) }

func TestNotifierSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	fail := errors.New("smtp 554")
	var sawSpan trace.SpanContext
	n := opentelemetry.Notifier("email", sendFunc(func(ctx context.Context, m media.Message) error {
		sawSpan = trace.SpanContextFromContext(ctx)
		if m.Subject == "fail" {
			return fail
		}
		return nil
	}))

	// Outside a trace: no span.
	if err := n.Notify(context.Background(), media.Message{Subject: "hi"}); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended()) != 0 || sawSpan.IsValid() {
		t.Fatalf("spans outside a trace: %v", rec.Ended())
	}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "react story-notify")
	if err := n.Notify(ctx, media.Message{Subject: "hi"}); err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(ctx, media.Message{Subject: "fail"}); !errors.Is(err, fail) {
		t.Fatalf("err = %v", err)
	}
	parent.End()
	ended := rec.Ended()
	if len(ended) != 3 {
		t.Fatalf("%d spans", len(ended))
	}
	for i, s := range ended[:2] {
		if s.Name() != "notify email" || s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient {
			t.Errorf("span %d: %s, parent %v, kind %v", i, s.Name(), s.Parent().SpanID(), s.SpanKind())
		}
	}
	if ended[0].Status().Code != codes.Unset || ended[1].Status().Code != codes.Error {
		t.Errorf("statuses %v %v", ended[0].Status(), ended[1].Status())
	}
	if sawSpan.SpanID() != ended[1].SpanContext().SpanID() {
		t.Error("the notifier did not get the span in its context")
	}
	if opentelemetry.Notifier("slack", nil) != nil {
		t.Error("a nil notifier wrapped")
	}
}
