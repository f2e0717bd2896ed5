package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/domain/steps"
	"github.com/tideline/tideline/internal/dirlock"
	"github.com/tideline/tideline/projections"
	alertsmodel "github.com/tideline/tideline/projections/alerts"
	dashboardmodel "github.com/tideline/tideline/projections/dashboard"
	nearbymodel "github.com/tideline/tideline/projections/nearby"
	safetymodel "github.com/tideline/tideline/projections/safety"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
)

// Config is everything `tideline serve` takes.
type Config struct {
	DataDir         string
	Listen          string // HTTP address of the Connect API
	NATSListen      string // optional TCP listener for NATS clients, registered with `tideline nats-user add`
	LeafListen      string // optional listener for edge devices (NATS leaf nodes); see device.go
	SyncAlways      bool
	DuplicateWindow time.Duration
	CORSOrigins     []string
	AlertWebhook    string // optional URL each safety alert is POSTed to
	// MaxConns caps the API's open connections (0: api.DefaultMaxConns);
	// more are reset at once.
	MaxConns int
	// IdleTimeout closes API connections without a call for this long
	// (0: api.DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Reflection is who may use gRPC reflection: auto (default: anyone
	// when the API listens on loopback only, else callers with a token),
	// on, token or off.
	Reflection string
	Logger     *slog.Logger
	// DiskReserve is the free space on the data disk under which writes
	// are refused (natsserver.DiskGuardConfig.Reserve); 0: 64 MiB, at
	// most a tenth of the disk; negative: none.
	DiskReserve int64
}

// Main is a running server: embedded NATS, the event store, the
// projection runners and the Connect API. End-to-end tests reuse it on
// port 0 and a temp dir.
type Main struct {
	Config Config

	ns      *nserver.Server
	nc      *nats.Conn
	Store   *jetstream.Store
	Tokens  *api.Tokens
	api     *api.API
	http    *http.Server
	ln      net.Listener
	cancel  context.CancelFunc
	failed  chan error // the HTTP server stopped on its own
	wg      sync.WaitGroup
	runners []*jetstream.Runner
	// reactionsDone is set once the reactions' router has returned.
	reactionsDone atomic.Bool
	// Devices is the edge device registry (DATA/devices), with LeafListen.
	Devices *natsserver.Devices
	// disk guards the data disk. diskStop stops it once the runners have
	// written their final snapshots, which it may have to cut short.
	disk     *natsserver.DiskGuard
	diskStop func()
	// Users is the NATS client registry (DATA/nats-users), with NATSListen.
	Users *natsserver.Users
	lock  *dirlock.Lock // DATA/LOCK: one server per data dir
}

// Addr returns the API's listening address once Run has returned.
func (m *Main) Addr() string { return m.ln.Addr().String() }

// Run starts everything and returns once the API accepts requests. The
// caller must call Close.
func (m *Main) Run(ctx context.Context) (err error) {
	c := &m.Config
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	log := c.Logger
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	m.lock, err = dirlock.Acquire(c.DataDir, dirlock.Holder{Program: "tideline serve", Addr: c.Listen})
	if err != nil {
		return err
	}
	m.Tokens, err = api.LoadOrCreateTokens(c.DataDir)
	if err != nil {
		return err
	}
	nsCfg := natsserver.Config{
		StoreDir:     filepath.Join(c.DataDir, "jetstream"),
		ClientListen: c.NATSListen,
		SyncAlways:   c.SyncAlways,
	}
	if c.NATSListen != "" {
		if m.Users, err = natsserver.OpenUsers(natsUserDir(c.DataDir), log); err != nil {
			return err
		}
		nsCfg.Users = m.Users
	}
	if c.LeafListen != "" {
		if m.Devices, err = natsserver.OpenDevices(deviceDir(c.DataDir), log); err != nil {
			return err
		}
		nsCfg.LeafListen, nsCfg.Devices, nsCfg.JetStreamDomain = c.LeafListen, m.Devices, natsserver.HubDomain
	}
	m.ns, err = natsserver.Start(nsCfg)
	if err != nil {
		return err
	}
	if c.NATSListen != "" {
		log.Info("nats listening (credentials required)", "url", m.ns.ClientURL(), "registry", natsUserDir(c.DataDir))
	}
	if c.LeafListen != "" {
		log.Info("edge devices accepted", "leaf_url", natsserver.LeafURL(m.ns), "registry", deviceDir(c.DataDir))
	}
	m.nc, err = natsserver.Connect(m.ns, "tideline")
	if err != nil {
		return err
	}
	m.disk, err = natsserver.NewDiskGuard(m.ns, natsserver.DiskGuardConfig{Reserve: c.DiskReserve, Logger: log})
	if err != nil {
		return err
	}
	m.Store, err = jetstream.Open(ctx, m.nc, jetstream.Config{DuplicateWindow: c.DuplicateWindow, Writable: m.disk.Err})
	if err != nil {
		return err
	}

	diskCtx, diskCancel := context.WithCancel(context.Background())
	diskDone := make(chan struct{})
	go func() {
		defer close(diskDone)
		m.disk.Run(diskCtx)
	}()
	m.diskStop = func() { diskCancel(); <-diskDone }

	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if m.Devices != nil { // added and revoked devices apply without a restart
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.Devices.Watch(runCtx, 500*time.Millisecond)
		}()
	}
	if m.Users != nil { // added and revoked users apply without a restart
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.Users.Watch(runCtx, 500*time.Millisecond)
		}()
	}
	stepsModel := stepsmodel.New()
	stepsRunner := m.startRunner(runCtx, stepsModel)
	safetyModel := safetymodel.New()
	safetyRunner := m.startRunner(runCtx, safetyModel)
	alertsModel := alertsmodel.New(alertsmodel.Rules{})
	alertsRunner := m.startRunner(runCtx, alertsModel)
	safetySvc := safety.NewService(m.Store)
	if err := m.startReactions(ctx, runCtx, safetySvc, alertsModel, alertsRunner); err != nil {
		return err
	}
	dashboardModel := dashboardmodel.New()
	dashboardRunner := m.startRunner(runCtx, dashboardModel)
	nearbyModel := nearbymodel.New()
	nearbyRunner := m.startRunner(runCtx, nearbyModel)
	controls := map[string]api.ProjectionControl{}
	for _, r := range m.runners {
		controls[r.Name()] = runnerControl{r}
	}

	m.ln, err = net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := m.lock.Update(dirlock.Holder{PID: os.Getpid(), Program: "tideline serve", Addr: m.Addr(), Started: m.lock.Holder().Started}); err != nil {
		return err
	}
	reflection, err := api.ParseReflection(cmp.Or(c.Reflection, "auto"), m.ln.Addr())
	if err != nil {
		return fmt.Errorf("--reflection: %w", err)
	}
	m.api, err = api.New(api.Deps{
		Tokens:         m.Tokens,
		Steps:          &steps.Service{Store: m.Store},
		StepsModel:     stepsModel,
		StepsFeed:      stepsRunner,
		SafetyModel:    safetyModel,
		SafetyFeed:     safetyRunner,
		Safety:         safetySvc,
		AlertsModel:    alertsModel,
		AlertsFeed:     alertsRunner,
		Delivery:       delivery.NewService(m.Store, 0, nil),
		NearbyModel:    nearbyModel,
		NearbyFeed:     nearbyRunner,
		Projections:    controls,
		LastPosition:   m.Store.LastPosition,
		CORSOrigins:    c.CORSOrigins,
		DashboardModel: dashboardModel,
		DashboardFeed:  dashboardRunner,
		Reflection:     reflection,
		Health:         m.health,
	})
	if err != nil {
		return err
	}
	m.http = api.NewServer(m.api.Handler())
	if c.IdleTimeout > 0 {
		m.http.IdleTimeout = c.IdleTimeout
	}
	ln := api.LimitListener(m.ln, cmp.Or(c.MaxConns, api.DefaultMaxConns))
	m.failed = make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.failed <- fmt.Errorf("http server: %w", err)
		}
	}()
	log.Info("tideline serving Connect, gRPC and gRPC-Web", "url", "http://"+m.Addr(), "data", c.DataDir, "reflection", reflection)
	log.Info("get a token: tideline token --data " + c.DataDir + " --sub alice --role walker")
	return nil
}

// health returns why the server cannot serve: the event store refuses
// writes or cannot be reached, a projection is stopped or not running, or
// the reactions have stopped.
func (m *Main) health(ctx context.Context) error {
	if err := m.Store.Healthy(ctx); err != nil {
		return err
	}
	for _, r := range m.runners {
		switch st := r.Status(ctx); st.State {
		case jetstream.Stopped:
			return fmt.Errorf("projection %s stopped at %d: %s", st.Name, st.StoppedAt, st.Reason)
		case jetstream.NotRunning:
			return fmt.Errorf("projection %s not running: %s", st.Name, cmp.Or(st.Reason, "starting"))
		}
	}
	if m.reactionsDone.Load() {
		return errors.New("reactions stopped")
	}
	return nil
}

func (m *Main) startRunner(ctx context.Context, p projections.Projection) *jetstream.Runner {
	r := jetstream.NewRunner(m.Store, p, jetstream.RunnerOptions{Logger: m.Config.Logger})
	m.runners = append(m.runners, r)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// A runner that fails (its consumer or snapshot bucket lost while
		// the store was out of space or restarting) starts again from its
		// last snapshot.
		const maxBackoff = 30 * time.Second
		backoff := time.Second
		for {
			start := time.Now()
			err := r.Run(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			if time.Since(start) > maxBackoff {
				backoff = time.Second
			}
			m.Config.Logger.Error("projection stopped; restarting", "projection", p.Name(), "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}()
	return r
}

// Close shuts down in order: stop accepting requests and end live
// streams, let in-flight requests finish (bounded), stop runners (each
// writes a final snapshot), flush the connection, stop NATS.
func (m *Main) Close() error {
	if m.http == nil && m.ln != nil { // Run failed between listening and serving
		m.ln.Close()
	}
	if m.api != nil {
		m.api.Close()
	}
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.http.Shutdown(ctx); err != nil {
			m.http.Close()
		}
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.diskStop != nil {
		m.diskStop()
	}
	if m.nc != nil {
		closed := make(chan struct{})
		m.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := m.nc.Drain(); err == nil {
			<-closed
		}
	}
	if m.ns != nil {
		m.ns.Shutdown()
		m.ns.WaitForShutdown()
	}
	return m.lock.Release()
}

// runnerControl adapts a runner to the admin API.
type runnerControl struct{ r *jetstream.Runner }

func (c runnerControl) Status(ctx context.Context) api.ProjectionStatus {
	s := c.r.Status(ctx)
	return api.ProjectionStatus{Name: s.Name, Version: s.Version, Position: s.Position, Lag: s.Lag,
		State: projectionStates[s.State], StoppedAt: s.StoppedAt, Reason: s.Reason}
}

var projectionStates = map[jetstream.RunnerState]adminv1.ProjectionState{
	jetstream.NotRunning: adminv1.ProjectionState_PROJECTION_STATE_NOT_RUNNING,
	jetstream.Running:    adminv1.ProjectionState_PROJECTION_STATE_RUNNING,
	jetstream.Rebuilding: adminv1.ProjectionState_PROJECTION_STATE_REBUILDING,
	jetstream.Stopped:    adminv1.ProjectionState_PROJECTION_STATE_STOPPED,
}

func (c runnerControl) Rebuild(ctx context.Context) error { return c.r.Rebuild(ctx) }

func (c runnerControl) Resume(ctx context.Context) error { return c.r.Resume(ctx) }

func (c runnerControl) Skip(ctx context.Context, position uint64, reason string, meta es.Metadata) (uint64, error) {
	decision, err := c.r.Skip(ctx, position, reason, meta)
	return decision.Seq, err
}

const serveUsage = `usage: tideline serve [--data DIR] [--listen ADDR] [flags]

Runs the server: an embedded NATS JetStream store under DIR (created on
first start, with the token signing key DIR/keys/token-ed25519.pem) and the
Connect, gRPC and gRPC-Web API on ADDR. Logs where it listens; Ctrl-C
(SIGINT) or SIGTERM shuts it down cleanly, keeping all data.`

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", serveUsage, stderr)
	var c Config
	var sync, cors string
	fs.StringVar(&c.DataDir, "data", "./data", "data directory (JetStream store, signing key)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address of the Connect/gRPC/gRPC-Web API")
	fs.StringVar(&c.NATSListen, "nats-listen", "", "also accept NATS clients (registered with 'tideline nats-user add') on this address, e.g. 127.0.0.1:4222; default in-process only")
	fs.StringVar(&c.LeafListen, "leaf-listen", "", "accept edge devices (NATS leaf nodes, registered with 'tideline device add') on this address, e.g. 0.0.0.0:7422")
	fs.StringVar(&sync, "sync", "default", "fsync policy: 'default' (periodic; survives kill -9) or 'always' (also survives power loss, much slower)")
	fs.DurationVar(&c.DuplicateWindow, "dup-window", 2*time.Minute, "idempotency-key window of the EVENTS stream")
	fs.StringVar(&c.AlertWebhook, "alert-webhook", "", "POST each safety alert (JSON) to this URL; alerts are always logged")
	fs.StringVar(&cors, "cors-origins", "", "comma-separated browser origins allowed (default: any)")
	reserveMiB := fs.Int64("disk-reserve-mb", 0, "refuse writes (ResourceExhausted) while less than this many MiB are free on the data disk, and resume above it; 0: 64, at most a tenth of the disk; -1: only once the disk is full")
	fs.IntVar(&c.MaxConns, "max-conns", api.DefaultMaxConns, "most API connections open at once; more are reset at once")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", api.DefaultIdleTimeout, "close API connections without a call for this long")
	fs.StringVar(&c.Reflection, "reflection", "auto", "gRPC reflection: 'auto' (open when --listen is loopback, else token required), 'on' (open), 'token' or 'off'")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.MaxConns < 1 {
		return fmt.Errorf("--max-conns: want at least 1, got %d", c.MaxConns)
	}
	if _, err := api.ParseReflection(c.Reflection, nil); err != nil {
		return fmt.Errorf("--reflection: %w", err)
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("--idle-timeout: want a positive duration, got %s", c.IdleTimeout)
	}
	switch sync {
	case "default":
	case "always":
		c.SyncAlways = true
	default:
		return fmt.Errorf("--sync: want 'default' or 'always', got %q", sync)
	}
	if cors != "" {
		c.CORSOrigins = strings.Split(cors, ",")
	}
	c.DiskReserve = *reserveMiB << 20
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	c.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	slog.SetDefault(c.Logger)
	m := &Main{Config: c}
	if err := m.Run(ctx); err != nil {
		return err
	}
	var err error
	select {
	case <-ctx.Done():
		c.Logger.Info("shutting down")
	case err = <-m.failed:
		c.Logger.Error("stopping", "err", err)
	}
	return errors.Join(err, m.Close())
}
