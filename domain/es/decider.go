package es

import (
	"container/list"
	"context"
	"errors"
	"maps"
	"sync"

	"google.golang.org/protobuf/proto"
)

// Decider is an aggregate's pure behaviour: Decide turns a command and the
// current state into new events (or a coded error); Evolve folds one event
// into the state. Neither does I/O nor reads a clock.
type Decider[S, C any] struct {
	Initial func() S
	Decide  func(state S, cmd C) ([]proto.Message, error)
	Evolve  func(state S, event proto.Message) S
}

// Repository runs commands against aggregates stored in a Store: load
// (from a bounded in-memory cache of recent states, else from the store),
// decide, append with optimistic concurrency, and on a version conflict
// reload and decide again up to MaxAttempts times. It is safe for
// concurrent use.
type Repository[S, C any] struct {
	store       Store
	decider     Decider[S, C]
	MaxAttempts int // default 5

	// shared: other processes append to the store too (SharedStore).
	shared bool

	mu    sync.Mutex
	cache map[StreamID]*list.Element
	lru   *list.List
	limit int
}

type cached[S any] struct {
	stream  StreamID
	state   S
	version uint64
}

// NewRepository returns a repository keeping up to cacheSize states.
func NewRepository[S, C any](store Store, d Decider[S, C], cacheSize int) *Repository[S, C] {
	if cacheSize <= 0 {
		cacheSize = 10000
	}
	s, ok := store.(SharedStore)
	return &Repository[S, C]{store: store, decider: d, MaxAttempts: 5, shared: ok && s.Shared(),
		cache: make(map[StreamID]*list.Element), lru: list.New(), limit: cacheSize}
}

// SharedStore is a Store that may say other processes append to it as
// well (the nodes of a cluster). A Repository on a shared store does not
// decide on a cached state alone: a decision that returns an error or no
// events appends nothing, so no version check would catch a state another
// node has moved on. It asks the store for the commits past the cached
// version first (Load with after), which is cheap when there are none,
// and before it answers with such a decision it asks Current.
type SharedStore interface {
	Store
	Shared() bool
	// Current returns nil when what Load returned reflects every commit
	// acknowledged anywhere; else an error of kind Unavailable (this node
	// is cut off from the majority, whose commits it cannot see).
	Current(ctx context.Context) error
}

// Handle decides cmd against the stream's current state and appends the
// resulting events. A decision that yields no events appends nothing and
// returns the stream's current version as the position. Errors: the
// Decide error as is; Conflict when MaxAttempts attempts all conflicted;
// store errors wrapped.
func (r *Repository[S, C]) Handle(ctx context.Context, stream StreamID, cmd C, opts AppendOptions) (AppendResult, error) {
	if err := stream.Validate(); err != nil {
		return AppendResult{}, err
	}
	attempts := max(r.MaxAttempts, 1)
	at := uint64(0) // after a conflict: the version the store is past
	for range attempts {
		state, version, err := r.GetAt(ctx, stream, at)
		if err != nil {
			return AppendResult{}, err
		}
		events, err := r.decider.Decide(state, cmd)
		if (err != nil || len(events) == 0) && r.shared {
			// Nothing to append, so no version check: the state must
			// be the cluster's, not a cut-off node's.
			if cerr := r.store.(SharedStore).Current(ctx); cerr != nil {
				return AppendResult{}, cerr
			}
		}
		if err != nil {
			return AppendResult{}, err
		}
		if len(events) == 0 {
			return AppendResult{Position: Position{Seq: version}}, nil
		}
		opts.ExpectedVersion = int64(version)
		res, err := r.store.Append(ctx, stream, events, opts)
		if errors.Is(err, ErrConflict) {
			// Catch the cached state up with the commits past version,
			// rather than reload the whole stream: on a hot stream
			// every writer conflicts, and reloads grow with its history.
			at = version + 1
			continue
		}
		if err != nil {
			return AppendResult{}, err
		}
		if res.Duplicate {
			r.forget(stream) // the original's events are not in our state yet
		} else {
			for _, e := range events {
				state = r.decider.Evolve(state, e)
			}
			r.put(stream, state, res.Position.Seq)
		}
		return res, nil
	}
	return AppendResult{}, ErrConflict
}

// Get returns the stream's current state and version, from the cache
// when it holds the stream. A command's decision is safe on a stale
// state (the append's version check catches it); a reader that must see
// a commit it was told of uses GetAt.
func (r *Repository[S, C]) Get(ctx context.Context, stream StreamID) (S, uint64, error) {
	return r.GetAt(ctx, stream, 0)
}

// Latest, passed to GetAt as the version, reads the stream's newest
// commits from the store whatever the cache holds.
const Latest = ^uint64(0)

// GetAt returns the stream's state at version minVersion or later: the
// cached state when it is that recent, else the cached one brought up to
// date from the store (or the whole stream). A reaction handling commit
// Seq of a stream reads it with GetAt(stream, Seq), so it never acts on
// a state from before the commit it handles, even while the writer that
// appended it has not updated the cache yet.
func (r *Repository[S, C]) GetAt(ctx context.Context, stream StreamID, minVersion uint64) (S, uint64, error) {
	state, version := r.decider.Initial(), uint64(0)
	r.mu.Lock()
	if el, ok := r.cache[stream]; ok {
		r.lru.MoveToFront(el)
		c := el.Value.(*cached[S])
		// Copy under the lock: put updates the entry in place, and a torn
		// read (old state, new version) would defeat the version check.
		state, version = c.state, c.version
		if version >= minVersion && !r.shared {
			r.mu.Unlock()
			return state, version, nil
		}
	}
	r.mu.Unlock()
	commits, last, err := r.store.Load(ctx, stream, version)
	if err != nil {
		var zero S
		return zero, 0, err
	}
	for _, c := range commits {
		for _, e := range c.Events {
			if e.Data != nil {
				state = r.decider.Evolve(state, e.Data)
			}
		}
	}
	version = max(version, last)
	r.put(stream, state, version)
	return state, version, nil
}

func (r *Repository[S, C]) put(stream StreamID, state S, version uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.cache[stream]; ok {
		c := el.Value.(*cached[S])
		if version >= c.version {
			c.state, c.version = state, version
		}
		r.lru.MoveToFront(el)
		return
	}
	r.cache[stream] = r.lru.PushFront(&cached[S]{stream: stream, state: state, version: version})
	for r.lru.Len() > r.limit {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.cache, old.Value.(*cached[S]).stream)
	}
}

func (r *Repository[S, C]) forget(stream StreamID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.cache[stream]; ok {
		r.lru.Remove(el)
		delete(r.cache, stream)
	}
}

// With returns a copy of m (nil: a new map) with k set to v: how an
// Evolve adds to a map in its state without changing the state a
// Repository's readers may hold.
func With[K comparable, V any](m map[K]V, k K, v V) map[K]V {
	m = maps.Clone(m)
	if m == nil {
		m = map[K]V{}
	}
	m[k] = v
	return m
}
