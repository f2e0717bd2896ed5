// Package prometheus exposes a Tideline server's metrics in the
// Prometheus format, with the official client library, on a registry of
// the server's own (several servers in one process do not collide).
//
// Counters and histograms are fed by the hooks the other adapters and the
// API offer (ObserveCall, ObserveAppend, ObserveReaction); gauges of state
// (projections, JetStream streams and consumers, the data disk, edge
// devices) are read when Prometheus scrapes, from functions the server
// wires in, never polled. Every name starts with tideline_; the README
// lists them.
package prometheus

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tideline/tideline/domain/es"
)

// scrapeTimeout bounds what one scrape asks the store and JetStream.
const scrapeTimeout = 5 * time.Second

// Metrics is one server's metrics. Its methods are safe for concurrent
// use.
type Metrics struct {
	reg *prom.Registry

	rpcs        *prom.CounterVec
	rpcSeconds  *prom.HistogramVec
	appends     *prom.CounterVec
	appendSecs  prom.Histogram
	retries     prom.Counter
	reactionsBy map[string]*prom.CounterVec // by outcome
}

// New returns metrics on a new registry holding the Go runtime, process
// and build information collectors and Tideline's own counters.
func New() *Metrics {
	reg := prom.NewRegistry()
	m := &Metrics{
		reg: reg,
		rpcs: prom.NewCounterVec(prom.CounterOpts{
			Name: "tideline_rpc_requests_total",
			Help: "RPCs served (unary calls and streams, once each has ended), by service, method and Connect code (ok on success). Calls refused by the auth gate count too.",
		}, []string{"service", "method", "code"}),
		rpcSeconds: prom.NewHistogramVec(prom.HistogramOpts{
			Name:    "tideline_rpc_duration_seconds",
			Help:    "Latency of unary RPCs, by service and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"service", "method"}),
		appends: prom.NewCounterVec(prom.CounterOpts{
			Name: "tideline_appends_total",
			Help: "Commits appended to the events stream, by result: ok (stored), duplicate (a retry with the idempotency key of a stored commit), conflict (optimistic concurrency: the caller reloads and decides again, a bounded number of times), full (disk reserve), unavailable, error.",
		}, []string{"result"}),
		appendSecs: prom.NewHistogram(prom.HistogramOpts{
			Name:    "tideline_append_duration_seconds",
			Help:    "Latency of appends to the events stream, whatever their result.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		retries: prom.NewCounter(prom.CounterOpts{
			Name: "tideline_append_retries_total",
			Help: "Times an append published its commit again because the events stream had no leader this node could reach (a leader change, a node cut off): each counts once; the append's result is counted in tideline_appends_total.",
		}),
		reactionsBy: map[string]*prom.CounterVec{},
	}
	for _, r := range []string{"ok", "duplicate", "conflict", "full", "unavailable", "error"} {
		m.appends.WithLabelValues(r) // at 0 from the start: increase() sees the first one
	}
	for _, o := range []struct{ outcome, help string }{
		{"handled", "Commits a reaction handled successfully."},
		{"failed", "Reaction attempts that failed: each is retried in process, then the commit is poisoned or, for a transient error, redelivered later."},
		{"poisoned", "Commits a reaction gave up on, written to the POISON stream."},
		{"skipped_history", "Commits a notifying reaction skipped as history: recorded longer than --reaction-max-age ago, so no one was told."},
	} {
		m.reactionsBy[o.outcome] = prom.NewCounterVec(prom.CounterOpts{
			Name: "tideline_reactions_" + o.outcome + "_total",
			Help: o.help,
		}, []string{"reaction"})
		reg.MustRegister(m.reactionsBy[o.outcome])
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(), // go_build_info: the module version built
		m.rpcs, m.rpcSeconds, m.appends, m.appendSecs, m.retries,
	)
	return m
}

// Registry returns the registry, for tests and further collectors.
func (m *Metrics) Registry() *prom.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text (or OpenMetrics)
// format. A collector that fails makes its metrics missing, not the
// scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// ObserveCall records one RPC (api.Config.ObserveCall): procedure is
// "/pkg.Service/Method"; a unary call's duration goes to the latency
// histogram, a stream, and a call the auth gate refused (took 0), are
// only counted.
func (m *Metrics) ObserveCall(procedure string, stream bool, took time.Duration, err error) {
	service, method := splitProcedure(procedure)
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	m.rpcs.WithLabelValues(service, method, code).Inc()
	if !stream && took > 0 {
		m.rpcSeconds.WithLabelValues(service, method).Observe(took.Seconds())
	}
}

func splitProcedure(p string) (service, method string) {
	p = strings.TrimPrefix(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i], p[i+1:]
	}
	return p, ""
}

// ObserveAppend records one append (jetstream.Config.OnAppend).
func (m *Metrics) ObserveAppend(took time.Duration, duplicate bool, err error) {
	m.appendSecs.Observe(took.Seconds())
	result := "ok"
	switch {
	case err == nil && duplicate:
		result = "duplicate"
	case err == nil:
	case errors.Is(err, es.ErrConflict) || es.KindOf(err) == es.Conflict:
		result = "conflict"
	case es.KindOf(err) == es.ResourceExhausted:
		result = "full"
	case es.KindOf(err) == es.Unavailable:
		result = "unavailable"
	default:
		result = "error"
	}
	m.appends.WithLabelValues(result).Inc()
}

// ObserveRetry records an append's retry (jetstream.Config.OnRetry).
func (m *Metrics) ObserveRetry(error) { m.retries.Inc() }

// ObserveReaction records one handling by the named reaction; outcome is
// handled, failed, poisoned or skipped_history (reactions.Outcome's
// String).
func (m *Metrics) ObserveReaction(reaction, outcome string) {
	if c := m.reactionsBy[outcome]; c != nil {
		c.WithLabelValues(reaction).Inc()
	}
}

// Reactions starts the named reactions' counters at 0, so that the first
// commit a reaction poisons is an increase, not a new series.
func (m *Metrics) Reactions(names ...string) {
	for _, c := range m.reactionsBy {
		for _, n := range names {
			c.WithLabelValues(n)
		}
	}
}

// Gauge adds a gauge read at scrape time.
func (m *Metrics) Gauge(name, help string, value func() float64) {
	m.reg.MustRegister(prom.NewGaugeFunc(prom.GaugeOpts{Name: name, Help: help}, value))
}

// Projection is one projection's state as a scrape reads it.
type Projection struct {
	Name     string
	Position uint64
	Lag      uint64
	Rebuilds uint64
	State    string // running, rebuilding, stopped, not running
}

// ProjectionStates are the values of tideline_projection_state's state.
var ProjectionStates = []string{"running", "rebuilding", "stopped", "not running"}

// Projections adds the projections' position, lag, rebuilds and state,
// read by status at each scrape.
func (m *Metrics) Projections(status func(ctx context.Context) []Projection) {
	pos := prom.NewDesc("tideline_projection_position", "Last stream position the projection applied.", []string{"projection"}, nil)
	lag := prom.NewDesc("tideline_projection_lag_events", "Events stream's last position minus what the projection applied (0 when caught up, or when the stream cannot be read).", []string{"projection"}, nil)
	rebuilds := prom.NewDesc("tideline_projection_rebuilds_total", "Rebuilds from position 1 the projection started since the server started.", []string{"projection"}, nil)
	state := prom.NewDesc("tideline_projection_state", "1 for the projection's current state (running, rebuilding, stopped, not running), 0 for the others.", []string{"projection", "state"}, nil)
	m.reg.MustRegister(collector{descs: []*prom.Desc{pos, lag, rebuilds, state}, collect: func(ctx context.Context, ch chan<- prom.Metric) {
		for _, p := range status(ctx) {
			ch <- prom.MustNewConstMetric(pos, prom.GaugeValue, float64(p.Position), p.Name)
			ch <- prom.MustNewConstMetric(lag, prom.GaugeValue, float64(p.Lag), p.Name)
			ch <- prom.MustNewConstMetric(rebuilds, prom.CounterValue, float64(p.Rebuilds), p.Name)
			for _, s := range ProjectionStates {
				v := 0.0
				if s == p.State {
					v = 1
				}
				ch <- prom.MustNewConstMetric(state, prom.GaugeValue, v, p.Name, s)
			}
		}
	}})
}

// JetStream adds every stream's bytes and messages, and every durable
// consumer's pending and unacknowledged messages, asked of js at each
// scrape.
func (m *Metrics) JetStream(js jetstream.JetStream) {
	bytes := prom.NewDesc("tideline_jetstream_stream_bytes", "Bytes stored in the JetStream stream.", []string{"stream"}, nil)
	msgs := prom.NewDesc("tideline_jetstream_stream_messages", "Messages stored in the JetStream stream.", []string{"stream"}, nil)
	last := prom.NewDesc("tideline_jetstream_stream_last_sequence", "Last sequence of the JetStream stream.", []string{"stream"}, nil)
	pending := prom.NewDesc("tideline_jetstream_consumer_pending_messages", "Messages of the stream the durable consumer has not been delivered yet.", []string{"stream", "consumer"}, nil)
	ackPending := prom.NewDesc("tideline_jetstream_consumer_ack_pending_messages", "Messages delivered to the durable consumer and not acknowledged yet.", []string{"stream", "consumer"}, nil)
	m.reg.MustRegister(collector{descs: []*prom.Desc{bytes, msgs, last, pending, ackPending}, collect: func(ctx context.Context, ch chan<- prom.Metric) {
		streams := js.ListStreams(ctx)
		for st := range streams.Info() {
			name := st.Config.Name
			ch <- prom.MustNewConstMetric(bytes, prom.GaugeValue, float64(st.State.Bytes), name)
			ch <- prom.MustNewConstMetric(msgs, prom.GaugeValue, float64(st.State.Msgs), name)
			ch <- prom.MustNewConstMetric(last, prom.GaugeValue, float64(st.State.LastSeq), name)
			s, err := js.Stream(ctx, name)
			if err != nil {
				ch <- prom.NewInvalidMetric(pending, err)
				continue
			}
			consumers := s.ListConsumers(ctx)
			for c := range consumers.Info() {
				if c.Config.Durable == "" {
					continue // ordered consumers of projections: random names, their lag is tideline_projection_lag_events
				}
				ch <- prom.MustNewConstMetric(pending, prom.GaugeValue, float64(c.NumPending), name, c.Name)
				ch <- prom.MustNewConstMetric(ackPending, prom.GaugeValue, float64(c.NumAckPending), name, c.Name)
			}
			if err := consumers.Err(); err != nil {
				ch <- prom.NewInvalidMetric(pending, err)
			}
		}
		if err := streams.Err(); err != nil {
			ch <- prom.NewInvalidMetric(bytes, err)
		}
	}})
}

// Disk adds the data disk's free and total bytes and the write reserve,
// read by space at each scrape (natsserver.DiskGuard.Space).
func (m *Metrics) Disk(space func() (free, total uint64, reserve int64, ok bool)) {
	free := prom.NewDesc("tideline_disk_free_bytes", "Bytes free (available to the server) on the disk holding the JetStream store.", nil, nil)
	size := prom.NewDesc("tideline_disk_size_bytes", "Size of the disk holding the JetStream store.", nil, nil)
	reserve := prom.NewDesc("tideline_disk_reserve_bytes", "Free space under which the server refuses writes (--disk-reserve-mb); 0 when there is none.", nil, nil)
	m.reg.MustRegister(collector{descs: []*prom.Desc{free, size, reserve}, collect: func(_ context.Context, ch chan<- prom.Metric) {
		f, t, r, ok := space()
		if !ok {
			ch <- prom.NewInvalidMetric(free, errors.New("the data disk's free space cannot be read here"))
			return
		}
		ch <- prom.MustNewConstMetric(free, prom.GaugeValue, float64(f))
		ch <- prom.MustNewConstMetric(size, prom.GaugeValue, float64(t))
		ch <- prom.MustNewConstMetric(reserve, prom.GaugeValue, float64(max(r, 0)))
	}})
}

// DeviceLane is what the hub last heard of one edge device lane.
type DeviceLane struct {
	Device, Lane string
	LastCommit   time.Time
	Backlog      int64 // -1: not reported
}

// Devices adds the registered edge devices' connection state (connected
// lists every registered device, true when its leaf link is up) and, per
// lane, when each last sent a commit and its backlog as it reported it
// then (seen).
func (m *Metrics) Devices(connected func() (map[string]bool, error), seen func() []DeviceLane) {
	up := prom.NewDesc("tideline_edge_device_connected", "1 while the registered edge device's leaf link is up, else 0.", []string{"device"}, nil)
	lastCommit := prom.NewDesc("tideline_edge_device_last_commit_timestamp_seconds", "When the device lane last sent a commit to the hub (Unix time), since the server started.", []string{"device", "lane"}, nil)
	backlog := prom.NewDesc("tideline_edge_device_backlog_events", "Events the device had stored and not yet sent, as its last commit of the lane reported.", []string{"device", "lane"}, nil)
	m.reg.MustRegister(collector{descs: []*prom.Desc{up, lastCommit, backlog}, collect: func(_ context.Context, ch chan<- prom.Metric) {
		devices, err := connected()
		if err != nil {
			ch <- prom.NewInvalidMetric(up, err)
		}
		for id, c := range devices {
			v := 0.0
			if c {
				v = 1
			}
			ch <- prom.MustNewConstMetric(up, prom.GaugeValue, v, id)
		}
		for _, l := range seen() {
			ch <- prom.MustNewConstMetric(lastCommit, prom.GaugeValue, float64(l.LastCommit.UnixNano())/1e9, l.Device, l.Lane)
			if l.Backlog >= 0 {
				ch <- prom.MustNewConstMetric(backlog, prom.GaugeValue, float64(l.Backlog), l.Device, l.Lane)
			}
		}
	}})
}

// collector emits metrics read at scrape time.
type collector struct {
	descs   []*prom.Desc
	collect func(ctx context.Context, ch chan<- prom.Metric)
}

func (c collector) Describe(ch chan<- *prom.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prom.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	c.collect(ctx, ch)
}
