package jetstream_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/es/estest"
	"github.com/tideline/tideline/internal/poll"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// diskRig is an embedded server whose JetStream lives on a small tmpfs,
// guarded, with an event store that asks the guard (guarded) and one that
// does not (bare: a writer elsewhere, like an edge device or a store on a
// remote server, which finds out only from the server).
type diskRig struct {
	dir     string
	log     *slog.Logger
	s       *server.Server
	nc      *nats.Conn
	guard   *natsserver.DiskGuard
	guarded *tljs.Store
	bare    *tljs.Store
	stop    func() time.Duration // stops the guard, closes nc and shuts the server down; returns how long that took
}

const bareWriteTimeout = 500 * time.Millisecond

func startDiskRig(t *testing.T, size int64, reserve int64) *diskRig {
	t.Helper()
	r := &diskRig{dir: natstest.SmallDisk(t, size)}
	r.log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	r.s, err = natsserver.Start(natsserver.Config{StoreDir: filepath.Join(r.dir, "nats"), Name: "disk"})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	if r.nc, err = natsserver.Connect(r.s, t.Name()); err != nil {
		t.Fatalf("connect: %v", err)
	}
	if r.guard, err = natsserver.NewDiskGuard(r.s, natsserver.DiskGuardConfig{Reserve: reserve, Every: 20 * time.Millisecond, Logger: r.log}); err != nil {
		t.Fatalf("disk guard: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	guardDone := make(chan struct{})
	go func() { defer close(guardDone); r.guard.Run(ctx) }()
	r.stop = sync1(func() time.Duration {
		start := time.Now()
		cancel()
		<-guardDone
		r.nc.Close()
		r.s.Shutdown()
		r.s.WaitForShutdown()
		return time.Since(start)
	})
	t.Cleanup(func() { r.stop() })
	if r.guarded, err = tljs.Open(ctx, r.nc, tljs.Config{Writable: r.guard.Err}); err != nil {
		t.Fatalf("open store: %v", err)
	}
	if r.bare, err = tljs.Open(ctx, r.nc, tljs.Config{WriteTimeout: bareWriteTimeout}); err != nil {
		t.Fatalf("open store: %v", err)
	}
	return r
}

// sync1 returns f as a function that runs it once and then returns its
// first result.
func sync1(f func() time.Duration) func() time.Duration {
	var d time.Duration
	done := false
	return func() time.Duration {
		if !done {
			done = true
			d = f()
		}
		return d
	}
}

// acked is a write the store acknowledged.
type acked struct {
	stream es.StreamID
	seq    uint64
	steps  int32
}

// fillUntilStuck fills the disk, then appends with the bare store until
// the server fails to store one for lack of space (the state in which,
// before the guard, every later append hung). It returns the writes
// acknowledged on the way, which must survive.
func (r *diskRig) fillUntilStuck(t *testing.T, stream es.StreamID) []acked {
	t.Helper()
	natstest.FillDisk(t, filepath.Join(r.dir, "filler"))
	big := strings.Repeat("x", 2000)
	var ok []acked
	for i := int32(1); ; i++ {
		if i > 200 {
			t.Fatalf("the server stored %d appends on a full disk", i)
		}
		start := time.Now()
		res, err := r.bare.Append(context.Background(), stream, []proto.Message{&stepsv1.StepsRecorded{UserId: big, Date: "2026-03-04", Steps: i}}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		took := time.Since(start)
		if err == nil {
			ok = append(ok, acked{stream, res.Position.Seq, i})
			continue
		}
		// Not acknowledged, not refused: the server never answers.
		if es.KindOf(err) != es.Unavailable || took > bareWriteTimeout+time.Second {
			t.Fatalf("append on a full disk without the guard: %v (kind %v) after %v, want kind unavailable within %v", err, es.KindOf(err), took, bareWriteTimeout)
		}
		t.Logf("without the guard, an append on the full disk failed after %v: %v (%d acknowledged before)", took.Round(time.Millisecond), err, len(ok))
		break
	}
	// The server is in the state that used to need a restart.
	h := r.s.Healthz(&server.HealthzOptions{Details: true})
	if len(h.Errors) == 0 || !strings.Contains(h.Errors[0].Error, "no space left") {
		t.Fatalf("server health %+v, want a stream write error for lack of space", h)
	}
	return ok
}

// TestDiskFull fills the disk under a running store and projection runner:
// appends fail at once with es.ErrStoreFull instead of hanging, resume by
// themselves once space is freed, nothing acknowledged is lost, and the
// runner catches up and snapshots again.
func TestDiskFull(t *testing.T) {
	r := startDiskRig(t, 32<<20, 1<<20)
	ctx := context.Background()

	model := stepsmodel.New()
	runner := tljs.NewRunner(r.guarded, model, tljs.RunnerOptions{SnapshotEvery: 50 * time.Millisecond, Logger: r.log})
	runCtx, stopRunner := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- runner.Run(runCtx) }()

	walker := es.StreamID{Context: "steps", Type: "user", ID: "walker-1"}
	var all []acked
	appendSteps := func(n int32) {
		t.Helper()
		res := estest.MustAppend(t, r.guarded, walker, es.AppendOptions{ExpectedVersion: es.AnyVersion},
			&stepsv1.StepsRecorded{UserId: "walker-1", Date: "2026-03-04", Steps: n})
		all = append(all, acked{walker, res.Position.Seq, n})
	}
	for i := int32(1); i <= 20; i++ {
		appendSteps(i)
	}

	all = append(all, r.fillUntilStuck(t, estest.NewStream(t))...)

	poll.Until(t, 5*time.Second, "guarded store reports the full disk", func() bool {
		return errors.Is(r.guarded.Healthy(ctx), es.ErrStoreFull)
	})
	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		_, err := r.guarded.Append(ctx, walker, []proto.Message{estest.Steps("walker-1", 1000)}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		slowest = max(slowest, time.Since(start))
		if !errors.Is(err, es.ErrStoreFull) || es.KindOf(err) != es.ResourceExhausted {
			t.Fatalf("append %d on a full disk: %v (kind %v), want es.ErrStoreFull", i, err, es.KindOf(err))
		}
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("appends on a full disk took up to %v, want them refused at once", slowest)
	}
	t.Logf("with the guard, appends on the full disk fail in at most %v: %v", slowest, es.ErrStoreFull)
	select {
	case err := <-runDone:
		t.Fatalf("runner stopped on a full disk: %v", err)
	default:
	}

	if err := os.Remove(filepath.Join(r.dir, "filler")); err != nil {
		t.Fatal(err)
	}
	recovered := poll.Until(t, 10*time.Second, "store takes writes once space is freed", func() bool {
		return r.guarded.Healthy(ctx) == nil
	})
	t.Logf("writes resumed %v after space was freed", recovered.Round(time.Millisecond))
	for i := int32(21); i <= 40; i++ {
		appendSteps(i)
	}

	// Everything acknowledged is there, in order, and nothing else.
	last, err := r.guarded.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := all[len(all)-1].seq; last != want || uint64(len(all)) != last {
		t.Errorf("stream ends at %d with %d acknowledged writes (last at %d): want exactly those", last, len(all), want)
	}
	byStream := map[es.StreamID][]acked{}
	for _, a := range all {
		byStream[a.stream] = append(byStream[a.stream], a)
	}
	for stream, want := range byStream {
		commits, _ := estest.MustLoad(t, r.guarded, stream, 0)
		if len(commits) != len(want) {
			t.Fatalf("%s: %d commits, want the %d acknowledged", stream, len(commits), len(want))
		}
		for i, c := range commits {
			got := c.Events[0].Data.(*stepsv1.StepsRecorded).GetSteps()
			if c.Seq != want[i].seq || got != want[i].steps {
				t.Errorf("%s commit %d: seq %d steps %d, want seq %d steps %d", stream, i, c.Seq, got, want[i].seq, want[i].steps)
			}
		}
	}

	caughtUp := poll.Until(t, 10*time.Second, "runner catches up", func() bool { return runner.Position() >= last })
	if n, _ := model.Steps("walker-1", "2026-03-04"); n != 40 {
		t.Errorf("steps model has %d for walker-1, want 40", n)
	}
	t.Logf("runner caught up %v after the appends that followed recovery", caughtUp.Round(time.Millisecond))
	obs, err := r.guarded.JetStream().ObjectStore(ctx, "projections")
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "runner snapshots again", func() bool {
		info, err := obs.GetInfo(ctx, stepsmodel.Name)
		return err == nil && info.Metadata["tideline-position"] == strconv.FormatUint(last, 10)
	})

	start := time.Now()
	stopRunner()
	if err := <-runDone; err != nil {
		t.Errorf("runner: %v", err)
	}
	if took := time.Since(start) + r.stop(); took > 3*time.Second {
		t.Errorf("shutdown took %v", took)
	}
}

// TestDiskFullShutdown shuts down while the disk is still full and the
// server still holds its write error: it stays fast.
func TestDiskFullShutdown(t *testing.T) {
	r := startDiskRig(t, 16<<20, 1<<20)
	ctx := context.Background()
	runner := tljs.NewRunner(r.guarded, stepsmodel.New(), tljs.RunnerOptions{Logger: r.log})
	runCtx, stopRunner := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- runner.Run(runCtx) }()
	walker := es.StreamID{Context: "steps", Type: "user", ID: "walker-1"}
	res := estest.MustAppend(t, r.guarded, walker, es.AppendOptions{ExpectedVersion: es.AnyVersion}, estest.Steps("walker-1", 5))
	poll.Until(t, 5*time.Second, "runner applies", func() bool { return runner.Position() >= res.Position.Seq })
	r.fillUntilStuck(t, estest.NewStream(t))
	poll.Until(t, 5*time.Second, "guarded store reports the full disk", func() bool {
		return errors.Is(r.guarded.Healthy(ctx), es.ErrStoreFull)
	})

	start := time.Now()
	stopRunner() // its model changed since its last snapshot: none
	if err := <-runDone; err != nil {
		t.Errorf("runner: %v", err)
	}
	if took := time.Since(start) + r.stop(); took > 3*time.Second {
		t.Errorf("shutdown on a full disk took %v", took)
	} else {
		t.Logf("shutdown on a full disk took %v", took.Round(time.Millisecond))
	}
}

// TestStoreLimitReached fills JetStream's own limit (its default max store
// is 3/4 of the disk's free space at start) before the disk: the server
// refuses the write, and the append fails at once with es.ErrStoreFull.
func TestStoreLimitReached(t *testing.T) {
	r := startDiskRig(t, 8<<20, -1)
	stream := estest.NewStream(t)
	big := strings.Repeat("x", 256<<10)
	for i := int32(1); ; i++ {
		if i > 40 {
			t.Fatalf("stored %d MiB on an 8 MiB disk", i/4)
		}
		start := time.Now()
		_, err := r.guarded.Append(context.Background(), stream, []proto.Message{&stepsv1.StepsRecorded{UserId: big, Steps: i}}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err == nil {
			continue
		}
		if took := time.Since(start); !errors.Is(err, es.ErrStoreFull) || took > 100*time.Millisecond {
			t.Fatalf("append over the store limit: %v (kind %v) after %v, want es.ErrStoreFull at once", err, es.KindOf(err), took)
		}
		break
	}
}
