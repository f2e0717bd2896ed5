package prometheus_test

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/adapters/prometheus"
	"github.com/tideline/tideline/adapters/prometheus/promtest"
	"github.com/tideline/tideline/domain/es"
)

// TestObserved: each hook moves its series, with the labels the README
// and the rules name.
func TestObserved(t *testing.T) {
	m := prometheus.New()
	m.Reactions("points")
	m.ObserveCall("/tideline.steps.v1.StepsService/RecordSteps", false, 3*time.Millisecond, nil)
	m.ObserveCall("/tideline.steps.v1.StepsService/RecordSteps", false, 0, connect.NewError(connect.CodeUnauthenticated, errors.New("no token")))
	m.ObserveCall("/step.StepService/StreamUserSteps", true, time.Minute, connect.NewError(connect.CodeCanceled, errors.New("gone")))
	m.ObserveAppend(time.Millisecond, false, nil)
	m.ObserveAppend(time.Millisecond, true, nil)
	m.ObserveAppend(time.Millisecond, false, es.ErrConflict)
	m.ObserveAppend(time.Millisecond, false, es.ErrStoreFull)
	m.ObserveAppend(time.Millisecond, false, es.Errorf(es.Unavailable, "down"))
	m.ObserveReaction("points", "handled")
	m.ObserveReaction("points", "failed")
	m.ObserveReaction("points", "failed")
	m.ObserveRetry(nil)
	m.ObserveRetry(nil)
	m.ObserveReaction("story", "poisoned")
	m.Disk(func() (uint64, uint64, int64, bool) { return 5 << 30, 100 << 30, 64 << 20, true })
	seen := time.Unix(1_700_000_000, 0)
	m.Devices(func() (map[string]bool, error) { return map[string]bool{"bike-1": true, "bike-2": false}, nil },
		func() []prometheus.DeviceLane {
			return []prometheus.DeviceLane{
				{Device: "bike-1", Lane: "telemetry", LastCommit: seen, Backlog: 42},
				{Device: "bike-1", Lane: "danger", LastCommit: seen, Backlog: -1},
			}
		})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	s := promtest.MustGet(t, srv.URL, "")

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tideline_rpc_requests_total", map[string]string{"service": "tideline.steps.v1.StepsService", "method": "RecordSteps", "code": "ok"}, 1},
		{"tideline_rpc_requests_total", map[string]string{"service": "tideline.steps.v1.StepsService", "method": "RecordSteps", "code": "unauthenticated"}, 1},
		{"tideline_rpc_requests_total", map[string]string{"service": "step.StepService", "method": "StreamUserSteps", "code": "canceled"}, 1},
		{"tideline_rpc_duration_seconds_count", map[string]string{"method": "RecordSteps"}, 1}, // the refused call only counts
		{"tideline_rpc_duration_seconds_sum", map[string]string{"method": "RecordSteps"}, 0.003},
		{"tideline_appends_total", map[string]string{"result": "ok"}, 1},
		{"tideline_appends_total", map[string]string{"result": "duplicate"}, 1},
		{"tideline_appends_total", map[string]string{"result": "conflict"}, 1},
		{"tideline_appends_total", map[string]string{"result": "full"}, 1},
		{"tideline_appends_total", map[string]string{"result": "unavailable"}, 1},
		{"tideline_appends_total", map[string]string{"result": "error"}, 0},
		{"tideline_append_duration_seconds_count", nil, 5},
		{"tideline_append_retries_total", nil, 2},
		{"tideline_reactions_handled_total", map[string]string{"reaction": "points"}, 1},
		{"tideline_reactions_failed_total", map[string]string{"reaction": "points"}, 2},
		{"tideline_reactions_poisoned_total", map[string]string{"reaction": "points"}, 0},
		{"tideline_reactions_poisoned_total", map[string]string{"reaction": "story"}, 1},
		{"tideline_disk_free_bytes", nil, 5 << 30},
		{"tideline_disk_size_bytes", nil, 100 << 30},
		{"tideline_disk_reserve_bytes", nil, 64 << 20},
		{"tideline_edge_device_connected", map[string]string{"device": "bike-1"}, 1},
		{"tideline_edge_device_connected", map[string]string{"device": "bike-2"}, 0},
		{"tideline_edge_device_last_commit_timestamp_seconds", map[string]string{"device": "bike-1", "lane": "telemetry"}, 1_700_000_000},
		{"tideline_edge_device_backlog_events", map[string]string{"device": "bike-1", "lane": "telemetry"}, 42},
	} {
		got, ok := s.Value(c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %g (found %v), want %g; %s", c.name, c.labels, got, ok, c.want, s.Labels(c.name))
		}
	}
	if _, ok := s.Value("tideline_edge_device_backlog_events", map[string]string{"lane": "danger"}); ok {
		t.Error("a lane that reported no backlog has a backlog series")
	}
	if _, ok := s.Value("go_goroutines", nil); !ok {
		t.Error("no Go runtime metrics")
	}
}

// TestRegistriesApart: two servers' metrics in one process do not mix.
func TestRegistriesApart(t *testing.T) {
	a, b := prometheus.New(), prometheus.New()
	a.ObserveAppend(time.Millisecond, false, nil)
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()
	if v, _ := promtest.MustGet(t, srv.URL, "").Value("tideline_appends_total", map[string]string{"result": "ok"}); v != 0 {
		t.Fatalf("b counts a's append: %g", v)
	}
}
