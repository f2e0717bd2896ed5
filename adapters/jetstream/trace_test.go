package jetstream_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/wire"
)

// A traced append puts its span's context in the commit's headers, and
// the runner applies a commit whose context is sampled in a span that is
// the append's child; an unsampled context or none starts no apply span.
func TestTraceContextThroughCommits(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	s := openStore(t, tljs.Config{TracerProvider: tp})
	p := newCountingProjection("traced", 1)
	r := tljs.NewRunner(s, p, tljs.RunnerOptions{Logger: quietLogger})
	stop := startRunner(t, r)
	defer stop()

	stream := es.StreamID{Context: "steps", Type: "day", ID: "alice"}
	appendIn := func(ctx context.Context) uint64 {
		t.Helper()
		res, err := s.Append(ctx, stream, []proto.Message{&stepsv1.StepsRecorded{UserId: "alice", Date: "2026-01-01", Steps: 1}}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err != nil {
			t.Fatal(err)
		}
		return res.Position.Seq
	}
	header := func(seq uint64) map[string][]string {
		t.Helper()
		st, err := s.JetStream().Stream(context.Background(), s.StreamName())
		if err != nil {
			t.Fatal(err)
		}
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		return m.Header
	}

	ctx, rpc := tp.Tracer("test").Start(context.Background(), "rpc")
	sampled := appendIn(ctx)
	rpc.End()
	unsampledCtx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}})) // flags 00: not sampled
	unsampled := appendIn(unsampledCtx)
	untraced := appendIn(context.Background())
	waitFor(t, r, untraced)

	var appendSpan sdktrace.ReadOnlySpan
	var applies []sdktrace.ReadOnlySpan
	poll.Until(t, 5*time.Second, "the apply span ends", func() bool {
		applies = applies[:0]
		for _, sp := range rec.Ended() {
			switch sp.Name() {
			case "append":
				appendSpan = sp
			case "apply traced":
				applies = append(applies, sp)
			}
		}
		return len(applies) > 0
	})
	if appendSpan == nil || appendSpan.Parent().SpanID() != rpc.SpanContext().SpanID() || appendSpan.SpanKind() != trace.SpanKindProducer {
		t.Fatalf("append span %v", appendSpan)
	}
	want := "00-" + rpc.SpanContext().TraceID().String() + "-" + appendSpan.SpanContext().SpanID().String() + "-01"
	if got := header(sampled)[wire.HeaderTraceParent]; len(got) != 1 || got[0] != want {
		t.Errorf("sampled commit's traceparent %q, want %q", got, want)
	}
	if got := header(unsampled)[wire.HeaderTraceParent]; len(got) != 1 || got[0][len(got[0])-3:] != "-00" {
		t.Errorf("unsampled commit's traceparent %q, want one flagged 00", got)
	}
	if got, ok := header(untraced)[wire.HeaderTraceParent]; ok {
		t.Errorf("untraced commit's traceparent %q", got)
	}
	if len(applies) != 1 || applies[0].Parent().SpanID() != appendSpan.SpanContext().SpanID() ||
		applies[0].SpanContext().TraceID() != rpc.SpanContext().TraceID() {
		t.Errorf("apply spans %v, want one, the append's child", applies)
	}
	for _, sp := range rec.Ended() {
		if sp.Name() == "append" && sp.SpanContext().SpanID() != appendSpan.SpanContext().SpanID() && sp.SpanContext().IsSampled() {
			t.Errorf("a second sampled append span: %v", sp)
		}
	}
}
