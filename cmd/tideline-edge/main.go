// Command tideline-edge is the edge agent: it reads a motion sensor (BLE),
// a recorded trace or a simulator, raises the local alarm on danger, and
// keeps its events in a local JetStream that syncs to the hub over a NATS
// leaf link, exactly once and in order.
//
//	tideline-edge --device ID --creds FILE --hub nats-leaf://HOST:7422 \
//	  --source ble:AA:BB:CC:DD:EE:FF|replay:FILE|sim:SCENARIO|none --data DIR \
//	  [--profile body|bike]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/edge/ble"
	"github.com/tideline/tideline/internal/version"
)

// Config is everything tideline-edge takes.
type Config struct {
	DeviceID  string
	CredsFile string
	Agent     edge.Config // Creds, Source and Logger are filled by Run
	Source    string
	Speed     float64
}

// Main is a running agent. End-to-end tests reuse it with a temp dir.
type Main struct {
	Config Config
	Agent  *edge.Agent
	// SourceDone receives Run's result when the source ends.
	SourceDone chan error
	cancel     context.CancelFunc
	closeOnce  sync.Once
	closeErr   error
}

// Run opens the agent and starts its source; it returns once both run.
// Both stop when ctx ends or on Close. The caller must call Close.
func (m *Main) Run(ctx context.Context) error {
	c := &m.Config
	if c.Agent.Logger == nil {
		c.Agent.Logger = slog.Default()
	}
	creds, err := edge.LoadCreds(c.CredsFile)
	if err != nil {
		return err
	}
	if c.DeviceID != "" && c.DeviceID != creds.DeviceID {
		return fmt.Errorf("--device %q but the credentials are for %q", c.DeviceID, creds.DeviceID)
	}
	c.Agent.Creds = creds
	c.Agent.Source, err = parseSource(c.Source, c.Speed, c.Agent.Logger)
	if err != nil {
		return err
	}
	m.Agent, err = edge.Open(ctx, c.Agent)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	m.SourceDone = make(chan error, 1)
	go func() { m.SourceDone <- m.Agent.Run(runCtx) }()
	return nil
}

// Close stops the source, then the agent, and waits for both.
// Everything acknowledged locally stays in the data dir and is forwarded
// on the next start. It may be called more than once.
func (m *Main) Close() error {
	m.closeOnce.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		if m.Agent != nil {
			m.closeErr = m.Agent.Close() // returns once the agent's Run has
		}
	})
	return m.closeErr
}

// parseSource builds the --source: ble:ADDR, replay:FILE, sim:SCENARIO or
// none (forward what is stored, read nothing).
func parseSource(spec string, speed float64, log *slog.Logger) (edge.Source, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "none":
		return nil, nil
	case "ble":
		return ble.New(arg, ble.Options{Logger: log})
	case "replay":
		if arg == "" {
			return nil, errors.New("--source replay:FILE needs a file")
		}
		return &edge.Replay{Path: arg, Speed: speed}, nil
	case "sim":
		return simSource(arg, speed)
	}
	return nil, fmt.Errorf("--source %q: want ble:ADDR, replay:FILE, sim:SCENARIO or none", spec)
}

// parseSize reads 1073741824, 512MB, 64MiB, 1GiB, 1G.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(n * float64(mult)), nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitCode(run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitCode reports err on stderr and returns the process's exit status:
// 0 for success and for -h/--help (flag.ErrHelp: the usage was printed),
// 2 for any other error.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "tideline-edge:", err)
	return 2
}

const usage = `usage: tideline-edge --creds FILE --hub nats-leaf://HOST:7422 --source SOURCE [--data DIR] [flags]
       tideline-edge --version

Runs the edge agent: reads a motion sensor, a recorded trace or a
simulator, raises the local alarm on danger (a DANGER log line and
--alarm-cmd), and stores every event locally until the hub has it: the
link to the hub is a NATS leaf connection to the hub's --leaf-listen, with
the credentials 'tideline device add' wrote. It logs why the hub cannot be
reached or refuses the device.

Sources: ble:ADDR (a BLE sensor), replay:FILE (CSV or JSON Lines trace),
sim:SCENARIO[:SEED] (ride, crash, fall, tipover, hard-brake, pothole,
phone-drop, mixed), none (only forward what is stored). With replay: or
sim:, the agent exits (status 0) once the source has ended and the hub has
every event; until the hub has them it keeps trying (Ctrl-C stops it, and
the next start forwards the rest).`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tideline-edge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), usage)
		fmt.Fprintln(fs.Output(), "\nflags:")
		fs.PrintDefaults()
	}
	var c Config
	var maxDisk, sync, profile string
	showVersion := fs.Bool("version", false, "print the version, VCS revision and Go version, and exit")
	fs.StringVar(&c.DeviceID, "device", "", "device id (must match the credentials)")
	fs.StringVar(&c.CredsFile, "creds", "", "device credentials file, from 'tideline device add' on the hub")
	fs.StringVar(&c.Agent.Hub, "hub", "", "hub leaf URL, e.g. nats-leaf://hub.example:7422")
	fs.StringVar(&c.Source, "source", "", "ble:ADDR, replay:FILE, sim:SCENARIO or none")
	fs.StringVar(&c.Agent.DataDir, "data", "./edge-data", "local store directory")
	fs.StringVar(&profile, "profile", "body", "where the device is worn: 'body' (a person on foot: falls) or 'bike' (mounted on the motorbike: crash, fall, tipover, hard brake)")
	fs.StringVar(&maxDisk, "max-disk", "1GiB", "local store bound; telemetry is dropped oldest first beyond it, danger events never")
	fs.StringVar(&c.Agent.AlarmCmd, "alarm-cmd", "", "command run (sh -c) on every detection, with TIDELINE_KIND, TIDELINE_SEVERITY, ... in its environment")
	fs.DurationVar(&c.Agent.AlarmTimeout, "alarm-timeout", 10*time.Second, "longest an --alarm-cmd may run: its process group is killed beyond it")
	fs.Float64Var(&c.Speed, "speed", 1, "replay/sim pacing: 1 real time, 2 twice as fast, 0 as fast as possible")
	fs.DurationVar(&c.Agent.LeafReconnect, "leaf-reconnect", time.Second, "leaf link reconnect interval")
	fs.StringVar(&sync, "sync", "default", "local fsync: 'default' (every second) or 'always'")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.String("tideline-edge"))
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected %q (every setting is a flag; see tideline-edge -h)", fs.Arg(0))
	}
	if c.CredsFile == "" || c.Agent.Hub == "" || c.Source == "" {
		fs.Usage()
		return errors.New("--creds, --hub and --source are required")
	}
	var err error
	if c.Agent.Profile, err = safety.ParseProfile(profile); err != nil {
		return fmt.Errorf("--profile: %w", err)
	}
	if c.Agent.MaxDisk, err = parseSize(maxDisk); err != nil {
		return fmt.Errorf("--max-disk: %w", err)
	}
	if c.Agent.AlarmTimeout <= 0 {
		return fmt.Errorf("--alarm-timeout: want a positive duration, got %v", c.Agent.AlarmTimeout)
	}
	switch sync {
	case "default":
	case "always":
		c.Agent.SyncAlways = true
	default:
		return fmt.Errorf("--sync: want 'default' or 'always', got %q", sync)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	c.Agent.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	slog.SetDefault(c.Agent.Logger)
	m := &Main{Config: c}
	if err := m.Run(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err = <-m.SourceDone:
		if err != nil {
			c.Agent.Logger.Error("source failed", "err", err)
			<-ctx.Done() // keep forwarding what is stored
			break
		}
		// A finite source (replay, sim) has ended and its events are
		// stored: exit once the hub has them all.
		c.Agent.Logger.Info("source ended: exiting once the hub has every stored event")
		if m.Agent.Forwarded(ctx) == nil {
			st := m.Agent.Status()
			c.Agent.Logger.Info("the hub has every event", "danger", st[0].Forwarded, "telemetry", st[1].Forwarded)
		}
	}
	c.Agent.Logger.Info("shutting down")
	return errors.Join(err, m.Close())
}
