package api

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
)

// sharedAnswers keeps the latest answer to each query that live streams
// watch, shared by every watcher of the query. One goroutine per query
// (its driver) computes the answer again after the read model advances,
// liveGap apart at most, and wakes the query's watchers only when the
// answer's content changed; each then sends the one encoding of it
// (sharedEncodings). So a write costs one computation per distinct query
// watched, whatever the number of watchers, and wakes no watcher whose
// answer it leaves alone; a watcher slower than the changes gets the
// latest. Safe for concurrent use.
type sharedAnswers[K comparable, M proto.Message] struct {
	feed    ReadModel
	refresh time.Duration // also compute every refresh (0: only after advances)
	enc     *sharedEncodings
	closing <-chan struct{}
	live    *atomic.Int64 // the server's open live streams, for liveGap
	compute func(K) M
	same    func(a, b M) bool // same content (positions aside)

	mu    sync.Mutex
	byKey map[K]*sharedAnswer[M]
}

// sharedAnswer is the latest answer to one query.
type sharedAnswer[M proto.Message] struct {
	refs int           // guarded by sharedAnswers.mu
	stop chan struct{} // closed when the last watcher leaves

	mu      sync.Mutex
	msg     M // shared: never changed once set
	version uint64
	changed chan struct{} // closed, and replaced, when msg changes
}

// newSharedAnswers returns the shared answers computed by compute over
// feed, after each advance and, unless refresh is 0, every refresh (for
// answers that depend on the time too).
func newSharedAnswers[K comparable, M proto.Message](rt *runtime, feed ReadModel, refresh time.Duration, compute func(K) M, same func(a, b M) bool) *sharedAnswers[K, M] {
	return &sharedAnswers[K, M]{feed: feed, refresh: refresh, enc: newSharedEncodings(), closing: rt.closing, live: rt.live, compute: compute, same: same, byKey: map[K]*sharedAnswer[M]{}}
}

// join returns the answer to key, computing it and starting its driver
// if no one watches it yet. Each join is matched by a leave.
func (s *sharedAnswers[K, M]) join(key K) *sharedAnswer[M] {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.byKey[key]
	if a == nil {
		a = &sharedAnswer[M]{stop: make(chan struct{}), changed: make(chan struct{})}
		advanced := s.feed.Advanced() // before computing, so an advance in between is not missed
		s.set(a, s.compute(key))
		s.byKey[key] = a
		go s.drive(key, a, advanced)
	}
	a.refs++
	return a
}

// leave ends a watcher's join; the last one stops the driver.
func (s *sharedAnswers[K, M]) leave(key K, a *sharedAnswer[M]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.refs--; a.refs > 0 {
		return
	}
	delete(s.byKey, key)
	close(a.stop)
}

// drive computes key's answer again after each advance of the read model
// (and every refresh) until its watchers have left or the server closes.
func (s *sharedAnswers[K, M]) drive(key K, a *sharedAnswer[M], advanced <-chan struct{}) {
	defer func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		s.enc.unshare(a.msg)
	}()
	var tick <-chan time.Time
	if s.refresh > 0 {
		t := time.NewTicker(s.refresh)
		defer t.Stop()
		tick = t.C
	}
	// wait waits for ch or tick; false once the watchers have left or the
	// server closes.
	wait := func(ch <-chan struct{}, tick <-chan time.Time) bool {
		select {
		case <-a.stop:
			return false
		case <-s.closing:
			return false
		case <-tick:
		case <-ch:
		}
		return true
	}
	for wait(advanced, tick) {
		at := time.Now()
		advanced = s.feed.Advanced()
		s.set(a, s.compute(key))
		gap := time.NewTimer(liveGap(s.live.Load()) - time.Since(at))
		ok := wait(nil, gap.C)
		gap.Stop()
		if !ok {
			return
		}
	}
}

// set makes msg a's answer if its content differs from the last one's,
// and wakes a's watchers.
func (s *sharedAnswers[K, M]) set(a *sharedAnswer[M], msg M) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.version > 0 && s.same(a.msg, msg) {
		return
	}
	if err := s.enc.share(msg); err != nil { // then each stream encodes it, and fails as it would have
		slog.Warn("live stream: shared encoding", "err", err)
	}
	if a.version > 0 {
		s.enc.unshare(a.msg)
	}
	a.msg = msg
	a.version++
	close(a.changed)
	a.changed = make(chan struct{})
}

// latest returns the answer and its version.
func (a *sharedAnswer[M]) latest() (M, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.msg, a.version
}

// Advanced returns a channel closed when the answer next changes: live
// waits on it rather than on the read model.
func (a *sharedAnswer[M]) Advanced() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}
