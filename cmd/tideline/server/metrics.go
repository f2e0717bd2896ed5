package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/tideline/tideline/adapters/prometheus"
	"github.com/tideline/tideline/api"
)

// collect adds to the metrics what is read at scrape time: the
// projections, JetStream's streams and consumers, the data disk and the
// API's live streams.
func (m *Main) collect() {
	m.Metrics.Projections(func(ctx context.Context) []prometheus.Projection {
		out := make([]prometheus.Projection, 0, len(m.runners))
		for _, r := range m.runners {
			st := r.Status(ctx)
			out = append(out, prometheus.Projection{Name: st.Name, Position: st.Position, Lag: st.Lag, Rebuilds: st.Rebuilds, State: st.State.String()})
		}
		return out
	})
	m.Metrics.JetStream(m.Store.JetStream())
	m.Metrics.Disk(m.disk.Space)
	m.Metrics.Gauge("tideline_rpc_live_streams", "Live RPC streams (watches, health watches) open now.", func() float64 { return float64(m.api.LiveStreams()) })
}

// serveMetrics serves /metrics on Config.MetricsListen: open on a
// loopback address, else to admin and metrics tokens.
func (m *Main) serveMetrics(cfg api.Config) error {
	ln, err := net.Listen("tcp", m.Config.MetricsListen)
	if err != nil {
		return fmt.Errorf("--metrics-listen: %w", err)
	}
	m.metricsLn = ln
	open := api.MetricsOpen(ln.Addr())
	mux := http.NewServeMux()
	mux.Handle(api.MetricsPath, api.MetricsHandler(m.Metrics.Handler(), cfg.Tokens, cfg.IdP, open))
	m.metricsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.metricsHTTP.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.failed <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	auth := "admin or metrics token required"
	if open {
		auth = "open (loopback)"
	}
	m.Config.Logger.Info("metrics served", "url", "http://"+ln.Addr().String()+api.MetricsPath, "auth", auth)
	return nil
}
