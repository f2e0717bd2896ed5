package natsserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tideline/tideline/domain/es"
)

// DiskGuardConfig tunes a DiskGuard.
type DiskGuardConfig struct {
	// Reserve is the free space on JetStream's filesystem under which
	// writes are refused: room left for what JetStream writes besides
	// events (indexes, consumer state, snapshots) and for other writers.
	// Default: 64 MiB, at most a tenth of the filesystem. Negative: none;
	// writes are then refused only once one has failed for lack of space.
	Reserve int64
	// Every is how often the disk and the server are checked; default 1s.
	Every time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

const defaultDiskReserve = 64 << 20

// DiskGuard keeps an embedded server's JetStream writable through a full
// disk.
//
// A stream of a single, unclustered nats-server whose write fails for lack
// of space (ENOSPC) sends no acknowledgement for it, and from then on stores
// and acknowledges nothing more, even once space is freed, until JetStream
// restarts: the file store keeps its first write error. (JetStream itself
// stays enabled; a clustered server disables it instead.) DiskGuard:
//   - reports the disk full through Err, which the event store asks
//     before every append, so appends fail at once rather than wait for
//     an acknowledgement that never comes;
//   - does so already while free space is under the reserve, so that
//     JetStream seldom reaches ENOSPC at all;
//   - once a write did fail for lack of space (or JetStream was disabled
//     for it) and space is back above the reserve, restarts JetStream,
//     which reloads every stream from its files: what was acknowledged is
//     kept, the write that failed was never stored.
//
// The restart reloads durable consumers and drops ephemeral ones: clients'
// ordered consumers recreate theirs once its heartbeats stop (the
// projection runner's within about 2s), and pulls on durable consumers
// resume once theirs expire.
type DiskGuard struct {
	s       *server.Server
	jsc     server.JetStreamConfig // to restart JetStream with
	dir     string                 // JetStream's store directory
	reserve int64                  // resolved; < 0: none
	every   time.Duration
	log     *slog.Logger

	mu   sync.Mutex // serializes checks
	full bool       // out of space since the last check: under the reserve, or a write failed and JetStream is not restarted yet
	err  atomic.Pointer[error]
}

// NewDiskGuard returns a guard of s's JetStream store, which must be
// enabled, having checked it once. Run keeps checking.
func NewDiskGuard(s *server.Server, cfg DiskGuardConfig) (*DiskGuard, error) {
	jsc := s.JetStreamConfig()
	if jsc == nil {
		return nil, errors.New("natsserver: disk guard: JetStream is not enabled")
	}
	g := &DiskGuard{s: s, jsc: *jsc, dir: jsc.StoreDir, reserve: cfg.Reserve, every: cfg.Every, log: cfg.Logger}
	// EnableJetStream appends its "jetstream" directory to the one it is
	// given; the running config already names it.
	if filepath.Base(g.jsc.StoreDir) == server.JetStreamStoreDir {
		g.jsc.StoreDir = filepath.Dir(g.jsc.StoreDir)
	}
	if g.every <= 0 {
		g.every = time.Second
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	if g.reserve == 0 {
		g.reserve = defaultDiskReserve
		if _, total, ok := diskSpace(g.dir); ok {
			g.reserve = min(g.reserve, int64(total/10))
		}
	}
	g.check()
	return g, nil
}

// Err returns nil when JetStream can take writes, as of the last check;
// otherwise es.ErrStoreFull (kind ResourceExhausted) with the details as
// its cause, or, when JetStream was disabled for another reason, an
// *es.Error of kind Unavailable. It is cheap and safe for concurrent use.
func (g *DiskGuard) Err() error {
	if p := g.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Run checks every DiskGuardConfig.Every until ctx is done.
func (g *DiskGuard) Run(ctx context.Context) {
	t := time.NewTicker(g.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.check()
		}
	}
}

// check checks the disk and the server, restarting JetStream if a write
// failed for lack of space and space is back; Err reports the outcome.
func (g *DiskGuard) check() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.s.Running() { // shutting down: JetStream is off for good
		return
	}
	free, _, known := diskSpace(g.dir)
	low := known && g.reserve > 0 && free < uint64(g.reserve)
	werr, off := g.state()
	if (werr != "" || off && g.full) && !low {
		g.log.Warn("restarting JetStream to resume writes after running out of disk space",
			"cause", cmp.Or(werr, "JetStream disabled"), "free_bytes", free)
		start := time.Now()
		if err := g.restart(); err != nil {
			g.log.Error("restart JetStream", "error", err)
		} else {
			g.log.Info("JetStream restarted", "took", time.Since(start))
		}
		werr, off = g.state()
	}
	g.full = low || werr != "" || off && g.full
	var err error
	switch {
	case low:
		err = storeFull(fmt.Errorf("%d bytes free on %s, under the reserve of %d", free, g.dir, g.reserve))
	case werr != "":
		err = storeFull(errors.New(werr))
	case off && g.full:
		err = storeFull(errors.New("JetStream disabled for lack of space"))
	case off:
		err = es.Wrap(es.Unavailable, "event store unavailable", errors.New("JetStream disabled"))
	}
	was := g.Err()
	if err == nil {
		g.err.Store(nil)
		if was != nil {
			g.log.Info("event store takes writes again", "free_bytes", free)
		}
		return
	}
	g.err.Store(&err)
	if was == nil {
		g.log.Error("event store refuses writes", "error", err)
	}
}

func storeFull(cause error) error {
	return &es.Error{Kind: es.ErrStoreFull.Kind, Message: es.ErrStoreFull.Message, Err: cause}
}

// state reports a stream write that failed for lack of space (the file
// store keeps the error: no later write succeeds), and whether JetStream
// is disabled.
func (g *DiskGuard) state() (werr string, off bool) {
	if !g.s.JetStreamEnabled() {
		return "", true
	}
	for _, e := range g.s.Healthz(&server.HealthzOptions{Details: true}).Errors {
		if isOutOfSpace(e.Error) {
			return e.Error, false
		}
	}
	return "", false
}

// isOutOfSpace is nats-server's own test (store.go isOutOfSpaceErr).
func isOutOfSpace(msg string) bool { return strings.Contains(msg, "no space left") }

func (g *DiskGuard) restart() error {
	if g.s.JetStreamEnabled() {
		if err := g.s.ShutdownJetStream(); err != nil {
			return fmt.Errorf("shut down JetStream: %w", err)
		}
	}
	cfg := g.jsc
	if err := g.s.EnableJetStream(&cfg); err != nil {
		return fmt.Errorf("enable JetStream: %w", err)
	}
	return nil
}

// Space returns the bytes free (available to us) and in all on the data
// disk, read now, and the reserve under which writes are refused (< 0:
// none); ok is false when the disk cannot be read. Safe for concurrent
// use.
func (g *DiskGuard) Space() (free, total uint64, reserve int64, ok bool) {
	free, total, ok = diskSpace(g.dir)
	return free, total, g.reserve, ok
}
