package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/wire"
)

// Replay is one pass over the events stream shared by the runners of a
// server that start together (RunnerOptions.Replay): a start without
// snapshots, or with old ones, reads the stream once rather than once per
// projection, and decodes each commit once, for all the runners that read
// it (Projection.Apply does not change an event); each runner filters and
// applies on its own.
//
// The pass gathers first: once Gathered says every runner it feeds has
// been created, it starts when each has asked for its replay (or
// gatherWait after the first one did), at the lowest position they asked
// for; each runner skips what it already has.
// A runner that asks later joins the pass if the pass has not gone past
// its position, and otherwise reads on a consumer of its own, as does
// every runner once the pass is over: a runner leaves the pass when
// caught up (for a consumer of its own, on its own subjects if it has
// any), and the pass ends when the last runner has left it, so it serves
// replays only. A rebuild never joins: the pass is past position 1 by
// then. Where the store reads its stream's files, a runner far behind
// that cannot join (a rebuild, a runner that came late) replays on a pass
// of its own instead (newOwnReplay), to read them too.
//
// Runners on one pass move at the pace of the slowest: that runner's
// replay takes as long as before, the others' no longer than it.
type Replay struct {
	store *Store
	log   *slog.Logger

	mu       sync.Mutex
	state    replayState
	expected map[*Runner]struct{} // created with the pass, not attached yet
	gathered bool                 // no more runners are to be created with it
	feeds    []*feed              // attached; replaced, never changed in place, so deliver reads it unlocked
	// wanting maps a commit's event-types header to the feeds (bits by
	// index in feeds) whose runners read one of its types, so that a
	// commit's header is matched once per distinct header rather than
	// once per runner; emptied whenever feeds is replaced.
	wanting   map[string]uint64
	last      uint64 // the last sequence the pass delivered
	gathering *time.Timer
	cc        jetstream.ConsumeContext
	closed    chan struct{} // closed when the pass's consumer has stopped

	own bool // a pass for one runner alone (newOwnReplay)

	joined, alone atomic.Int64
	files         atomic.Int64 // commits read from the stream's files
	over          atomic.Bool  // state is replayOver, read without mu
}

type replayState int

const (
	replayGathering replayState = iota
	replayRunning
	replayOver
)

// gatherWait bounds how long a pass waits for the runners created with it
// after the first asks for its replay: restoring a snapshot takes up to a
// few seconds. A runner that comes later still joins if its snapshot is
// ahead of the pass.
const gatherWait = 3 * time.Second

// NewReplay returns a pass over store's events stream, for the runners
// created with it.
func NewReplay(store *Store, log *slog.Logger) *Replay {
	if log == nil {
		log = slog.Default()
	}
	return &Replay{store: store, log: log, expected: map[*Runner]struct{}{}, closed: make(chan struct{})}
}

// newOwnReplay returns a pass for one runner alone (see runLoop.startFeed),
// so that its replay reads from the stream's files too.
func newOwnReplay(store *Store, log *slog.Logger) *Replay {
	p := NewReplay(store, log)
	p.own = true
	return p
}

// readsFiles says whether a pass reads from the stream's files: on the
// embedded server alone.
func (s *Store) readsFiles() bool { return s.cfg.BlockDir != "" && s.cfg.Replicas <= 1 }

// FilesRead returns how many commits passes on s, shared or a runner's
// own, have read from the stream's files (Config.BlockDir).
func (s *Store) FilesRead() int64 { return s.filesRead.Load() }

// ReplayStats counts the runners' replays: Joined were fed by the shared
// pass, Alone read on a consumer of their own (they came after the pass
// had gone past their position, or it was over); On are on the pass now.
// Files counts the commits the pass read from the stream's files
// (Config.BlockDir) rather than through the server.
type ReplayStats struct {
	Joined, Alone int64
	On            int
	Files         int64
}

// Stats returns how many replays joined the pass, how many did not, and
// how many are on it.
func (p *Replay) Stats() ReplayStats {
	p.mu.Lock()
	on := len(p.feeds)
	p.mu.Unlock()
	return ReplayStats{Joined: p.joined.Load(), Alone: p.alone.Load(), On: on, Files: p.files.Load()}
}

// expect registers r: the pass waits for it (gatherWait at most).
func (p *Replay) expect(r *Runner) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == replayGathering {
		p.expected[r] = struct{}{}
	}
}

// attach returns a feed of r's commits after after from the pass, or
// false if the pass cannot give them all (it is past after, or over).
func (p *Replay) attach(r *Runner, after uint64) (*feed, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == replayOver || (p.state == replayRunning && after < p.last) {
		p.alone.Add(1)
		return nil, false
	}
	f := newFeed(false)
	f.pass, f.runner, f.after, f.closed = p, r, after, p.closed
	p.feeds = append(slices.Clone(p.feeds), f)
	clear(p.wanting)
	p.joined.Add(1)
	if p.state == replayGathering {
		delete(p.expected, r)
		if p.gathering == nil {
			p.gathering = time.AfterFunc(gatherWait, p.start)
		}
		p.startIfAllLocked()
	}
	return f, true
}

// Gathered tells the pass that every runner it is to feed has been
// created: it starts as soon as they have all asked for their replays.
func (p *Replay) Gathered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gathered = true
	p.startIfAllLocked()
}

func (p *Replay) startIfAllLocked() {
	if p.gathered && len(p.expected) == 0 && len(p.feeds) > 0 {
		p.startLocked()
	}
}

func (p *Replay) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startLocked()
}

// startLocked starts the pass's consumer after the lowest position asked
// for. With no runner attached (they stopped while it gathered), or if
// the consumer cannot be made, the pass is over: its runners then see
// their feed closed, and start again on consumers of their own.
func (p *Replay) startLocked() {
	if p.state != replayGathering {
		return
	}
	if p.gathering != nil {
		p.gathering.Stop()
	}
	if len(p.feeds) == 0 {
		p.endLocked()
		return
	}
	from := p.feeds[0].after
	for _, f := range p.feeds[1:] {
		from = min(from, f.after)
	}
	p.state, p.last = replayRunning, from
	if !p.own {
		p.log.Info("replaying once for every projection", "after", from, "projections", len(p.feeds))
	}
	if p.store.readsFiles() {
		go p.readFiles(from)
		return
	}
	p.consumeLocked(from)
}

// consumeLocked goes on with the pass's consumer after after. If it cannot
// be made the pass is over.
func (p *Replay) consumeLocked(after uint64) {
	cc, err := p.consume(after)
	if err != nil {
		p.log.Warn("shared replay unavailable; each projection replays on its own", "error", err)
		p.endLocked()
		close(p.closed)
		return
	}
	p.cc = cc
	go func() {
		<-cc.Closed() // ended, or failed: no runner joins it any more
		p.mu.Lock()
		p.state = replayOver
		p.over.Store(true)
		p.mu.Unlock()
		close(p.closed)
	}()
}

// errPassOver stops readFiles: the pass has no runner left.
var errPassOver = errors.New("replay over")

// readFiles delivers the commits after from that the stream held when it
// began from the stream's block files (Config.BlockDir), and goes on with
// the consumer after the last of them: where the files end, or where
// readBlocks stopped before a record it could not vouch for.
//
// It reads on two goroutines, so that a start keeps both of a small
// machine's cores busy: this one reads and checks the records and parses
// their headers, handing them on in batches of fileBatch; the other
// decodes and delivers them (deliverMeta), in order.
func (p *Replay) readFiles(from uint64) {
	began, last := time.Now(), from
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	upTo, err := p.store.LastPosition(ctx)
	cancel()
	if err == nil && upTo > from {
		last, err = p.readFilesThrough(from, upTo)
	}
	switch {
	case errors.Is(err, errPassOver):
	case err != nil:
		p.log.Warn("cannot read the history from the stream's files; reading on through the server", "after", last, "error", err)
	case last > from:
		p.log.Info("history read from the stream's files", "from", from+1, "to", last, "took", time.Since(began).Round(time.Millisecond))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == replayOver {
		close(p.closed)
		return
	}
	p.consumeLocked(last)
}

// fileBatch is how many messages readFiles hands from its reading
// goroutine to its delivering one at a time.
const fileBatch = 256

// fileDeliverPause, set by a test, runs before the delivering goroutine
// of readFilesThrough delivers each batch: it makes that goroutine the
// slow one, to show that the consumer waits for it.
var fileDeliverPause func()

// fileMessage is a message read from the files, ready to deliver.
type fileMessage struct {
	m    blockMessage
	meta messageMeta
}

// readFilesThrough delivers the commits after from through upTo from the
// files, and returns the last one delivered: every message readBlocks
// passed on has been delivered when it returns.
func (p *Replay) readFilesThrough(from, upTo uint64) (uint64, error) {
	full := make(chan []fileMessage, 2)
	free := make(chan []fileMessage, 3)
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		for batch := range full {
			if fileDeliverPause != nil {
				fileDeliverPause()
			}
			for i := range batch {
				// deliverMeta keeps no reference to the message: the
				// batch is filled again once given back.
				p.deliverMeta(&batch[i].m, batch[i].meta)
			}
			p.files.Add(int64(len(batch)))
			p.store.filesRead.Add(int64(len(batch)))
			clear(batch)
			select {
			case free <- batch[:0]:
			default:
			}
		}
	}()
	var batch []fileMessage
	last, err := readBlocks(p.store.cfg.BlockDir, p.store.cfg.Stream, from, upTo, func(m blockMsg) error {
		if p.over.Load() {
			return errPassOver
		}
		bm, err := makeBlockMessage(m, upTo-m.Seq)
		if err != nil {
			return err
		}
		if batch == nil {
			select {
			case batch = <-free:
			default:
				batch = make([]fileMessage, 0, fileBatch)
			}
		}
		batch = append(batch, fileMessage{m: bm})
		fm := &batch[len(batch)-1]
		fm.meta = fm.m.meta()
		if len(batch) == fileBatch {
			full <- batch
			batch = nil
		}
		return nil
	})
	if len(batch) > 0 {
		full <- batch
	}
	close(full)
	<-delivered
	return last, err
}

func (p *Replay) consume(after uint64) (jetstream.ConsumeContext, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := p.store.js.OrderedConsumer(ctx, p.store.cfg.Stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   after + 1,
	})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	cc, err := cons.Consume(p.deliver,
		jetstream.PullMaxMessages(pullMaxMessages), jetstream.PullHeartbeat(feedHeartbeat),
		jetstream.ConsumeErrHandler(func(cc jetstream.ConsumeContext, err error) {
			// Any trouble ends the pass: its runners see their feed
			// closed and start again on consumers of their own, as
			// without a pass, rather than all wait on this one (seen on
			// a cluster node whose JetStream was not ready yet). Once
			// the pass is over its consumer may still be ending (its
			// Stop is not waited for): that is no one's concern.
			if p.over.Load() {
				go cc.Stop()
				return
			}
			p.log.Warn("shared replay consumer failed; each projection replays on its own", "error", err)
			go cc.Stop()
		}))
	if err != nil {
		return nil, fmt.Errorf("consume: %w", err)
	}
	return cc, nil
}

// deliver hands m to every attached feed that has not had it yet: those
// whose runners read it get its commit, decoded once for all of them
// (Projection.Apply does not change an event); the others a message with
// nothing to apply.
func (p *Replay) deliver(m jetstream.Msg) {
	if meta, ok := readMessage(m); ok {
		p.deliverMeta(m, meta)
	}
}

// deliverMeta is deliver with m's metadata read. It keeps no reference to
// m once it returns.
func (p *Replay) deliverMeta(m jetstream.Msg, meta messageMeta) {
	types := m.Headers().Get(wire.HeaderEventTypes)
	p.mu.Lock()
	p.last = meta.seq
	feeds := p.feeds
	wanting := p.wantingLocked(types, meta)
	p.mu.Unlock()
	matched := len(feeds) <= 64 // the bits say; past them, each feed matches on its own
	// The decoded commit is a value, not a pointer: it stays off the heap.
	var decoded delivery
	have := false
	for i, f := range feeds {
		if meta.seq <= f.after {
			continue
		}
		if matched && wanting&(1<<i) == 0 || !f.runner.reads(m, meta, matched) {
			f.receive(delivery{seq: meta.seq}, meta.pending, true)
			continue
		}
		if !have {
			decoded, have = p.store.decodeMessage(m, meta), true
		}
		f.receive(decoded, meta.pending, true)
	}
}

// wantingLocked returns the feeds that read a commit with the event-types
// header types (bits by index in feeds). Every feed is asked to decode a
// commit without the header, one not on a stream's subject (its runner
// logs it), and any commit once there are more feeds than bits (each
// then matches the header itself).
func (p *Replay) wantingLocked(types string, meta messageMeta) uint64 {
	if types == "" || meta.streamErr != nil || len(p.feeds) > 64 {
		return ^uint64(0)
	}
	if w, ok := p.wanting[types]; ok {
		return w
	}
	var w uint64
	for i, f := range p.feeds {
		if r := f.runner; r.types == nil || r.wants(types) {
			w |= 1 << i
		}
	}
	if p.wanting == nil {
		p.wanting = map[string]uint64{}
	}
	if len(p.wanting) < maxWanting {
		p.wanting[types] = w
	}
	return w
}

// maxWanting bounds Replay.wanting: a header lists a commit's every event,
// so commits of many events make headers without end, each seen rarely.
const maxWanting = 256

// detach removes f, which its runner has stopped; the pass ends with its
// last feed.
func (p *Replay) detach(f *feed) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.feeds = slices.DeleteFunc(slices.Clone(p.feeds), func(g *feed) bool { return g == f })
	clear(p.wanting)
	if len(p.feeds) == 0 && p.state == replayRunning {
		p.log.Info("shared replay ended: no projection is on it any more", "at", p.last)
		p.endLocked()
	}
}

// endLocked ends the pass; its consumer stops in the background (see
// feed.stop).
func (p *Replay) endLocked() {
	if p.state == replayRunning && p.cc != nil {
		go p.cc.Stop()
	}
	p.state = replayOver
	p.over.Store(true)
	if p.gathering != nil {
		p.gathering.Stop()
	}
}
