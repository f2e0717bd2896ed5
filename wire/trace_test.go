package wire_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tideline/tideline/wire"
)

// The W3C propagator writes and reads a commit's trace context through
// TraceCarrier under the exact lowercase header names.
func TestTraceCarrier(t *testing.T) {
	ts, err := trace.ParseTraceState("tl=1")
	if err != nil {
		t.Fatal(err)
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2}, SpanID: trace.SpanID{3}, TraceFlags: trace.FlagsSampled, TraceState: ts})
	h := nats.Header{wire.HeaderEventTypes: {"x"}}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), wire.TraceCarrier(h))
	if got, want := h[wire.HeaderTraceParent], "00-01020000000000000000000000000000-0300000000000000-01"; len(got) != 1 || got[0] != want {
		t.Errorf("%s = %q, want %q", wire.HeaderTraceParent, got, want)
	}
	if got := h[wire.HeaderTraceState]; len(got) != 1 || got[0] != "tl=1" {
		t.Errorf("%s = %q", wire.HeaderTraceState, got)
	}
	back := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), wire.TraceCarrier(h)))
	if !back.Equal(sc.WithRemote(true)) {
		t.Errorf("extracted %v, want %v", back, sc)
	}
	if keys := wire.TraceCarrier(h).Keys(); len(keys) != 3 {
		t.Errorf("keys %v", keys)
	}
	if got := wire.TraceCarrier(nats.Header{}).Get(wire.HeaderTraceParent); got != "" {
		t.Errorf("empty header's traceparent %q", got)
	}
}
