package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/wire"
)

// RunnerOptions tune a Runner.
type RunnerOptions struct {
	// Bucket is the object-store bucket holding snapshots, one object per
	// projection named after it (for a projections.Segmented projection,
	// its manifest, with its segments beside it); default "projections".
	// One runner per projection may use a bucket at a time.
	Bucket string
	// SnapshotEvery is how often a changed model is snapshotted; default
	// 30s. A final snapshot is also written when Run returns.
	SnapshotEvery time.Duration
	// SnapshotAfter snapshots after this many events applied since the
	// last snapshot; default 100000. While the runner replays history it
	// waits for at least half its position's worth (see snapshotAfter).
	SnapshotAfter int
	// HistoryEvery keeps a snapshot in the snapshot history (for AsOf)
	// when it lies at least this many positions past the newest kept
	// one; default 100000, negative keeps none (see history.go).
	HistoryEvery int
	// HistoryKeep bounds the snapshots kept in the history; default 48.
	HistoryKeep int
	// AsOf bounds AsOf queries; share one among a server's runners.
	// Default: NewAsOfLimits(0, 0, 0) of the runner's own.
	AsOf *AsOfLimits
	// Replay, when set, is a pass over the stream the runner's replay
	// shares with the other runners created with it (see Replay).
	Replay *Replay
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// RunnerState is what a runner is doing.
type RunnerState int

const (
	// NotRunning: Run is not running (not started yet, or it returned).
	NotRunning RunnerState = iota
	// Running: applying commits as they are written.
	Running
	// Rebuilding: replaying from position 1 up to the stream's last
	// sequence as of the rebuild's start.
	Rebuilding
	// Stopped: halted at a commit the projection cannot decode or apply;
	// see Resume and Skip.
	Stopped
)

func (s RunnerState) String() string {
	switch s {
	case Running:
		return "running"
	case Rebuilding:
		return "rebuilding"
	case Stopped:
		return "stopped"
	}
	return "not running"
}

// RunnerStatus describes a runner at one moment.
type RunnerStatus struct {
	Name     string
	Version  int
	Position uint64 // last applied commit sequence
	Lag      uint64 // stream last sequence - Position; 0 when the stream cannot be read
	State    RunnerState
	// StoppedAt is, when Stopped, the sequence of the commit the
	// projection cannot apply; Position is before it.
	StoppedAt uint64
	// Reason says why the runner is Stopped, or why Run returned an error.
	Reason string
	// Rebuilds counts the rebuilds from position 1 this runner started
	// (on demand, or at start for a snapshot it could not use).
	Rebuilds uint64
}

// Snapshot object metadata keys. The object's bytes are the projection's
// Snapshot; these say what they are, so a snapshot of another version is
// skipped without downloading it.
const (
	snapshotMetaName     = "tideline-projection"
	snapshotMetaVersion  = "tideline-projection-version"
	snapshotMetaPosition = "tideline-position"
)

const (
	// maxBatch bounds how many commits the consumer's callback hands to
	// Run at once; it hands over sooner when nothing more is pending.
	maxBatch = 256
	// pullMaxMessages is how many messages the consumer keeps in flight.
	pullMaxMessages = 2048
	// feedHeartbeat is the consumer's idle heartbeat: a consumer the server
	// lost (JetStream restarted after a full disk) is recreated after two
	// missed, rather than the ordered consumer's default 2×5s.
	feedHeartbeat = time.Second
	// snapshotWriteTimeout bounds one snapshot upload; snapshotReadTimeout
	// bounds reading one back.
	snapshotWriteTimeout = time.Minute
	snapshotReadTimeout  = time.Minute
	// historyLoadTimeout bounds opening and listing the snapshot history
	// when Run starts.
	historyLoadTimeout = 10 * time.Second
	// finalSnapshotWait bounds how long Run, once its context is done,
	// waits for the upload in flight and the final snapshot while they
	// make no progress (no byte of them taken for that long), and
	// finalSnapshotMax how long in all: a server's shutdown waits for
	// them. A node leaving a cluster that has lost its majority would
	// otherwise wait out snapshotWriteTimeout per upload; an upload cut
	// short costs the next Run a longer replay from the snapshot stored
	// before, nothing more. A fixed 4 s cut the final uploads of a model
	// of 10M events, which take longer, on every stop after a start
	// without snapshots, so the next start replayed millions of events.
	finalSnapshotWait = 4 * time.Second
	finalSnapshotMax  = time.Minute
	// noSnapshot is the snapshot position when the stored snapshot does not
	// match the model (none, another version, or a rebuild is under way).
	noSnapshot = ^uint64(0)
	// maxSkipReason bounds the reason recorded with a skip decision.
	maxSkipReason = 1000
)

// Runner feeds one projection from the events stream: it restores the
// projection's latest snapshot, applies every later commit in order with an
// ordered consumer, snapshots periodically, and rebuilds on demand. A
// projections.Segmented projection is snapshotted as segments, writing
// only those its capture says changed (see segments.go); Apply waits only
// for the capture, the segments are encoded and written in the background.
//
// A commit the projection cannot decode, or whose Apply panics, stops the
// runner at that commit (state Stopped): the model stays as of the commit
// before, queries still read it, and waiting for a position at or past the
// commit fails. Resume retries the commit (as does the next Run); Skip
// records the decision to pass it, which every later replay honours.
//
// Apply, Reset, Restore, Snapshot, Capture and RestoreSegments are only
// ever called from Run's goroutine (a capture's Encodes run on another),
// so a snapshot always matches the position it is stored with.
// The other methods are safe for concurrent use, also while Run is running.
type Runner struct {
	store *Store
	p     projections.Projection
	opts  RunnerOptions
	log   *slog.Logger
	// uploaded is when a snapshot upload last made progress.
	uploaded uploadWatch

	pos             atomic.Uint64
	advanced        atomic.Pointer[chan struct{}]
	rebuilding      atomic.Bool
	rebuildsStarted atomic.Uint64
	running         atomic.Bool
	halted          atomic.Pointer[halt]   // non-nil while stopped at a commit
	failure         atomic.Pointer[string] // why the last Run returned an error
	rebuilds        chan rebuildRequest
	controls        chan control
	types           map[string]struct{} // nil: the projection reads every type

	// For a scoped projection (subjects non-nil), covered is a position up
	// to which the stream was shown to hold nothing more for it than it
	// applied; Position reports the larger of the two. It never exceeds
	// the stream's end. gen counts rewinds so a proof begun before one is
	// not recorded after it.
	subjects []string
	covMu    sync.Mutex
	gen      uint64
	covered  atomic.Uint64
	target   atomic.Uint64 // the position the current rebuild must reach

	// The snapshot history (history.go): its bucket once opened, and the
	// positions it keeps of the model's version, once loaded.
	histMu     sync.Mutex
	histObs    jetstream.ObjectStore
	hist       []uint64
	histLoaded bool
	// asOfCache holds the latest AsOf results (asof.go).
	asOfMu    sync.Mutex
	asOfCache []AsOfModel
}

type rebuildRequest struct {
	target uint64     // the stream's last sequence when Rebuild was called
	done   chan error // nil once the model is reset and replay has started
}

// halt is where and why a runner stopped.
type halt struct {
	pos    uint64
	reason string
}

// control asks Run to add skip (unless 0) to the skipped positions and to
// resume a halted model.
type control struct {
	skip uint64
	done chan error
}

// NewRunner returns a runner of p on store's events stream.
func NewRunner(store *Store, p projections.Projection, opts RunnerOptions) *Runner {
	if opts.Bucket == "" {
		opts.Bucket = "projections"
	}
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = 30 * time.Second
	}
	if opts.SnapshotAfter <= 0 {
		opts.SnapshotAfter = 100000
	}
	if opts.HistoryEvery == 0 {
		opts.HistoryEvery = defaultHistoryEvery
	}
	if opts.HistoryKeep <= 0 {
		opts.HistoryKeep = defaultHistoryKeep
	}
	if opts.AsOf == nil {
		opts.AsOf = NewAsOfLimits(0, 0, 0)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Runner{
		store:    store,
		p:        p,
		opts:     opts,
		log:      opts.Logger.With("projection", p.Name()),
		rebuilds: make(chan rebuildRequest),
		controls: make(chan control),
	}
	if sc, ok := p.(projections.Scoped); ok {
		r.subjects = sc.Subjects()
	}
	if sel, ok := p.(projections.Selective); ok {
		r.types = map[string]struct{}{}
		for _, t := range sel.EventTypes() {
			r.types[t] = struct{}{}
			for _, old := range wire.OlderTypes(t) { // stored under their old names, decoded upcast to t
				r.types[old] = struct{}{}
			}
		}
	}
	ch := make(chan struct{})
	r.advanced.Store(&ch)
	if opts.Replay != nil {
		opts.Replay.expect(r)
	}
	return r
}

// Name returns the projection's name.
func (r *Runner) Name() string { return r.p.Name() }

// Position returns the sequence of the last commit applied to the model;
// 0 before any, and again right after a Rebuild resets the model.
func (r *Runner) Position() uint64 { return max(r.pos.Load(), r.covered.Load()) }

// Advanced returns a channel closed the next time Position advances or the
// runner stops at a commit. Each closes the current channel and starts a
// new one; advances within one applied batch close a single channel.
func (r *Runner) Advanced() <-chan struct{} { return *r.advanced.Load() }

// WaitFor returns nil once Position() >= pos, or ctx's error. It fails at
// once with an es.OutOfRange error when pos lies past the stream's last
// sequence (no append returned it), and with an es.Unavailable error while
// the runner is stopped at a commit at or before pos. Callers bound ctx:
// if Run is not running, only ctx ends the wait.
func (r *Runner) WaitFor(ctx context.Context, pos uint64) error {
	for {
		ch := r.Advanced() // before the check, so an advance in between is not missed
		if r.Position() >= pos {
			return nil
		}
		if h := r.halted.Load(); h != nil && h.pos <= pos {
			return es.Errorf(es.Unavailable, "read model %s is stopped at position %d", r.p.Name(), h.pos)
		}
		if err := r.written(ctx, pos); err != nil {
			return err
		}
		if covered, err := r.cover(ctx, pos); err != nil {
			return err
		} else if covered {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// written returns nil if the stream holds pos and an es.OutOfRange error
// if it ends before. It asks the server only when pos is past the highest
// sequence known to exist, which a position an append returned in this
// process never is.
func (r *Runner) written(ctx context.Context, pos uint64) error {
	if pos <= r.knownEnd() {
		return nil
	}
	last, err := r.store.LastPosition(ctx)
	if err != nil {
		return es.Wrap(es.Unavailable, "read the stream's last position", err)
	}
	if pos > last {
		return es.Errorf(es.OutOfRange, "position %d is past the end of the event stream", pos)
	}
	return nil
}

// knownEnd returns a sequence the stream is known to hold, without asking.
func (r *Runner) knownEnd() uint64 { return max(r.store.knownEnd(), r.pos.Load()) }

// Lag returns the stream's last sequence minus Position: 0 when caught up.
func (r *Runner) Lag(ctx context.Context) (uint64, error) {
	last, err := r.store.LastPosition(ctx)
	if err != nil {
		return 0, err
	}
	return r.LagAt(ctx, last)
}

// LagAt is Lag against last, the stream's last sequence as the caller
// read it (Store.LastPosition): one read serves every runner it asks.
func (r *Runner) LagAt(ctx context.Context, last uint64) (uint64, error) {
	if pos := r.Position(); last > pos {
		if covered, err := r.cover(ctx, last); err != nil || !covered {
			return last - pos, err
		}
	}
	return 0, nil
}

// cover reports whether a scoped projection has everything it reads up to
// pos: no message on its subjects lies after what it applied and at or
// before pos. Once the stream holds pos the answer cannot change, so it is
// recorded in covered; a pos past the stream's known end is never covered
// (it would let a caller's made-up position stand for writes to come).
func (r *Runner) cover(ctx context.Context, pos uint64) (bool, error) {
	if r.subjects == nil || pos > r.knownEnd() {
		return false, nil
	}
	r.covMu.Lock()
	gen := r.gen
	r.covMu.Unlock()
	applied := r.pos.Load()
	for _, subj := range r.subjects {
		next, found, err := r.store.nextOn(ctx, subj, applied+1)
		if err != nil {
			return false, err
		}
		if found && next <= pos {
			return false, nil
		}
	}
	r.covMu.Lock()
	defer r.covMu.Unlock()
	if r.gen != gen {
		return false, nil
	}
	if r.covered.Load() < pos {
		r.covered.Store(pos)
	}
	return true, nil
}

// rewind sets the applied position to pos (after a reset or a restore)
// and discards what cover proved from the old one.
func (r *Runner) rewind(pos uint64) {
	r.pos.Store(pos)
	r.covMu.Lock() // after pos: a proof that saw the old pos is discarded
	r.gen++
	r.covered.Store(0)
	r.covMu.Unlock()
}

// Status returns the runner's name, version, position, lag and state, with
// where and why it is stopped. Lag is 0 when the stream cannot be read.
func (r *Runner) Status(ctx context.Context) RunnerStatus {
	lag, _ := r.Lag(ctx)
	return r.status(lag)
}

// State is Status without the lag (0): it asks nothing of the store.
func (r *Runner) State() RunnerStatus { return r.status(0) }

func (r *Runner) status(lag uint64) RunnerStatus {
	st := RunnerStatus{Name: r.p.Name(), Version: r.p.Version(), Position: r.Position(), Lag: lag, State: Running, Rebuilds: r.rebuildsStarted.Load()}
	switch h := r.halted.Load(); {
	case !r.running.Load():
		st.State = NotRunning
		if f := r.failure.Load(); f != nil {
			st.Reason = *f
		}
	case h != nil:
		st.State, st.StoppedAt, st.Reason = Stopped, h.pos, h.reason
	case r.rebuilding.Load() && st.Position < r.target.Load():
		st.State = Rebuilding
	}
	return st
}

// Rebuild asks the running Run to reset the model and replay it from
// position 1 (reading the recorded skip decisions again), then carry on
// live. It returns once the replay has reached the stream's last sequence
// as of the call, with an es.Unavailable error if it stops at a commit
// before, or with ctx's error (the rebuild itself carries on). It waits for
// Run to accept the request, so callers bound ctx.
func (r *Runner) Rebuild(ctx context.Context) error {
	target, err := r.store.LastPosition(ctx)
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", r.p.Name(), err)
	}
	req := rebuildRequest{target: target, done: make(chan error, 1)}
	select {
	case r.rebuilds <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", r.p.Name(), err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	return r.WaitFor(ctx, target)
}

// Resume retries a Stopped runner from the commit it stopped at, after
// reading the recorded skip decisions again (use it once the code that
// failed on the commit is fixed; a new Run retries too). If Apply panicked
// part-way through the commit, the model is first restored from its last
// snapshot. Resume returns nil once the projection is past the commit, an
// es.FailedPrecondition error if it is not stopped or stops before the
// commit again, or ctx's error. It waits for Run, so callers bound ctx.
func (r *Runner) Resume(ctx context.Context) error {
	h := r.halted.Load()
	if h == nil {
		return es.Errorf(es.FailedPrecondition, "projection %s is not stopped", r.p.Name())
	}
	if err := r.control(ctx, control{}); err != nil {
		return err
	}
	return r.awaitPast(ctx, h.pos)
}

// Skip records the decision that the projection does not apply the commit
// at pos, the one it is stopped at: a ProjectionCommitSkipped event on
// ev.admin.projection.<name> with reason and meta (who decided). Then it
// resumes the runner past the commit, as Resume does. Every later replay
// and rebuild of the projection skips that commit too.
//
// It returns the decision's position; an es.Invalid error for a reason
// that is empty or longer than 1000 bytes, an es.FailedPrecondition error
// unless the runner is stopped at exactly pos, or ctx's error once the
// decision is recorded (the runner then carries on by itself).
func (r *Runner) Skip(ctx context.Context, pos uint64, reason string, meta es.Metadata) (es.Position, error) {
	if reason == "" || len(reason) > maxSkipReason {
		return es.Position{}, es.Invalidf("reason", "must be 1 to %d bytes, got %d", maxSkipReason, len(reason))
	}
	h := r.halted.Load()
	if h == nil {
		return es.Position{}, es.Errorf(es.FailedPrecondition, "projection %s is not stopped: only the commit it is stopped at can be skipped", r.p.Name())
	}
	if h.pos != pos {
		return es.Position{}, es.Errorf(es.FailedPrecondition, "projection %s is stopped at position %d, not %d: only that commit can be skipped", r.p.Name(), h.pos, pos)
	}
	res, err := r.store.Append(ctx, skipStream(r.p.Name()), []proto.Message{&adminv1.ProjectionCommitSkipped{
		Projection: r.p.Name(),
		Position:   pos,
		Reason:     reason,
		Error:      h.reason,
		Version:    int32(r.p.Version()),
	}}, es.AppendOptions{
		ExpectedVersion: es.AnyVersion,
		IdempotencyKey:  "skip-" + strconv.FormatUint(pos, 10),
		Meta:            meta,
	})
	if err != nil {
		return es.Position{}, fmt.Errorf("record skip decision: %w", err)
	}
	r.log.Warn("recorded decision to skip a commit", "position", pos, "reason", reason, "actor", meta.Actor, "decision", res.Position.Seq)
	if err := r.control(ctx, control{skip: pos}); err != nil {
		return res.Position, err
	}
	return res.Position, r.awaitPast(ctx, pos)
}

// skipStream is where a projection's skip decisions are recorded.
func skipStream(projection string) es.StreamID {
	return es.StreamID{Context: "admin", Type: "projection", ID: projection}
}

// control hands c to Run and returns Run's answer.
func (r *Runner) control(ctx context.Context, c control) error {
	c.done = make(chan error, 1)
	select {
	case r.controls <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// awaitPast waits until Position reaches pos, failing if the runner stops
// before it.
func (r *Runner) awaitPast(ctx context.Context, pos uint64) error {
	for {
		ch := r.Advanced()
		if r.Position() >= pos {
			return nil
		}
		if h := r.halted.Load(); h != nil {
			return es.Errorf(es.FailedPrecondition, "projection %s is stopped at position %d: %s", r.p.Name(), h.pos, h.reason)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Run restores the projection's latest snapshot (or, when there is none,
// it is of another Version, or it cannot be read or restored, resets the
// model and starts from position 1), then applies every later commit in
// order until ctx is done, skipping the commits recorded skip decisions
// name. It snapshots every SnapshotEvery or SnapshotAfter events, and once
// more on the way out, waiting for that (and an upload in flight) at most
// 4 s after ctx is done. It returns nil when ctx is done, an error when the
// snapshot bucket or the consumer fail; at most one Run may run at a time.
// A commit it cannot apply stops it there (see Runner) without returning.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return fmt.Errorf("projection %s: runner already running", r.p.Name())
	}
	defer r.running.Store(false)
	r.failure.Store(nil)
	// A halt lasts as long as this Run: the next one retries the commit.
	defer r.halted.Store(nil)

	if err := r.run(ctx); err != nil && ctx.Err() == nil {
		err = fmt.Errorf("projection %s: %w", r.p.Name(), err)
		msg := err.Error()
		r.failure.Store(&msg)
		return err
	}
	return nil
}

func (r *Runner) run(ctx context.Context) error {
	var obs jetstream.ObjectStore
	err := WhileClusterForms(ctx, r.store.cfg.Shared, func(ctx context.Context) (err error) {
		obs, err = r.store.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      r.opts.Bucket,
			Description: "Tideline projection snapshots, one object per projection",
			Storage:     jetstream.FileStorage,
			Replicas:    r.store.cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("snapshot bucket %s: %w", r.opts.Bucket, err)
	}
	if r.opts.HistoryEvery > 0 {
		// Beside the start, and bounded: the history is an optimisation
		// (until it is loaded no snapshot is kept in it, and as-of reads
		// load it themselves; without it this Run keeps none), and on a
		// cluster node whose JetStream is not ready yet, or just
		// restarted, listing it can wait out its bound, which held up
		// the model's start by 10 s.
		hctx, cancel := context.WithTimeout(ctx, historyLoadTimeout)
		loaded := make(chan struct{})
		go func() {
			defer close(loaded)
			hist, err := r.historyBucket(hctx, true)
			if err == nil {
				err = r.loadHistory(hctx, hist, true)
			}
			// Canceled, Run is over: stopped, or failed and said why.
			if err != nil && !errors.Is(hctx.Err(), context.Canceled) {
				r.log.Warn("snapshot history unavailable", "error", err)
			}
		}()
		defer func() { cancel(); <-loaded }()
	}
	// Uploads outlive ctx (the final snapshot is written once it is
	// done), for as long as they progress (finalSnapshotWait).
	uploads, cutUploads := context.WithCancel(context.WithoutCancel(ctx))
	defer cutUploads()
	defer context.AfterFunc(ctx, func() { r.uploaded.cutWhenIdle(uploads, cutUploads, finalSnapshotWait, finalSnapshotMax) })()
	l := &runLoop{r: r, obs: obs, snapPos: noSnapshot, written: make(chan snapshotWritten, 1), skips: map[uint64]struct{}{}, uploads: uploads, cutUploads: cutUploads}
	l.seg, _ = r.p.(projections.Segmented)
	l.loadSkips(ctx)
	if err := l.restore(ctx); err != nil {
		return err
	}
	return l.run(ctx)
}

// runLoop is the state of one Run, owned by its goroutine.
type runLoop struct {
	r       *Runner
	obs     jetstream.ObjectStore
	feed    *feed  // nil while halted
	target  uint64 // while rebuilding: the position that ends the rebuild
	snapPos uint64 // position of the stored snapshot, or noSnapshot
	since   int    // events applied since the last snapshot was taken
	writing bool   // a snapshot upload is in flight; it reports on written
	written chan snapshotWritten
	// uploads is the snapshot uploads' context: it ends
	// finalSnapshotWait after Run's.
	uploads    context.Context
	cutUploads context.CancelFunc
	skips      map[uint64]struct{} // commits recorded skip decisions name
	// dirty: Apply panicked part-way through a commit, so the model may
	// hold part of it. It is never snapshotted, and resuming restores the
	// last snapshot first.
	dirty bool

	// For a projections.Segmented projection (seg non-nil): stored is the
	// manifest in the bucket as far as known (nil: none); full asks the
	// next capture for every segment, as stored does not hold the
	// previous one; orphans are objects failed snapshots wrote; swept is
	// set once a snapshot of this Run removed what earlier ones left.
	seg     projections.Segmented
	stored  *manifest
	full    bool
	orphans []string
	swept   bool
}

type snapshotWritten struct {
	pos     uint64
	err     error
	man     *manifest // the segmented snapshot written
	orphans []string  // what a failed segmented snapshot wrote
}

// loadSkips adds the projection's recorded skip decisions to l.skips. On
// error it logs and keeps what it had: the runner then stops at a commit
// a decision it missed would skip, rather than pass it.
func (l *runLoop) loadSkips(ctx context.Context) {
	if err := l.r.readSkips(ctx, l.skips); err != nil {
		l.r.log.Error("read skip decisions", "error", err)
	}
}

// readSkips adds the positions the projection's recorded skip decisions
// name to skips.
func (r *Runner) readSkips(ctx context.Context, skips map[uint64]struct{}) error {
	commits, _, err := r.store.Load(ctx, skipStream(r.p.Name()), 0)
	if err != nil {
		return err
	}
	for _, c := range commits {
		for _, e := range c.Events {
			if d, ok := e.Data.(*adminv1.ProjectionCommitSkipped); ok && d.GetProjection() == r.p.Name() {
				skips[d.GetPosition()] = struct{}{}
			}
		}
	}
	return nil
}

// errOtherSnapshot marks a stored snapshot of another projection version.
var errOtherSnapshot = errors.New("snapshot of another version")

// restore replaces the model with its stored snapshot. When there is none
// the model starts empty at position 1; a snapshot of another version, or
// one that cannot be read or restored (damaged or truncated bytes, a
// failed digest, a panicking Restore), or that claims a position past the
// stream's end, is discarded and the model rebuilt from position 1.
func (l *runLoop) restore(ctx context.Context) error {
	for try := 1; ; try++ {
		err := l.restoreOnce(ctx)
		if !errors.Is(err, errRetryRead) {
			return err
		}
		if try == restoreTries {
			l.r.log.Warn("discarding snapshot that cannot be read; rebuilding from position 1", "error", err, "tries", try)
			return l.startRebuild(ctx)
		}
		l.r.log.Warn("snapshot not readable yet; reading it again", "error", err, "try", try)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(restorePause):
		}
	}
}

// restorePause spaces restore's tries.
var restorePause = time.Second

// restoreTries is how many times restore reads a snapshot that is not
// readable yet (errRetryRead) before it rebuilds the model instead: a
// replica behind its peers catches up within seconds.
const restoreTries = 3

// restoreOnce is one try of restore; it returns an errRetryRead error,
// having changed nothing, when the snapshot is not readable yet.
func (l *runLoop) restoreOnce(ctx context.Context) error {
	r := l.r
	data, pos, err := l.readSnapshot(ctx)
	switch {
	case errors.Is(err, errRetryRead):
		return err
	case errors.Is(err, jetstream.ErrObjectNotFound):
		r.log.Info("no snapshot; applying from position 1")
		r.p.Reset()
		r.rewind(0)
		return nil
	case errors.Is(err, errOtherSnapshot):
		r.log.Info("ignoring snapshot; rebuilding from position 1", "error", err, "version", r.p.Version())
		return l.startRebuild(ctx)
	case err != nil:
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.log.Warn("discarding snapshot that cannot be read; rebuilding from position 1", "error", err)
		return l.startRebuild(ctx)
	}
	last, err := r.store.LastPosition(ctx)
	if err != nil {
		return err
	}
	if pos > last {
		r.log.Warn("discarding snapshot past the stream's end; rebuilding from position 1", "snapshot_position", pos, "stream_last", last)
		return l.startRebuild(ctx)
	}
	if l.seg != nil {
		l.stored, err = l.restoreSegments(ctx, data, pos)
		l.full = err != nil
	} else {
		err = restoreModel(r.p, data)
	}
	if errors.Is(err, errRetryRead) {
		r.p.Reset() // it may hold some segments
		return err
	}
	if err != nil {
		r.log.Warn("discarding snapshot that does not restore; rebuilding from position 1", "error", err)
		return l.startRebuild(ctx)
	}
	r.rewind(pos)
	r.broadcast()
	l.snapPos = pos
	r.log.Info("restored snapshot", "position", pos, "bytes", len(data))
	return nil
}

// readSnapshot reads the stored snapshot and the position it holds. It
// returns jetstream.ErrObjectNotFound when there is none, errOtherSnapshot
// for one of another version, and any other error for one that cannot be
// read whole.
func (l *runLoop) readSnapshot(ctx context.Context) ([]byte, uint64, error) {
	r := l.r
	ctx, cancel := context.WithTimeout(ctx, snapshotReadTimeout)
	defer cancel()
	res, err := l.obs.Get(ctx, r.p.Name())
	if err != nil {
		return nil, 0, fmt.Errorf("get snapshot: %w", err)
	}
	info, err := res.Info()
	if err != nil {
		res.Close()
		return nil, 0, fmt.Errorf("get snapshot: %w", err)
	}
	version, verr := strconv.Atoi(info.Metadata[snapshotMetaVersion])
	pos, perr := strconv.ParseUint(info.Metadata[snapshotMetaPosition], 10, 64)
	if info.Metadata[snapshotMetaName] != r.p.Name() || verr != nil || perr != nil || version != r.p.Version() ||
		(info.Metadata[snapshotMetaFormat] == segmentsFormat) != (l.seg != nil) {
		return nil, 0, fmt.Errorf("%w: name %q, version %q, format %q", errOtherSnapshot,
			info.Metadata[snapshotMetaName], info.Metadata[snapshotMetaVersion], info.Metadata[snapshotMetaFormat])
	}
	data, err := readObject(res)
	if err != nil {
		return nil, 0, fmt.Errorf("read snapshot: %w", err)
	}
	return data, pos, nil
}

// restoreModel restores p from data, turning a panic into an error.
func restoreModel(p projections.Projection, data []byte) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("restore panicked: %v", v)
		}
	}()
	return p.Restore(data)
}

func (l *runLoop) startRebuild(ctx context.Context) error {
	last, err := l.r.store.LastPosition(ctx)
	if err != nil {
		return err
	}
	l.r.p.Reset()
	l.r.rewind(0)
	l.full = true
	l.target = last
	l.r.target.Store(last)
	l.r.rebuilding.Store(last > 0)
	l.r.rebuildsStarted.Add(1)
	return nil
}

func (l *runLoop) run(ctx context.Context) error {
	r := l.r
	if err := l.startFeed(false); err != nil {
		return err
	}
	tick := time.NewTicker(r.opts.SnapshotEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return l.stop(nil)
		case <-l.feed.closedCh():
			return l.stop(errors.New("consumer stopped"))
		case req := <-r.rebuilds:
			err := l.rebuild(ctx, req.target)
			req.done <- err
			if err != nil {
				return l.stop(err)
			}
		case c := <-r.controls:
			if c.skip != 0 {
				l.skips[c.skip] = struct{}{}
			}
			if r.halted.Load() == nil {
				var err error
				if c.skip == 0 {
					err = es.Errorf(es.FailedPrecondition, "projection %s is not stopped", r.p.Name())
				}
				c.done <- err
				continue
			}
			err := l.resume(ctx)
			c.done <- err
			if err != nil {
				return l.stop(err)
			}
		case <-tick.C:
			l.snapshot()
		case w := <-l.written:
			l.wrote(w)
		case batch := <-l.feed.batchCh():
			from := l.feed // apply may replace it
			ok := l.apply(batch)
			from.recycle(batch)
			if !ok {
				// Only possible if the consumer reset while a callback
				// was blocked: a commit may have been skipped.
				r.log.Error("consumer delivered out of order; rebuilding")
				if err := l.rebuild(ctx, r.Position()); err != nil {
					return l.stop(err)
				}
				continue
			}
			if r.rebuilding.Load() && r.Position() >= l.target {
				r.rebuilding.Store(false)
				r.log.Info("rebuild caught up", "position", r.Position())
			}
			r.broadcast()
			if l.feed == nil {
				continue // halted
			}
			if (l.feed.pass != nil || (r.subjects != nil && !l.feed.filtered)) && l.feed.pending.Load() == 0 {
				// Caught up: leave the shared pass, and follow only our
				// subjects from here if we have any. What the old feed
				// still held is delivered again by the new one.
				l.stopFeed()
				if err := l.startOwnFeed(r.subjects != nil); err != nil {
					return l.stop(err)
				}
			}
			if l.since >= l.snapshotAfter() {
				l.snapshot()
			}
		}
	}
}

// snapshotAfter is how many events applied since the last snapshot call
// for the next: RunnerOptions.SnapshotAfter, but while the runner
// replays history (its feed has more pending) at least half its position.
// Each snapshot of a whole model encodes all of it, so a snapshot every
// SnapshotAfter events made a replay of N events cost O(N²) (at 10M
// events, 100 snapshots of each model); spaced out geometrically they
// cost a few whole snapshots' worth. SnapshotEvery still bounds what a
// crash during the replay loses.
func (l *runLoop) snapshotAfter() int {
	after := l.r.opts.SnapshotAfter
	if l.feed != nil && l.feed.pending.Load() > 0 {
		after = max(after, int(min(l.r.Position()/2, math.MaxInt32)))
	}
	return after
}

// startFeed starts a feed after the applied position: on the shared
// pass (RunnerOptions.Replay) when it is unfiltered and the pass can
// give it; else, when the store reads its stream's files and the runner
// is ownPassMin commits or more behind (a rebuild, a runner that came
// after the shared pass), on a pass of its own, which reads what it can
// from the files; else on a consumer of its own.
func (l *runLoop) startFeed(filtered bool) error {
	r := l.r
	if !filtered && r.opts.Replay != nil {
		if f, ok := r.opts.Replay.attach(r, r.pos.Load()); ok {
			l.feed = f
			return nil
		}
	}
	if pos := r.pos.Load(); !filtered && r.store.readsFiles() && r.store.knownEnd() >= pos+ownPassMin {
		p := newOwnReplay(r.store, r.log)
		if f, ok := p.attach(r, pos); ok {
			p.Gathered()
			l.feed = f
			return nil
		}
	}
	return l.startOwnFeed(filtered)
}

// ownPassMin is how far behind the stream's end a runner must be for a
// pass of its own to read the files: a few commits are read sooner
// through the server than by reading the block that holds them.
const ownPassMin = 4096

// startOwnFeed starts a feed on a consumer of the runner's own.
func (l *runLoop) startOwnFeed(filtered bool) error {
	f, err := l.r.startFeed(l.r.pos.Load(), filtered)
	if err != nil {
		return err
	}
	l.feed = f
	return nil
}

func (l *runLoop) stopFeed() {
	if l.feed != nil {
		l.feed.stop()
		l.feed = nil
	}
}

// apply applies batch in order. It returns false, having applied the
// commits before it, at a commit that does not follow the position. A
// commit a recorded decision names is passed over; at any other commit
// that cannot be decoded or applied the runner halts, with the position
// before that commit and the rest of the batch dropped.
func (l *runLoop) apply(batch []delivery) bool {
	r := l.r
	for i := range batch {
		d := &batch[i]
		if d.seq <= r.pos.Load() {
			return false
		}
		if len(l.skips) > 0 {
			if _, skip := l.skips[d.seq]; skip {
				r.log.Info("skipping commit by recorded decision", "position", d.seq)
				r.pos.Store(d.seq)
				continue
			}
		}
		if d.err != nil {
			l.halt(d.seq, d.err.Error(), false)
			return true
		}
		var span trace.Span
		if d.header != nil && !r.rebuilding.Load() {
			span = r.applySpan(d)
		}
		err := applyCommit(r.p, d.commit.Events)
		if span != nil {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
		if err != nil {
			l.halt(d.seq, err.Error(), true)
			return true
		}
		l.since += len(d.commit.Events)
		r.pos.Store(d.seq)
	}
	return true
}

// applySpan starts the span "apply <projection>" of applying d's commit,
// a child of the commit's append span, when the commit's trace context
// is sampled; else it returns nil. Replays (rebuilds) start none: a
// commit's trace is about its command, and a rebuild would add a span to
// every trace ever recorded.
func (r *Runner) applySpan(d *delivery) trace.Span {
	ctx := propagation.TraceContext{}.Extract(context.Background(), wire.TraceCarrier(d.header))
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return nil
	}
	_, span := r.store.tracer.Start(ctx, "apply "+r.p.Name(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attribute.String("tideline.projection", r.p.Name()),
		attribute.Int64("tideline.position", int64(d.seq)),
		attribute.Int("tideline.events", len(d.commit.Events))))
	return span
}

// applyCommit applies a commit's events, turning a panic in Apply into an
// error.
func applyCommit(p projections.Projection, events []es.Event) (err error) {
	i := 0
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("apply %s (event %d of the commit) panicked: %v", events[i].Type, i, v)
		}
	}()
	for ; i < len(events); i++ {
		p.Apply(events[i])
	}
	return nil
}

// halt stops the runner at the commit at seq, which it cannot apply.
func (l *runLoop) halt(seq uint64, reason string, dirty bool) {
	l.stopFeed()
	l.dirty = dirty
	l.r.halted.Store(&halt{pos: seq, reason: reason})
	l.r.log.Error("projection stopped at a commit it cannot apply; fix the code and resume (or restart), or skip the commit with a recorded decision",
		"position", seq, "reason", reason)
	l.r.broadcast()
}

// resume restarts the feed of a halted model, reading the skip decisions
// again; a dirty model is restored from its snapshot first.
func (l *runLoop) resume(ctx context.Context) error {
	r := l.r
	l.loadSkips(ctx)
	r.halted.Store(nil)
	if l.dirty {
		l.dirty = false
		if l.writing {
			l.wrote(<-l.written)
		}
		r.log.Info("the model may hold part of the commit it stopped at; restoring its snapshot")
		if err := l.restore(ctx); err != nil {
			return err
		}
	}
	r.log.Info("resuming", "after", r.pos.Load())
	r.broadcast()
	return l.startFeed(false)
}

func (l *runLoop) rebuild(ctx context.Context, target uint64) error {
	r := l.r
	l.stopFeed()
	if l.writing {
		// Let it land first, so it cannot mark the rebuilt model as stored.
		l.wrote(<-l.written)
	}
	r.halted.Store(nil)
	l.dirty = false
	l.loadSkips(ctx)
	r.p.Reset()
	r.rewind(0)
	l.full = true
	l.snapPos = noSnapshot // the stored snapshot is replaced once the rebuild has progressed
	l.since = 0
	if !r.rebuilding.Load() || target > l.target {
		l.target = target
	}
	r.target.Store(l.target)
	r.rebuilding.Store(l.target > 0)
	r.rebuildsStarted.Add(1)
	r.log.Info("rebuilding from position 1", "target", l.target)
	return l.startFeed(false)
}

// snapshot takes the model's snapshot on Run's goroutine and uploads it in
// the background, unless one is in flight, the model is unchanged (and
// the history is not due to keep it: the history loads beside the start,
// and may load after the last change), or it may hold part of a commit.
func (l *runLoop) snapshot() {
	pos := l.r.Position()
	if l.writing || pos == l.snapPos && !l.r.historyDue(pos) || l.dirty || l.r.store.writable() != nil {
		return // a store refusing writes (disk full) is retried at the next tick
	}
	upload, err := l.take(pos)
	if err != nil {
		l.r.log.Error("snapshot", "position", pos, "error", err)
		return
	}
	l.since = 0
	l.writing = true
	go func() { l.written <- upload(l.uploads) }()
}

// take takes the model's snapshot at pos and returns its upload. A whole
// snapshot is encoded here, on Run's goroutine; a segmented one is only
// captured, and encoded by the upload.
//
// A snapshot the history is due to keep (history.go) is kept there too,
// once written; for a segmented one the capture is then a full one.
func (l *runLoop) take(pos uint64) (upload func(context.Context) snapshotWritten, err error) {
	keep := l.r.historyDue(pos)
	if l.seg != nil {
		l.full = l.full || keep
		return l.captureSegments(pos, keep), nil
	}
	data, err := l.r.p.Snapshot()
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) snapshotWritten {
		err := l.writeHead(ctx, pos, "", data)
		if err == nil && keep {
			l.r.keepHistory(ctx, pos, l.r.snapshotMeta(pos, ""), data)
		}
		return snapshotWritten{pos: pos, err: err}
	}, nil
}

func (l *runLoop) wrote(w snapshotWritten) {
	l.writing = false
	if w.err != nil {
		l.r.log.Error("write snapshot", "position", w.pos, "error", w.err)
		if l.seg != nil {
			l.full = true
			l.orphans = append(l.orphans, w.orphans...)
		}
		return
	}
	l.snapPos = w.pos
	if w.man != nil {
		l.stored, l.full, l.orphans, l.swept = w.man, false, nil, true
	}
}

// writeHead writes the object named after the projection: a whole
// snapshot, or (format segmentsFormat) a segmented one's manifest.
func (l *runLoop) writeHead(ctx context.Context, pos uint64, format string, data []byte) error {
	name := l.r.p.Name()
	meta := l.r.snapshotMeta(pos, format)
	return l.put(ctx, jetstream.ObjectMeta{Name: name, Description: "snapshot of projection " + name, Metadata: meta}, data)
}

// snapshotMeta is the metadata of a snapshot at pos in format ("": whole).
func (r *Runner) snapshotMeta(pos uint64, format string) map[string]string {
	meta := map[string]string{
		snapshotMetaName:     r.p.Name(),
		snapshotMetaVersion:  strconv.Itoa(r.p.Version()),
		snapshotMetaPosition: strconv.FormatUint(pos, 10),
	}
	if format != "" {
		meta[snapshotMetaFormat] = format
	}
	return meta
}

// stop ends the feed and writes a final snapshot if the model changed
// since the last one (and holds no part of a commit); l.uploads bounds
// it and the upload in flight. It returns err.
func (l *runLoop) stop(err error) error {
	if err != nil {
		// Run ends on an error, its context still live: bound the
		// snapshots as its end would, so that it returns and starts
		// again.
		go l.r.uploaded.cutWhenIdle(l.uploads, l.cutUploads, finalSnapshotWait, finalSnapshotMax) // ends with Run's uploads
	}
	l.stopFeed()
	if l.writing {
		l.wrote(<-l.written)
	}
	if pos := l.r.Position(); pos != l.snapPos && !l.dirty {
		if werr := l.r.store.writable(); werr != nil {
			// An upload would wait out snapshotWriteTimeout for nothing;
			// the next Run replays from the last stored snapshot.
			l.r.log.Warn("final snapshot skipped", "position", pos, "error", werr)
			return err
		}
		if upload, serr := l.take(pos); serr != nil {
			l.r.log.Error("final snapshot", "position", pos, "error", serr)
		} else {
			l.wrote(upload(l.uploads)) // logs an error
		}
	}
	return err
}

// UploadedAt returns when a snapshot upload of r last made progress (a
// byte taken, or an upload begun or ended): a server stopping waits for
// runners whose final snapshots still progress. Zero if none ever did.
func (r *Runner) UploadedAt() time.Time {
	if ns := r.uploaded.last.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// uploadWatch records when snapshot uploads last made progress.
type uploadWatch struct{ last atomic.Int64 } // unix nanoseconds

func (w *uploadWatch) mark() { w.last.Store(time.Now().UnixNano()) }

// put writes data to obs as meta says, marking progress as it begins,
// as each byte is taken and as it ends.
func (w *uploadWatch) put(ctx context.Context, obs jetstream.ObjectStore, meta jetstream.ObjectMeta, data []byte) error {
	w.mark()
	defer w.mark()
	_, err := obs.Put(ctx, meta, &watchedReader{r: bytes.NewReader(data), w: w})
	return err
}

type watchedReader struct {
	r *bytes.Reader
	w *uploadWatch
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.w.mark()
	}
	return n, err
}

// cutWhenIdle cancels uploads (cut) once they have made no progress for
// idle, or most after it was called, whichever comes first; it returns
// when uploads is done. Run passes finalSnapshotWait and finalSnapshotMax.
func (w *uploadWatch) cutWhenIdle(uploads context.Context, cut context.CancelFunc, idle, most time.Duration) {
	w.mark() // the wait starts now
	began := time.Now()
	t := time.NewTicker(idle / 16)
	defer t.Stop()
	for {
		select {
		case <-uploads.Done():
			return
		case now := <-t.C:
			if now.Sub(began) >= most || now.Sub(time.Unix(0, w.last.Load())) >= idle {
				cut()
				return
			}
		}
	}
}

func (r *Runner) broadcast() {
	ch := make(chan struct{})
	close(*r.advanced.Swap(&ch))
}

// feed is one ordered consumer. Its callback decodes messages in
// parallel with Run applying them and hands them over in batches.
type feed struct {
	filtered bool                     // on the projection's subjects only
	pending  atomic.Uint64            // messages after the last one received
	cc       jetstream.ConsumeContext // nil on a shared pass
	// On a shared pass (pass non-nil): the runner it feeds, which has
	// applied up to after.
	pass    *Replay
	runner  *Runner
	after   uint64
	batches chan []delivery
	// free holds batches the runner has applied, for the callback to fill
	// again. A batch grows as it is filled, and one that grew is reused:
	// a replay allocates little once its batches have grown, and a live
	// commit, handed over alone, costs one delivery rather than a batch of
	// maxBatch.
	free    chan []delivery
	stopped chan struct{}   // closed by stop: unblocks a callback waiting on batches
	closed  <-chan struct{} // closed when the consumer has stopped, by stop or not

	mu    sync.Mutex // serializes callbacks, which overlap if the consumer resets mid-callback
	batch []delivery
	n     int    // messages the batch stands for
	skip  uint64 // the last message since the batch's last delivery with nothing to apply
}

// delivery is one stream message: a decoded commit, a message skipped (no
// events) that still advances the position, or a commit that does not
// decode (err).
type delivery struct {
	seq    uint64
	commit es.Commit
	err    error
	// header is the commit's, kept only when tracing is on and it carries
	// a trace context (wire.HeaderTraceParent).
	header nats.Header
}

// startFeed starts an ordered consumer at after+1, on the projection's
// subjects if filtered. Replays run unfiltered (the server's wildcard
// filter makes bulk reads several times slower than skipping commits by
// their types header); a scoped projection switches to a filtered feed
// once caught up, so other contexts' appends no longer reach it.
func (r *Runner) startFeed(after uint64, filtered bool) (*feed, error) {
	var subjects []string
	if filtered {
		subjects = r.subjects
	}
	cons, err := r.store.js.OrderedConsumer(context.Background(), r.store.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    after + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	f := newFeed(filtered)
	f.cc, err = cons.Consume(func(m jetstream.Msg) { f.receive(r.decode(m)) },
		jetstream.PullMaxMessages(pullMaxMessages), jetstream.PullHeartbeat(feedHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			select {
			case <-f.stopped:
				// stop lets the consumer end on its own, which can take
				// long after Run has returned (see stop): what it says
				// then is no one's concern, and no logger's.
				return
			default:
			}
			r.log.Warn("consumer", "error", err)
		}))
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	f.closed = f.cc.Closed()
	return f, nil
}

// feedQueue is how many batches a feed holds for its runner.
const feedQueue = 4

func newFeed(filtered bool) *feed {
	// Every batch in flight can be given back: those queued, the one the
	// runner applies and the one being filled. With two free places, the
	// batches a replay that outpaced its runners made anew were 98 MB of
	// a 1M-event start's 2.2 GB of allocations.
	return &feed{filtered: filtered, batches: make(chan []delivery, feedQueue), free: make(chan []delivery, feedQueue+2), stopped: make(chan struct{})}
}

// recycle gives back a batch the runner has applied. Its deliveries are
// cleared first, so that it holds on to no commit while it waits.
func (f *feed) recycle(batch []delivery) {
	clear(batch)
	select {
	case f.free <- batch[:0]:
	default:
	}
}

// fresh returns an empty batch: a recycled one if there is one, else
// none yet (append makes it).
func (f *feed) fresh() []delivery {
	select {
	case b := <-f.free:
		return b
	default:
		return nil
	}
}

// receive adds d to the batch and hands the batch over when the stream
// has nothing more pending or the batch stands for maxBatch messages:
// while replaying, one notification covers a whole batch. Messages with
// nothing to apply (another projection's) only move the position, so a
// run of them is handed over as its last one.
func (f *feed) receive(d delivery, pending uint64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending.Store(pending)
	if ok {
		f.n++
		if d.err == nil && len(d.commit.Events) == 0 {
			f.skip = d.seq
		} else {
			f.batch = append(f.batch, d)
			f.skip = 0
		}
	}
	if f.n == 0 || (pending > 0 && f.n < maxBatch) {
		return
	}
	if f.skip != 0 {
		f.batch = append(f.batch, delivery{seq: f.skip})
	}
	select {
	case f.batches <- f.batch:
	case <-f.stopped:
	}
	f.batch, f.n, f.skip = f.fresh(), 0, 0
}

func (f *feed) stop() {
	close(f.stopped)
	if f.pass != nil {
		f.pass.detach(f)
		return
	}
	// The ordered consumer's Stop waits for its lock, which a reset
	// holds while it retries creating the consumer, 10 s per try, for as
	// long as the cluster has no meta leader: Run does not wait for it.
	go f.cc.Stop()
}

// batchCh and closedCh are nil for no feed: they never fire.
func (f *feed) batchCh() <-chan []delivery {
	if f == nil {
		return nil
	}
	return f.batches
}

func (f *feed) closedCh() <-chan struct{} {
	if f == nil {
		return nil
	}
	return f.closed
}

// decode turns a stream message into a delivery and reports how many
// messages the stream holds after it. A message on a subject that is not
// an ev.<context>.<type>.<id> stream is logged and delivered without
// events, so the position still advances past it: no aggregate can own it
// (the store appends only to valid streams), so no projection could read
// it. A message on a stream's subject that does not decode is delivered
// with its error, and stops the runner there.
func (r *Runner) decode(m jetstream.Msg) (d delivery, pending uint64, ok bool) {
	meta, ok := readMessage(m)
	if !ok {
		r.log.Error("message without stream metadata", "subject", m.Subject())
		return delivery{}, 0, false
	}
	if !r.reads(m, meta, false) {
		return delivery{seq: meta.seq}, meta.pending, true
	}
	return r.store.decodeMessage(m, meta), meta.pending, true
}

// messageMeta is what every runner reads of a message alike.
type messageMeta struct {
	seq, pending uint64
	recorded     time.Time
	stream       es.StreamID
	streamErr    error // the subject is not a valid stream's
}

// readMessage reads m's stream metadata and stream; ok is false for a
// message without stream metadata.
func readMessage(m jetstream.Msg) (meta messageMeta, ok bool) {
	meta.seq, meta.pending, meta.recorded, ok = ackSequences(m.Reply())
	if !ok {
		md, err := m.Metadata()
		if err != nil {
			return messageMeta{}, false
		}
		meta.seq, meta.pending, meta.recorded = md.Sequence.Stream, md.NumPending, md.Timestamp
	}
	meta.readStream(m.Subject())
	return meta, true
}

// readStream sets the stream a message's subject names, or why it names
// none.
func (meta *messageMeta) readStream(subject string) {
	meta.stream, meta.streamErr = es.ParseStreamID(subject)
	if meta.streamErr == nil {
		meta.streamErr = meta.stream.Validate()
	}
}

// reads reports whether r applies m's commit: it is on a stream's subject
// (else it is logged, and delivered without events), carries one of r's
// event types and is on r's subjects. matched says the caller has already
// found that r reads one of m's types (the shared pass matches each
// header once for all its runners).
func (r *Runner) reads(m jetstream.Msg, meta messageMeta, matched bool) bool {
	if meta.streamErr != nil {
		r.log.Warn("skipping message on a non-stream subject", "seq", meta.seq, "subject", m.Subject(), "error", meta.streamErr)
		return false
	}
	if !matched && r.types != nil && !r.wants(m.Headers().Get(wire.HeaderEventTypes)) {
		return false
	}
	return r.subjects == nil || matchesAny(r.subjects, m.Subject()) // else an unfiltered replay: not ours
}

// decodeMessage decodes m's commit, which is on a stream's subject, for
// every runner that reads it: the result is the same for each, so the
// shared pass decodes a commit once and hands it to all of them.
func (s *Store) decodeMessage(m jetstream.Msg, meta messageMeta) (d delivery) {
	d.seq = meta.seq
	var err error
	if d.commit, err = wire.DecodeCommit(meta.stream, d.seq, m.Headers(), m.Data()); err != nil {
		d.err = err
	}
	if s.tracer != nil {
		if h := m.Headers(); len(h[wire.HeaderTraceParent]) > 0 {
			d.header = h
		}
	}
	for i := range d.commit.Events {
		d.commit.Events[i].RecordedAt = meta.recorded
	}
	return d
}

// wants reports whether a commit's event-types header names a type the
// projection reads. A commit without the header is decoded to be safe.
func (r *Runner) wants(types string) bool {
	if types == "" {
		return true
	}
	for t := range strings.SplitSeq(types, ",") {
		if _, ok := r.types[t]; ok {
			return true
		}
	}
	return false
}

// ackSequences reads a message's stream sequence, pending count and
// stored time from its reply subject, like Msg.Metadata but without
// allocating. The subject
// is $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>,
// or, with a JetStream domain, has <domain>.<account hash> after ACK and
// may end in one more token. ok is false for any other form.
func ackSequences(reply string) (seq, pending uint64, recorded time.Time, ok bool) {
	rest, found := strings.CutPrefix(reply, "$JS.ACK.")
	var tokens [10]string
	n := 0
	for ; found && n < len(tokens); n++ {
		tokens[n], rest, found = strings.Cut(rest, ".")
	}
	var seqTok, tmTok, pendingTok string
	switch {
	case found:
		return 0, 0, time.Time{}, false
	case n == 7:
		seqTok, tmTok, pendingTok = tokens[3], tokens[5], tokens[6]
	case n >= 9:
		seqTok, tmTok, pendingTok = tokens[5], tokens[7], tokens[8]
	default:
		return 0, 0, time.Time{}, false
	}
	seq, err1 := strconv.ParseUint(seqTok, 10, 64)
	tm, err2 := strconv.ParseInt(tmTok, 10, 64)
	pending, err3 := strconv.ParseUint(pendingTok, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, time.Time{}, false
	}
	return seq, pending, time.Unix(0, tm).UTC(), true
}

// matchesAny reports whether subject matches one of the NATS subject
// patterns ('*' one token, '>' the rest).
func matchesAny(patterns []string, subject string) bool {
	for _, p := range patterns {
		if subjectMatches(p, subject) {
			return true
		}
	}
	return false
}

func subjectMatches(pattern, subject string) bool {
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case pt == ">":
			return true
		case pt != "*" && pt != st:
			return false
		case !pmore || !smore:
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}
