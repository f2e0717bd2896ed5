package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
)

// Defaults of NewAsOfLimits, and how many results each runner caches.
const (
	DefaultAsOfConcurrent = 2
	DefaultAsOfMaxReplay  = 2_000_000
	DefaultAsOfTimeout    = 30 * time.Second
	asOfCached            = 2
)

// AsOfLimits bound the cost of AsOf queries: how many replay at once
// (more are refused at once, es.ResourceExhausted, rather than queued),
// how many positions one may replay after its starting snapshot, and how
// long one may take. It is safe for concurrent use; one is meant to be
// shared by all the runners of a server.
type AsOfLimits struct {
	sem       chan struct{}
	maxReplay uint64
	timeout   time.Duration
}

// NewAsOfLimits returns limits of concurrent replays at once, maxReplay
// positions each and timeout; a value ≤ 0 takes its default
// (DefaultAsOfConcurrent, DefaultAsOfMaxReplay, DefaultAsOfTimeout).
func NewAsOfLimits(concurrent, maxReplay int, timeout time.Duration) *AsOfLimits {
	if concurrent <= 0 {
		concurrent = DefaultAsOfConcurrent
	}
	if maxReplay <= 0 {
		maxReplay = DefaultAsOfMaxReplay
	}
	if timeout <= 0 {
		timeout = DefaultAsOfTimeout
	}
	return &AsOfLimits{sem: make(chan struct{}, concurrent), maxReplay: uint64(maxReplay), timeout: timeout}
}

// AsOfModel is a projection as of a past position, as AsOf built it.
type AsOfModel struct {
	Model    projections.Projection
	Position uint64 // the position it holds every commit up to
	Version  int
	// Snapshot is the position of the kept snapshot it was restored
	// from; 0 when it was replayed from position 1.
	Snapshot uint64
	// Replayed is how many stream messages it read after the snapshot
	// (every context's); Applied how many commits it applied.
	Replayed, Applied int
	Took              time.Duration
	Cached            bool // served from the runner's cache
}

// AsOf returns a fresh instance of the runner's projection (newModel
// makes one: the same Name and Version) holding every commit up to and
// including pos. It restores the newest snapshot the history keeps at or
// before pos (see history.go), then replays the events stream from there
// to pos as Run would: the projection's subjects and event types only,
// honouring recorded skip decisions. pos 0 is the empty model. The
// runner need not be running. The returned model is not fed afterwards;
// it may be shared with other callers (the runner caches the latest
// asOfCached), so treat it as read-only.
//
// Errors: es.OutOfRange for a pos past the stream's end;
// es.ResourceExhausted when the limits' concurrent replays are all busy
// (retry shortly) or pos lies more than their maxReplay positions past
// the nearest kept snapshot; es.Unavailable at a commit the model cannot
// decode or apply, or when the stream cannot be read; ctx's error, or
// context.DeadlineExceeded past the limits' timeout.
func (r *Runner) AsOf(ctx context.Context, newModel func() projections.Projection, pos uint64) (AsOfModel, error) {
	start := time.Now()
	m := newModel()
	if m.Name() != r.p.Name() || m.Version() != r.p.Version() {
		return AsOfModel{}, fmt.Errorf("as of %d: new model is %s v%d, the runner's %s v%d", pos, m.Name(), m.Version(), r.p.Name(), r.p.Version())
	}
	if err := r.written(ctx, pos); err != nil {
		return AsOfModel{}, err
	}
	if got, ok := r.cached(pos); ok {
		got.Cached, got.Took = true, time.Since(start)
		return got, nil
	}
	lim := r.opts.AsOf
	select {
	case lim.sem <- struct{}{}:
		defer func() { <-lim.sem }()
	default:
		return AsOfModel{}, es.Errorf(es.ResourceExhausted, "%d as-of queries are already replaying; retry in a second", cap(lim.sem))
	}
	ctx, cancel := context.WithTimeout(ctx, lim.timeout)
	defer cancel()

	out := AsOfModel{Model: m, Position: pos, Version: m.Version()}
	m.Reset()
	if pos > 0 {
		var err error
		if out.Snapshot, err = r.restoreKept(ctx, m, pos); err != nil {
			return AsOfModel{}, err
		}
		if pos-out.Snapshot > lim.maxReplay {
			return AsOfModel{}, es.Errorf(es.ResourceExhausted, "as of position %d needs a replay of %d positions from the nearest kept snapshot (at %d), more than the limit of %d",
				pos, pos-out.Snapshot, out.Snapshot, lim.maxReplay)
		}
		if out.Replayed, out.Applied, err = r.replay(ctx, m, out.Snapshot, pos); err != nil {
			return AsOfModel{}, err
		}
	}
	out.Took = time.Since(start)
	r.cache(out)
	r.log.Debug("as of", "position", pos, "snapshot", out.Snapshot, "replayed", out.Replayed, "took", out.Took)
	return out, nil
}

// restoreKept restores m from the newest kept snapshot at or before pos
// and returns its position; 0 (m left empty) when there is none or none
// can be read. A kept snapshot that fails to restore is skipped for an
// older one.
func (r *Runner) restoreKept(ctx context.Context, m projections.Projection, pos uint64) (uint64, error) {
	obs, err := r.historyBucket(ctx, false)
	if err != nil || obs == nil {
		return 0, err
	}
	r.histMu.Lock()
	loaded := r.histLoaded
	r.histMu.Unlock()
	if !loaded {
		if err := r.loadHistory(ctx, obs, false); err != nil {
			return 0, err
		}
	}
	kept := r.History()
	for i := len(kept) - 1; i >= 0; i-- {
		at := kept[i]
		if at > pos {
			continue
		}
		err := r.restoreOne(ctx, m, at)
		if err == nil {
			return at, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		r.log.Warn("kept snapshot does not restore; trying an older one", "position", at, "error", err)
		m.Reset()
	}
	return 0, nil
}

// restoreOne restores m from the kept snapshot at pos.
func (r *Runner) restoreOne(ctx context.Context, m projections.Projection, pos uint64) error {
	obs, err := r.historyBucket(ctx, false)
	if err != nil || obs == nil {
		return errors.New("no history bucket")
	}
	res, err := obs.Get(ctx, historyName(m, pos))
	if err != nil {
		return err
	}
	info, err := res.Info()
	if err != nil {
		res.Close()
		return err
	}
	data, err := readObject(res)
	if err != nil {
		return err
	}
	seg, isSeg := m.(projections.Segmented)
	if (info.Metadata[snapshotMetaFormat] == historySegmentsFormat) != isSeg {
		return fmt.Errorf("kept snapshot of format %q", info.Metadata[snapshotMetaFormat])
	}
	if !isSeg {
		return restoreModel(m, data)
	}
	modelPos, err := strconv.ParseUint(info.Metadata[snapshotMetaModelPosition], 10, 64)
	if err != nil {
		return fmt.Errorf("kept snapshot's model position: %w", err)
	}
	names, segs, err := decodeInline(data)
	if err != nil {
		return err
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("restore panicked: %v", v)
		}
	}()
	return seg.RestoreSegments(modelPos, names, func(name string) ([]byte, error) {
		b, ok := segs[name]
		if !ok {
			return nil, fmt.Errorf("segment %s missing", name)
		}
		return b, nil
	})
}

// replay applies to m the commits after from up to and including to, as
// Run would, and returns how many messages it read and commits it
// applied.
func (r *Runner) replay(ctx context.Context, m projections.Projection, from, to uint64) (read, applied int, err error) {
	if from >= to {
		return 0, 0, nil
	}
	skips := map[uint64]struct{}{}
	if err := r.readSkips(ctx, skips); err != nil {
		return 0, 0, es.Wrap(es.Unavailable, "read skip decisions", err)
	}
	f, err := r.startFeed(from, false)
	if err != nil {
		return 0, 0, es.Wrap(es.Unavailable, "replay", err)
	}
	defer f.stop()
	for {
		select {
		case <-ctx.Done():
			return read, applied, ctx.Err()
		case <-f.closed:
			return read, applied, es.Errorf(es.Unavailable, "replay of %s stopped at position %d", m.Name(), from+uint64(read))
		case batch := <-f.batches:
			for i := range batch {
				d := &batch[i]
				if d.seq > to {
					return int(to - from), applied, nil
				}
				read = int(d.seq - from) // runs of messages not of m come as their last
				if _, skip := skips[d.seq]; skip {
					continue
				}
				if d.err != nil {
					return read, applied, es.Errorf(es.Unavailable, "read model %s cannot decode the commit at position %d", m.Name(), d.seq)
				}
				if len(d.commit.Events) > 0 {
					if err := applyCommit(m, d.commit.Events); err != nil {
						return read, applied, es.Errorf(es.Unavailable, "read model %s cannot apply the commit at position %d", m.Name(), d.seq)
					}
					applied++
				}
				if d.seq == to {
					return read, applied, nil
				}
			}
			f.recycle(batch)
		}
	}
}

// cached returns a cached result for pos, of the current version.
func (r *Runner) cached(pos uint64) (AsOfModel, bool) {
	r.asOfMu.Lock()
	defer r.asOfMu.Unlock()
	for _, c := range r.asOfCache {
		if c.Position == pos && c.Version == r.p.Version() {
			return c, true
		}
	}
	return AsOfModel{}, false
}

func (r *Runner) cache(m AsOfModel) {
	r.asOfMu.Lock()
	defer r.asOfMu.Unlock()
	r.asOfCache = append(r.asOfCache, m)
	if len(r.asOfCache) > asOfCached {
		r.asOfCache = slices.Delete(r.asOfCache, 0, len(r.asOfCache)-asOfCached)
	}
}

// PositionAt returns the position of the last commit the stream stored
// at or before t (0 when it holds none that early): the commit before the
// first one stored after t (FirstPositionAt), from JetStream's own time
// index, never a scan. It relies on stored times rising with the
// sequence, as the server's clock gives them.
func (s *Store) PositionAt(ctx context.Context, t time.Time) (uint64, error) {
	first, err := s.FirstPositionAt(ctx, t.Add(time.Nanosecond))
	if err != nil {
		return 0, err
	}
	return first - 1, nil
}

// TimeOf returns when the commit at pos was stored (one Direct Get); the
// zero time for pos 0.
func (s *Store) TimeOf(ctx context.Context, pos uint64) (time.Time, error) {
	if pos == 0 {
		return time.Time{}, nil
	}
	_, r, err := s.next(ctx, "direct get time", ">", pos)
	if err != nil {
		return time.Time{}, err
	}
	if !r.Found || r.Seq != pos {
		return time.Time{}, es.Errorf(es.OutOfRange, "position %d is past the end of the event stream", pos)
	}
	return r.Time, nil
}
