package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/adapters/prometheus/promtest"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// TestMetrics: /metrics on the API's port wants an admin or metrics
// token, the loopback metrics listener none; real RPCs move the RPC,
// append and projection metrics; a metrics token reads metrics only.
func TestMetrics(t *testing.T) {
	f := start(t, func(m *server.Main) { m.Config.MetricsListen = "127.0.0.1:0" })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	url := f.URL + api.MetricsPath
	metricsTok, adminTok := f.Token(t, "prometheus", auth.Metrics), f.Token(t, "root", auth.Admin)

	for _, c := range []struct {
		name, token string
		want        int
	}{
		{"no_token", "", http.StatusUnauthorized},
		{"bad_token", "x.y.z", http.StatusUnauthorized},
		{"walker", f.Token(t, "w", auth.Walker), http.StatusForbidden},
		{"service", f.Token(t, "s", auth.Service), http.StatusForbidden},
		{"metrics", metricsTok, http.StatusOK},
		{"admin", adminTok, http.StatusOK},
	} {
		if code, _ := promtest.Get(t, url, c.token); code != c.want {
			t.Errorf("%s: GET /metrics = %d, want %d", c.name, code, c.want)
		}
	}
	if code, _ := promtest.Get(t, "http://"+f.MetricsAddr()+api.MetricsPath, ""); code != http.StatusOK {
		t.Errorf("loopback --metrics-listen without a token: %d, want 200", code)
	}

	steps := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	// A metrics token is for /metrics only.
	if _, err := steps.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "prometheus", Date: today(), Steps: 1}, metricsTok)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("RecordSteps with a metrics token: %v, want PermissionDenied", err)
	}
	if _, err := steps.RecordSteps(ctx, connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: "w", Date: today(), Steps: 1})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("RecordSteps without a token: %v, want Unauthenticated", err)
	}

	// The gRPC health service's calls count too.
	if _, err := healthv1connect.NewHealthClient(h2c, f.URL).Check(ctx, connect.NewRequest(&healthv1.HealthCheckRequest{})); err != nil {
		t.Fatal(err)
	}
	before := promtest.MustGet(t, url, metricsTok)
	if v, _ := before.Value("tideline_rpc_requests_total", map[string]string{"service": "grpc.health.v1.Health", "method": "Check", "code": "ok"}); v != 1 {
		t.Errorf("health checks counted %g, want 1", v)
	}
	if _, ok := before.Value("go_build_info", nil); !ok {
		t.Error("no go_build_info")
	}
	tok := f.Token(t, "walker-m", auth.Walker)
	var last uint64
	const n = 5
	for i := range n {
		res, err := steps.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "walker-m", Date: today(), Steps: int32(100 + i)}, tok))
		if err != nil {
			t.Fatal(err)
		}
		last = res.Msg.Position
	}
	// A retry with the same idempotency key is a duplicate append.
	for range 2 {
		if _, err := steps.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "walker-m", Date: today(), Steps: 500, IdempotencyKey: "retry-1"}, tok)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := steps.GetSteps(ctx, withToken(&stepsv1.GetStepsRequest{UserIds: []string{"walker-m"}, FromDate: today(), ToDate: today(), MinPosition: last}, tok)); err != nil {
		t.Fatal(err)
	}
	after := promtest.MustGet(t, url, metricsTok)

	rpc := map[string]string{"service": "tideline.steps.v1.StepsService", "method": "RecordSteps"}
	delta := func(name string, labels map[string]string) float64 {
		a, ok := after.Value(name, labels)
		if !ok {
			t.Errorf("%s%v: no series; %s", name, labels, after.Labels(name))
		}
		b, _ := before.Value(name, labels)
		return a - b
	}
	with := func(m map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	if d := delta("tideline_rpc_requests_total", with(rpc, "code", "ok")); d != n+2 {
		t.Errorf("RecordSteps ok: +%g, want +%d", d, n+2)
	}
	if d := delta("tideline_rpc_duration_seconds_count", rpc); d != n+2 {
		t.Errorf("RecordSteps latency observations: +%g, want +%d", d, n+2)
	}
	if d := delta("tideline_appends_total", map[string]string{"result": "duplicate"}); d != 1 {
		t.Errorf("duplicate appends: +%g, want +1", d)
	}
	for code, want := range map[string]float64{"unauthenticated": 1, "permission_denied": 1} {
		if v, _ := after.Value("tideline_rpc_requests_total", with(rpc, "code", code)); v != want {
			t.Errorf("RecordSteps %s: %g, want %g; %s", code, v, want, after.Labels("tideline_rpc_requests_total"))
		}
	}
	if d := delta("tideline_appends_total", map[string]string{"result": "ok"}); d < n+1 {
		t.Errorf("appends ok: +%g, want at least +%d", d, n+1)
	}
	if d := delta("tideline_append_duration_seconds_count", nil); d < n {
		t.Errorf("append latency observations: +%g, want at least +%d", d, n)
	}
	if v, _ := after.Value("tideline_projection_position", map[string]string{"projection": "steps"}); v < float64(last) {
		t.Errorf("steps projection position %g, want at least %d; %s", v, last, after.Labels("tideline_projection_position"))
	}
	if v, _ := after.Value("tideline_projection_state", map[string]string{"projection": "steps", "state": "running"}); v != 1 {
		t.Errorf("steps projection state running = %g, want 1", v)
	}
	if _, ok := after.Value("tideline_projection_lag_events", map[string]string{"projection": "steps"}); !ok {
		t.Error("no lag for the steps projection")
	}
	if v, _ := after.Value("tideline_jetstream_stream_last_sequence", map[string]string{"stream": "EVENTS"}); v < float64(last) {
		t.Errorf("EVENTS last sequence %g, want at least %d", v, last)
	}
	if v, _ := after.Value("tideline_jetstream_stream_bytes", map[string]string{"stream": "EVENTS"}); v <= 0 {
		t.Errorf("EVENTS bytes %g, want > 0", v)
	}
	if _, ok := after.Value("tideline_jetstream_consumer_pending_messages", nil); !ok {
		t.Errorf("no durable consumer pending; %s", after.Labels("tideline_jetstream_stream_messages"))
	}
	// A rebuild counts.
	if err := f.Runner(stepsmodel.Name).Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	rebuilt := promtest.MustGet(t, url, adminTok)
	if a, b := rebuilt.Value("tideline_projection_rebuilds_total", map[string]string{"projection": "steps"}); !b {
		t.Error("no rebuilds series for steps")
	} else if was, _ := after.Value("tideline_projection_rebuilds_total", map[string]string{"projection": "steps"}); a != was+1 {
		t.Errorf("steps rebuilds %g after a rebuild, want %g", a, was+1)
	}
	for _, name := range []string{"tideline_disk_free_bytes", "tideline_disk_size_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if v, _ := after.Value(name, nil); v <= 0 {
			t.Errorf("%s = %g, want > 0", name, v)
		}
	}
}

// TestMetricsListenNotLoopback: a metrics listener on every interface
// wants a token, as the API's port does.
func TestMetricsListenNotLoopback(t *testing.T) {
	f := start(t, func(m *server.Main) { m.Config.MetricsListen = "0.0.0.0:0" })
	_, port, err := net.SplitHostPort(f.MetricsAddr())
	if err != nil {
		t.Fatal(err)
	}
	url := "http://127.0.0.1:" + port + api.MetricsPath
	for _, c := range []struct {
		name, token string
		want        int
	}{
		{"no_token", "", http.StatusUnauthorized},
		{"rider", f.Token(t, "r", auth.Rider), http.StatusForbidden},
		{"metrics", f.Token(t, "prometheus", auth.Metrics), http.StatusOK},
	} {
		if code, _ := promtest.Get(t, url, c.token); code != c.want {
			t.Errorf("%s: GET /metrics on 0.0.0.0 = %d, want %d", c.name, code, c.want)
		}
	}
}

// TestProbes: /healthz and /readyz answer without a token; /readyz says
// 503, why, and which projection lags by how much, while one is stopped
// and further behind than ReadyLag.
func TestProbes(t *testing.T) {
	f := start(t, func(m *server.Main) { m.Config.ReadyLag = 1 })
	get := func(path string) (int, api.Readiness) {
		t.Helper()
		res, err := http.Get(f.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var r api.Readiness
		if path == api.ReadyzPath {
			if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		return res.StatusCode, r
	}
	if code, _ := get(api.HealthzPath); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	if code, r := get(api.ReadyzPath); code != http.StatusOK || !r.Ready || r.MaxLag != 1 {
		t.Fatalf("/readyz = %d %+v, want 200 ready", code, r)
	}

	// A commit the steps projection cannot decode stops it there: the
	// server is not ready, says why, and how far behind it falls.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ack, err := f.Store.JetStream().Publish(ctx, "ev.steps.user.nobody", []byte("\xff\xff not a commit"))
	if err != nil {
		t.Fatal(err)
	}
	steps := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	tok := f.Token(t, "walker-p", auth.Walker)
	for i := range 3 {
		if _, err := steps.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "walker-p", Date: today(), Steps: int32(10 + i)}, tok)); err != nil {
			t.Fatal(err)
		}
	}
	var r api.Readiness
	poll.Until(t, 10*time.Second, "/readyz to list steps 4 behind", func() bool {
		var code int
		code, r = get(api.ReadyzPath)
		for _, l := range r.Lagging {
			if l.Projection == stepsmodel.Name && l.Lag >= 4 && l.State == "stopped" {
				return code == http.StatusServiceUnavailable && !r.Ready && strings.Contains(r.Reason, "projection steps stopped")
			}
		}
		return false
	})

	// Skipping the commit resumes it: ready again.
	if _, err := f.Runner(stepsmodel.Name).Skip(ctx, ack.Sequence, "test: not a commit", es.Metadata{Actor: "admin:root"}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "/readyz ready after the skip", func() bool {
		code, r := get(api.ReadyzPath)
		return code == http.StatusOK && r.Ready && len(r.Lagging) == 0
	})
}

// BenchmarkRecordStepsMetrics measures what the Prometheus metrics cost
// RecordSteps (64 callers): a server with metrics on (the default) and
// one with them off (--metrics=false) take turns, 500 writes at a time,
// so both see the same machine load; ratio is the throughput with metrics
// over without:
//
//	go test ./api/ -run '^$' -bench RecordStepsMetrics -benchtime 20000x -count 3
func BenchmarkRecordStepsMetrics(b *testing.B) {
	const chunk = 500
	type side struct {
		c       stepsv1connect.StepsServiceClient
		tok     string
		n       int
		elapsed time.Duration
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sides []*side
	for _, off := range []bool{false, true} {
		f := start(b, func(m *server.Main) { m.Config.NoMetrics = off })
		sides = append(sides, &side{c: stepsv1connect.NewStepsServiceClient(h2c, f.URL), tok: f.Token(b, "shop", auth.Service)})
	}
	var k atomic.Int32
	write := func(s *side, n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		t0 := time.Now()
		for w := range 64 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					req := withToken(&stepsv1.RecordStepsRequest{UserId: fmt.Sprintf("w%d", w), Date: today(), Steps: k.Add(1) % 200000}, s.tok)
					if _, err := s.c.RecordSteps(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		s.elapsed += time.Since(t0)
		s.n += n
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		for _, s := range sides {
			write(s, min(chunk, b.N-done))
		}
	}
	b.StopTimer()
	rate := func(s *side) float64 { return float64(s.n) / s.elapsed.Seconds() }
	b.ReportMetric(rate(sides[0]), "req/s-metrics-on")
	b.ReportMetric(rate(sides[1]), "req/s-metrics-off")
	b.ReportMetric(rate(sides[0])/rate(sides[1]), "ratio")
	b.ReportMetric(0, "ns/op")
}
