package jetstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/projections"
)

// Snapshot history: beside its latest snapshot, a runner keeps a bounded
// set of older ones, so that AsOf starts near the position asked for
// rather than at position 1.
//
// They live in the object-store bucket "<Bucket>-history", one object per
// kept snapshot, named "<projection>/v<version>/<position, 20 digits>",
// with the latest snapshot's metadata. A whole snapshot is kept as it is;
// a projections.Segmented one as its segments inline (format
// historySegmentsFormat: each segment's name and bytes, uvarint-length
// prefixed, in restore order), so that a kept snapshot never depends on
// objects the latest snapshot's manifest replaces.
//
// A snapshot is also kept when it lies at least HistoryEvery positions
// past the newest one kept. It costs the snapshot nothing more, except
// that for a Segmented projection that snapshot encodes every segment
// (still off Apply's goroutine). Past HistoryKeep the runner drops the
// kept snapshot (never the oldest nor the newest) whose removal leaves
// the smallest gap between its neighbours, so the kept ones spread
// evenly over the stream: with K kept over S positions, AsOf replays at
// most about 2·S/K commits after a snapshot (and fewer near the end).
// Snapshots of another projection version are removed when Run starts.
const (
	historySuffix         = "-history"
	historySegmentsFormat = "segments-inline-1"
	// Defaults of RunnerOptions.
	defaultHistoryEvery = 100000
	defaultHistoryKeep  = 48
)

// historyName names the kept snapshot of p at pos.
func historyName(p projections.Projection, pos uint64) string {
	return fmt.Sprintf("%s/v%d/%020d", p.Name(), p.Version(), pos)
}

// historyBucket returns the history bucket, creating it if create; nil
// without error when it does not exist and create is false.
func (r *Runner) historyBucket(ctx context.Context, create bool) (jetstream.ObjectStore, error) {
	r.histMu.Lock()
	obs := r.histObs
	r.histMu.Unlock()
	if obs != nil {
		return obs, nil
	}
	name := r.opts.Bucket + historySuffix
	var err error
	if create {
		err = WhileClusterForms(ctx, r.store.cfg.Shared, func(ctx context.Context) (err error) {
			obs, err = r.store.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
				Bucket:      name,
				Description: "Tideline projection snapshot history, for as-of queries",
				Storage:     jetstream.FileStorage,
				Replicas:    r.store.cfg.Replicas,
			})
			return err
		})
	} else {
		obs, err = r.store.js.ObjectStore(ctx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("history bucket %s: %w", name, err)
	}
	r.histMu.Lock()
	r.histObs = obs
	r.histMu.Unlock()
	return obs, nil
}

// loadHistory reads which snapshots the history keeps of the model's
// version; with prune (from Run) it removes those of other versions.
func (r *Runner) loadHistory(ctx context.Context, obs jetstream.ObjectStore, prune bool) error {
	infos, err := obs.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return fmt.Errorf("list snapshot history: %w", err)
	}
	prefix := r.p.Name() + "/"
	mine := prefix + "v" + strconv.Itoa(r.p.Version()) + "/"
	var kept []uint64
	for _, info := range infos {
		rest, ok := strings.CutPrefix(info.Name, mine)
		if !ok {
			if prune && strings.HasPrefix(info.Name, prefix) {
				if err := obs.Delete(ctx, info.Name); err != nil {
					r.log.Warn("remove snapshot of another version from history", "object", info.Name, "error", err)
				}
			}
			continue
		}
		if pos, err := strconv.ParseUint(rest, 10, 64); err == nil {
			kept = append(kept, pos)
		}
	}
	slices.Sort(kept)
	r.histMu.Lock()
	r.hist, r.histLoaded = kept, true
	r.histMu.Unlock()
	return nil
}

// historyDue reports whether a snapshot at pos is to be kept in the
// history too.
func (r *Runner) historyDue(pos uint64) bool {
	if r.opts.HistoryEvery < 0 || pos == 0 {
		return false
	}
	r.histMu.Lock()
	defer r.histMu.Unlock()
	if !r.histLoaded || r.histObs == nil {
		return false
	}
	n := len(r.hist)
	return n == 0 || pos >= r.hist[n-1]+uint64(r.opts.HistoryEvery)
}

// keepHistory stores a snapshot at pos in the history (meta as the
// latest snapshot's, data its bytes), then drops kept ones past
// HistoryKeep. Failures are logged: the history is an optimisation.
func (r *Runner) keepHistory(ctx context.Context, pos uint64, meta map[string]string, data []byte) {
	obs, err := r.historyBucket(ctx, false)
	if err != nil || obs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, snapshotWriteTimeout)
	defer cancel()
	ctx, stop := r.store.whileWritable(ctx)
	defer stop()
	name := historyName(r.p, pos)
	if err := r.uploaded.put(ctx, obs, jetstream.ObjectMeta{Name: name, Description: "kept snapshot of projection " + r.p.Name(), Metadata: meta}, data); err != nil {
		r.log.Warn("keep snapshot in history", "position", pos, "error", err)
		return
	}
	r.histMu.Lock()
	if i, found := slices.BinarySearch(r.hist, pos); !found {
		r.hist = slices.Insert(r.hist, i, pos)
	}
	var drop []uint64
	for len(r.hist) > max(r.opts.HistoryKeep, 2) {
		best := 1
		for i := 2; i < len(r.hist)-1; i++ {
			if r.hist[i+1]-r.hist[i-1] < r.hist[best+1]-r.hist[best-1] {
				best = i
			}
		}
		drop = append(drop, r.hist[best])
		r.hist = slices.Delete(r.hist, best, best+1)
	}
	r.histMu.Unlock()
	for _, p := range drop {
		if err := obs.Delete(ctx, historyName(r.p, p)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			r.log.Warn("drop snapshot from history", "position", p, "error", err)
		}
	}
	r.log.Debug("kept snapshot in history", "position", pos, "bytes", len(data), "dropped", drop)
}

// History returns the positions of the snapshots the history keeps of
// the projection's version, ascending (as far as this runner knows).
func (r *Runner) History() []uint64 {
	r.histMu.Lock()
	defer r.histMu.Unlock()
	return slices.Clone(r.hist)
}

// encodeInline encodes a Segmented projection's segments for the history.
func encodeInline(names []string, data map[string][]byte) []byte {
	var b []byte
	for _, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
		b = binary.AppendUvarint(b, uint64(len(data[n])))
		b = append(b, data[n]...)
	}
	return b
}

// decodeInline is encodeInline's inverse.
func decodeInline(b []byte) (names []string, data map[string][]byte, err error) {
	data = map[string][]byte{}
	next := func() ([]byte, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return nil, false
		}
		out := b[k : k+int(l)]
		b = b[k+int(l):]
		return out, true
	}
	for len(b) > 0 {
		name, ok1 := next()
		seg, ok2 := next()
		if !ok1 || !ok2 {
			return nil, nil, errors.New("kept snapshot: truncated")
		}
		names = append(names, string(name))
		data[string(name)] = seg
	}
	return names, data, nil
}
