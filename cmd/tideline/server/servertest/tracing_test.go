package servertest_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/opentelemetry"
	"github.com/tideline/tideline/adapters/webpush/webpushtest"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/notify/v1/notifyv1connect"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/rewards/v1/rewardsv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
	"github.com/tideline/tideline/wire"
)

// otlpReceiver is an OTLP/HTTP trace receiver: it keeps every span
// exported to it. It decodes each ExportTraceServiceRequest as the
// TracesData it is on the wire: the collector package's own message
// drags in a gRPC gateway that registers grpc.health.v1 a second time,
// beside the API's, and the test binary would panic at start.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func startOTLPReceiver(tb testing.TB) *otlpReceiver {
	tb.Helper()
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a POST of application/x-protobuf to /v1/traces", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var export tracepb.TracesData
		if err := proto.Unmarshal(body, &export); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		// An empty ExportTraceServiceResponse: all accepted.
	}))
	tb.Cleanup(r.Close)
	return r
}

func (r *otlpReceiver) snapshot() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// tracing exports the server's spans to r, sampling every trace. The
// span processor sends every 20 ms rather than every 5 s.
func tracing(tb testing.TB, r *otlpReceiver) servertest.Option {
	tb.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	return func(m *server.Main) { m.Config.Tracing = opentelemetry.Config{Endpoint: r.URL, SampleRatio: 1} }
}

func danger(id, rider string) *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: id, RiderId: rider, DeviceId: "phone-" + rider,
		Kind: safetyv1.DangerKind_DANGER_KIND_FALL, Severity: safetyv1.Severity_SEVERITY_HIGH,
		PeakAccelG: 5, PeakGyroDps: 300, DurationMs: 800,
		Location:   &safetyv1.Location{Lat: 37.5665, Lng: 126.978},
		DetectedAt: timestamppb.New(time.Now().Add(-time.Minute))}
}

// commitHeader returns the headers of the commit stored at seq.
func commitHeader(tb testing.TB, s *servertest.Server, seq uint64) map[string][]string {
	tb.Helper()
	ctx := context.Background()
	st, err := s.Store.JetStream().Stream(ctx, s.Store.StreamName())
	if err != nil {
		tb.Fatal(err)
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		tb.Fatalf("commit %d: %v", seq, err)
	}
	return m.Header
}

// findChild returns the span named name (or, for a name ending in a
// space, starting with it) whose parent is parent, in parent's trace.
func findChild(spans []*tracepb.Span, name string, parent *tracepb.Span) *tracepb.Span {
	for _, sp := range spans {
		if (sp.Name == name || strings.HasSuffix(name, " ") && strings.HasPrefix(sp.Name, name)) &&
			bytes.Equal(sp.TraceId, parent.TraceId) && bytes.Equal(sp.ParentSpanId, parent.SpanId) {
			return sp
		}
	}
	return nil
}

// awaitChain waits (up to 20 s) until r has received the span named root
// and, after it, a span of each name, each the child of the one before
// and the first append also the parent of an apply span; it returns them
// in that order.
func awaitChain(tb testing.TB, r *otlpReceiver, root string, names ...string) []*tracepb.Span {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		spans := r.snapshot()
		var chain []*tracepb.Span
		for _, sp := range spans {
			if sp.Name == root {
				chain = append(chain[:0], sp)
			}
		}
		for _, name := range names {
			if len(chain) == 0 {
				break
			}
			next := findChild(spans, name, chain[len(chain)-1])
			if next == nil {
				break
			}
			chain = append(chain, next)
		}
		if len(chain) == 1+len(names) && findChild(spans, "apply ", chain[1]) != nil {
			return chain
		}
		if time.Now().After(deadline) {
			var lines []string
			for _, sp := range spans {
				lines = append(lines, sp.Name+" "+hex.EncodeToString(sp.SpanId)+" <- "+hex.EncodeToString(sp.ParentSpanId))
			}
			tb.Fatalf("after 20 s, %d spans of the chain %s %v; spans received:\n%s", len(chain), root, names, strings.Join(lines, "\n"))
		}
		<-tick.C
	}
}

// A danger report's trace: the RPC, its append, the read models
// applying the commit, the reaction that raises the alert and its own
// append, the reaction that notifies of the alert, and the webhook POST,
// each the child of the one before, in one trace; the webhook request
// carries the trace on.
func TestTraceFromRPCToNotification(t *testing.T) {
	otlp := startOTLPReceiver(t)
	var hookMu sync.Mutex
	var hookTraceparent string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookMu.Lock()
		hookTraceparent = r.Header.Get("traceparent")
		hookMu.Unlock()
	}))
	t.Cleanup(hook.Close)
	s := servertest.Start(t, tracing(t, otlp), func(m *server.Main) { m.Config.AlertWebhook = hook.URL })

	c := safetyv1connect.NewSafetyServiceClient(http.DefaultClient, s.URL)
	req := connect.NewRequest(&safetyv1.ReportDangerRequest{Event: danger("fall-traced", "rider-t")})
	req.Header().Set("Authorization", "Bearer "+s.Token(t, "rider-t", auth.Rider))
	// A caller's trace context is linked, not trusted as the parent.
	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req.Header().Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	res, err := c.ReportDanger(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}

	chain := awaitChain(t, otlp, "tideline.safety.v1.SafetyService/ReportDanger",
		"append", "react alerts-raise", "append", "react alerts-notify", "notify webhook")
	rpc := chain[0]
	if rpc.Kind != tracepb.Span_SPAN_KIND_SERVER || len(rpc.ParentSpanId) != 0 {
		t.Errorf("RPC span: kind %v, parent %x; want a server span, a root", rpc.Kind, rpc.ParentSpanId)
	}
	if hex.EncodeToString(rpc.TraceId) == callerTrace || len(rpc.Links) != 1 ||
		hex.EncodeToString(rpc.Links[0].TraceId) != callerTrace || hex.EncodeToString(rpc.Links[0].SpanId) != callerSpan {
		t.Errorf("RPC span: trace %x, links %v; want a new trace linked to the caller's span", rpc.TraceId, rpc.Links)
	}
	appendSpan := chain[1]
	if appendSpan.Kind != tracepb.Span_SPAN_KIND_PRODUCER {
		t.Errorf("append span kind %v", appendSpan.Kind)
	}
	// The commit carries the append span's context.
	tp := commitHeader(t, s, res.Msg.Position)[wire.HeaderTraceParent]
	want := "00-" + hex.EncodeToString(rpc.TraceId) + "-" + hex.EncodeToString(appendSpan.SpanId) + "-01"
	if len(tp) != 1 || tp[0] != want {
		t.Errorf("commit's traceparent = %q, want %q", tp, want)
	}
	var applied []string
	for _, sp := range otlp.snapshot() {
		if strings.HasPrefix(sp.Name, "apply ") && bytes.Equal(sp.ParentSpanId, appendSpan.SpanId) && bytes.Equal(sp.TraceId, rpc.TraceId) {
			applied = append(applied, sp.Name)
		}
	}
	t.Logf("read models that applied the report: %v", applied)
	notify := chain[5]
	hookMu.Lock()
	got := hookTraceparent
	hookMu.Unlock()
	if want := "00-" + hex.EncodeToString(rpc.TraceId) + "-" + hex.EncodeToString(notify.SpanId) + "-01"; got != want {
		t.Errorf("webhook request's traceparent = %q, want %q", got, want)
	}
}

// An admin's points adjustment: the RPC, its append, the reaction that
// tells the user (posting to their inbox: an append), the push
// reaction, and the Web Push send to the user's browser, in one trace.
func TestTraceFromRPCToWebPush(t *testing.T) {
	otlp := startOTLPReceiver(t)
	ps := webpushtest.Start(t)
	s := servertest.Start(t, tracing(t, otlp), func(m *server.Main) {
		m.Config.WebPush.TLS = ps.TLS()
		m.Config.EgressAllowPrivate = true // the push service is on loopback
	})
	ctx := context.Background()
	browser := ps.Subscribe()
	sub := connect.NewRequest(&notifyv1.SubscribePushRequest{WebPush: &notifyv1.WebPushSubscription{
		Endpoint: browser.Endpoint, P256Dh: browser.P256dh, Auth: browser.Auth}})
	sub.Header().Set("Authorization", "Bearer "+s.Token(t, "kim", auth.Labeler))
	if _, err := notifyv1connect.NewNotificationServiceClient(http.DefaultClient, s.URL).SubscribePush(ctx, sub); err != nil {
		t.Fatal(err)
	}
	adjust := connect.NewRequest(&rewardsv1.AdjustPointsRequest{UserId: "kim", Points: 10, Reason: "traced"})
	adjust.Header().Set("Authorization", "Bearer "+s.Token(t, "ops", auth.Admin))
	if _, err := rewardsv1connect.NewRewardsServiceClient(http.DefaultClient, s.URL).AdjustPoints(ctx, adjust); err != nil {
		t.Fatal(err)
	}
	chain := awaitChain(t, otlp, "tideline.rewards.v1.RewardsService/AdjustPoints",
		"append", "react rewards-notify", "append", "react notify-push", "notify webpush")
	if push := chain[len(chain)-1]; push.Kind != tracepb.Span_SPAN_KIND_CLIENT || push.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("push span: kind %v, status %v", push.Kind, push.Status)
	}
	if n := len(ps.Pushes()); n != 1 {
		t.Errorf("%d pushes, want 1", n)
	}
}

// With tracing off, commits carry no trace context, even when the
// caller sends one.
func TestNoTraceHeadersWhenTracingOff(t *testing.T) {
	t.Parallel()
	s := servertest.Start(t)
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, s.URL)
	req := connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: "alice", Date: time.Now().UTC().Format(time.DateOnly), Steps: 100})
	req.Header().Set("Authorization", "Bearer "+s.Token(t, "alice", auth.Walker))
	req.Header().Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	res, err := c.RecordSteps(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	h := commitHeader(t, s, res.Msg.Position)
	for _, k := range []string{wire.HeaderTraceParent, wire.HeaderTraceState} {
		if v, ok := h[k]; ok {
			t.Errorf("commit header %s = %q with tracing off", k, v)
		}
	}
	if len(h[wire.HeaderEventTypes]) == 0 {
		t.Errorf("commit headers %v: no %s, so not the commit", h, wire.HeaderEventTypes)
	}
}
