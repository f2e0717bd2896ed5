// Package edge is the edge agent: it reads a sensor source, runs the
// danger detector, fires the local alarm, and keeps its events in a local
// JetStream (an embedded nats-server, a leaf node of the hub with its own
// JetStream domain) from which they are forwarded over the leaf link to
// the hub's device gate, exactly once and in order, whenever the link is
// up. The gate admits them into the hub's EVENTS stream, bound to the
// device's registered rider, or quarantines them; a device writes no hub
// stream itself.
//
// Two lanes, one local stream each: danger (never dropped, never blocked:
// no byte limit, forwarded first on its own connection) and telemetry
// (bounded by --max-disk, oldest dropped first when full).
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/internal/dirlock"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
	"github.com/tideline/tideline/wire"
)

// Config is everything the agent takes.
type Config struct {
	Creds Creds
	// Hub is the hub's leaf URL, e.g. nats-leaf://hub.example:7422.
	Hub string
	// DataDir holds the local JetStream store.
	DataDir string
	// MaxDisk bounds the local store: telemetry gets MaxDisk minus a reserve
	// kept for danger events (a tenth, at least 64 KiB). Default 1 GiB.
	MaxDisk int64
	// Source feeds samples to Run; nil means Run only forwards.
	Source Source
	// Profile is where the device is worn: safety.ProfileBody (the zero
	// value, a person on foot) or safety.ProfileBike (mounted on the
	// motorbike); Run's detector uses the profile's defaults.
	Profile safety.Profile
	// AlarmCmd, if set, is run with sh -c on every detection, in a process
	// group of its own. At most AlarmSlots run at once: an alarm finding
	// them all taken is logged and its command not run.
	AlarmCmd string
	// AlarmTimeout bounds one run of AlarmCmd: its process group is killed
	// when it overruns. Default 10s.
	AlarmTimeout time.Duration
	// LeafReconnect is the leaf link's reconnect interval (nats-server adds
	// up to as much jitter). Default 1s.
	LeafReconnect time.Duration
	// RetryMax caps the forwarders' backoff while the link is up but the
	// hub refuses or does not answer. Default 2s.
	RetryMax time.Duration
	// HubTimeout bounds one request to the hub. Default 2s.
	HubTimeout time.Duration
	// SyncInterval is how often the local store fsyncs (power-loss
	// window); default 1s. SyncAlways fsyncs every write.
	SyncInterval time.Duration
	SyncAlways   bool
	// TelemetryWindow is how many samples go into one SamplesRecorded.
	// Default 100 (1 s at 100 Hz).
	TelemetryWindow int
	Logger          *slog.Logger
	// OnAlarm, if set, is called synchronously on every detection, after
	// the log line (tests and benchmarks measure with it).
	OnAlarm func(Alarm)
}

func (c *Config) storeDir() string { return filepath.Join(c.DataDir, "jetstream") }

// Reserve is the part of MaxDisk kept for danger events.
func (c *Config) Reserve() int64 { return max(c.MaxDisk/10, 64<<10) }

// TelemetryBytes is the telemetry lane's byte limit: what MaxDisk leaves
// after the danger reserve and the file store's block slack. nats-server
// picks the block size from the limit (32 kB below 128 kB, 4 MB up to
// 32 MB, 8 MB beyond) and reclaims evicted space a whole block at a
// time, so the lane's files can exceed its limit by one block.
func (c *Config) TelemetryBytes() int64 {
	const kb, mb = 1000, 1 << 20
	avail := c.MaxDisk - c.Reserve()
	switch {
	case avail-8*mb >= 32*mb:
		return avail - 8*mb
	case avail-4*mb > 128*kb:
		return min(avail-4*mb, 32*mb-400)
	default:
		return min(avail-32*kb, 128*kb-100)
	}
}

func (c *Config) defaults() error {
	if err := c.Creds.Validate(); err != nil {
		return err
	}
	if c.DataDir == "" {
		return errors.New("edge: DataDir is required")
	}
	if c.MaxDisk == 0 {
		c.MaxDisk = 1 << 30
	}
	if c.MaxDisk < 1<<20 {
		return fmt.Errorf("edge: --max-disk %d is too small (minimum 1 MiB; 64 MiB or more recommended)", c.MaxDisk)
	}
	if c.LeafReconnect == 0 {
		c.LeafReconnect = time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Second
	}
	if c.HubTimeout == 0 {
		c.HubTimeout = 2 * time.Second
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = time.Second
	}
	if c.AlarmTimeout <= 0 {
		c.AlarmTimeout = 10 * time.Second
	}
	if c.TelemetryWindow == 0 {
		c.TelemetryWindow = 100
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// AlarmSlots is how many alarm commands may run at once.
const AlarmSlots = 4

// ErrClosed is returned by Run once Close has begun.
var ErrClosed = errors.New("edge: agent closed")

// Agent is a running edge agent. Its methods are safe for concurrent use.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	ns        *server.Server
	link      *linkLog
	danger    *forwarder
	telemetry *forwarder
	// life ends when Open's ctx ends or Close begins: every goroutine of
	// the agent (forwarders, Run, alarm commands) ends with it, and Close
	// waits for them on wg.
	life       context.Context
	cancel     context.CancelFunc
	mu         sync.Mutex
	closed     bool
	wg         sync.WaitGroup
	closeOnce  sync.Once
	alarmSlots chan struct{}
	lock       *dirlock.Lock // DataDir/LOCK: one agent per data dir
}

// Open starts the embedded server and the local streams, and begins
// forwarding to the hub. ctx bounds the agent's life: when it ends,
// forwarding stops and Run returns, as on Close. The caller must call
// Close.
func Open(ctx context.Context, cfg Config) (a *Agent, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	a = &Agent{cfg: cfg, log: cfg.Logger.With("device", cfg.Creds.DeviceID), alarmSlots: make(chan struct{}, AlarmSlots)}
	a.life, a.cancel = context.WithCancel(ctx)
	opened := a // the error returns below set a to nil
	defer func() {
		if err != nil {
			opened.Close()
		}
	}()
	if a.lock, err = dirlock.Acquire(cfg.DataDir, dirlock.Holder{Program: "tideline-edge --device " + cfg.Creds.DeviceID}); err != nil {
		return nil, err
	}
	opts, err := serverOptions(&a.cfg)
	if err != nil {
		return nil, err
	}
	a.ns, err = server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("local nats server: %w", err)
	}
	a.link = newLinkLog(a.life, a.log, opts.LeafNode.Remotes[0].URLs[0].Host)
	a.ns.SetLoggerV2(a.link, false, false, false)
	go a.ns.Start()
	if !a.ns.ReadyForConnections(30 * time.Second) {
		return nil, errors.New("local nats server not ready after 30s")
	}
	a.spawn(func() { a.link.watch(a.life, a.LinkUp) })
	id := cfg.Creds.DeviceID
	newLane := func(name, stream, hub string, maxBytes int64, maxEvents int) (*forwarder, error) {
		nc, err := nats.Connect("", nats.InProcessServer(a.ns), nats.Name("edge-"+name),
			nats.CustomInboxPrefix(wire.DeviceInboxPrefix(id)), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("connect local: %w", err)
		}
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		if err != nil {
			nc.Close()
			return nil, err
		}
		l := &lane{name: name, device: id, stream: stream, local: "edge." + id + "." + name, hub: hub,
			nc: nc, js: js, wake: make(chan struct{}, 1), maxEvents: maxEvents, maxBytes: wire.MaxDeviceCommitBytes - commitHeaderBytes}
		if err := l.provision(ctx, maxBytes); err != nil {
			nc.Close()
			return nil, err
		}
		f := &forwarder{lane: l, hubNC: nc, log: a.log,
			linkUp: func() bool { return a.ns.NumLeafNodes() > 0 }, retryMax: cfg.RetryMax, timeout: cfg.HubTimeout}
		if info, err := l.st.Info(ctx); err == nil {
			f.stored.Store(info.State.LastSeq)
		}
		return f, nil
	}
	if a.danger, err = newLane("danger", "EDGE_DANGER", wire.CommitSubject(safety.LaneDanger, id), -1, 256); err != nil {
		return nil, err
	}
	if a.telemetry, err = newLane("telemetry", "EDGE_TELEMETRY", wire.CommitSubject(safety.LaneTelemetry, id), cfg.TelemetryBytes(), 256); err != nil {
		return nil, err
	}
	for _, f := range []*forwarder{a.danger, a.telemetry} {
		a.spawn(func() { f.run(a.life) })
	}
	a.log.Info("edge agent started", "hub", cfg.Hub, "rider", cfg.Creds.RiderID, "data", cfg.DataDir,
		"max_disk", cfg.MaxDisk, "danger_reserve", cfg.Reserve(), "telemetry_bytes", cfg.TelemetryBytes())
	return a, nil
}

// RecordDanger stores danger events in the danger lane. A nil error means
// they are acknowledged locally (durable on the device) and will reach the
// hub exactly once. It returns the local sequence of the last.
func (a *Agent) RecordDanger(ctx context.Context, events ...*safetyv1.DangerDetected) (uint64, error) {
	ms := make([]proto.Message, len(events))
	for i, e := range events {
		ms[i] = e
	}
	return a.record(ctx, a.danger, ms)
}

// RecordTelemetry stores telemetry windows in the telemetry lane, with the
// same guarantee as RecordDanger unless the disk bound evicts them first.
func (a *Agent) RecordTelemetry(ctx context.Context, events ...*telemetryv1.SamplesRecorded) (uint64, error) {
	ms := make([]proto.Message, len(events))
	for i, e := range events {
		ms[i] = e
	}
	return a.record(ctx, a.telemetry, ms)
}

func (a *Agent) record(ctx context.Context, f *forwarder, ms []proto.Message) (uint64, error) {
	msgs := make([]*nats.Msg, len(ms))
	for i, m := range ms {
		var err error
		if msgs[i], err = localMsg(f.lane.local, m); err != nil {
			return 0, err
		}
	}
	return a.store(ctx, f, msgs)
}

// store records prepared local messages and advances the lane's count.
func (a *Agent) store(ctx context.Context, f *forwarder, msgs []*nats.Msg) (uint64, error) {
	seq, err := f.lane.record(ctx, msgs)
	if err != nil {
		return 0, err
	}
	for {
		cur := f.stored.Load()
		if seq <= cur || f.stored.CompareAndSwap(cur, seq) {
			return seq, nil
		}
	}
}

// Status reports both lanes: danger first.
func (a *Agent) Status() []LaneStatus {
	return []LaneStatus{a.danger.status(), a.telemetry.status()}
}

// Forwarded waits until the hub has acknowledged every event stored so
// far in both lanes (telemetry evicted by the disk bound counts as
// done), or ctx ends. While the hub is unreachable it keeps waiting.
func (a *Agent) Forwarded(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		done := true
		for _, l := range a.Status() {
			done = done && l.Forwarded >= l.Stored
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// LinkUp reports whether the leaf link to the hub is connected.
func (a *Agent) LinkUp() bool { return a.ns.NumLeafNodes() > 0 }

// enter registers a goroutine that Close must wait for, unless Close has
// begun; it reports whether it did. The goroutine calls a.wg.Done.
func (a *Agent) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Add(1)
	return true
}

// spawn runs f on a goroutine that Close waits for, unless Close has
// begun; it reports whether it did. f must return once a.life ends.
func (a *Agent) spawn(f func()) bool {
	if !a.enter() {
		return false
	}
	go func() {
		defer a.wg.Done()
		f()
	}()
	return true
}

// Close stops Run, the alarm commands still running (killed), forwarding
// and the local server, and waits for all of them. Whatever was
// acknowledged locally stays in DataDir and is forwarded after the next
// Open. It may be called more than once.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		a.mu.Unlock()
		a.cancel()
		a.wg.Wait()
		for _, f := range []*forwarder{a.danger, a.telemetry} {
			if f != nil {
				f.lane.nc.Close()
			}
		}
		if a.ns != nil {
			a.ns.Shutdown()
			a.ns.WaitForShutdown()
		}
		if a.link != nil { // no more log lines from the server: no new probes
			a.link.probes.Wait()
		}
		a.lock.Release()
	})
	return nil
}
