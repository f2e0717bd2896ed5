package api

import (
	"sync"

	"github.com/tideline/tideline/domain/steps"
)

// Limits of one client stream's ingest.
const (
	ingestCommits = 8    // commits in flight
	ingestBatch   = 256  // most updates in one commit
	ingestQueued  = 4096 // updates read ahead of the store before reading waits
)

// ingest writes one client stream's step updates. They queue per user as
// they are read; each of ingestCommits appenders takes the user that has
// waited longest and writes all of that user's queued updates (up to
// ingestBatch) as one commit, with one commit per user in flight, so a
// user's commits land in the order read. When updates come faster than
// single writes could store them, the queues grow and so do the commits:
// the store does one write for many updates, and reading waits only when
// ingestQueued updates are queued. The first write that fails stops the
// ingest: nothing queued after it is written, and add and close return
// its error.
type ingest struct {
	write func([]steps.Record) error

	mu     sync.Mutex
	work   sync.Cond // an update was queued, a user's commit ended, or done
	room   sync.Cond // updates were taken from the queues, or a write failed
	queues map[string][]steps.Record
	ready  []string        // users with queued updates and no commit in flight, longest waiting first
	busy   map[string]bool // users with a commit in flight
	queued int
	done   bool // no update will be added
	err    error
	wg     sync.WaitGroup
}

func newIngest(write func([]steps.Record) error) *ingest {
	g := &ingest{write: write, queues: map[string][]steps.Record{}, busy: map[string]bool{}}
	g.work.L, g.room.L = &g.mu, &g.mu
	for range ingestCommits {
		g.wg.Go(g.appender)
	}
	return g
}

// add queues cmd, waiting while ingestQueued updates are queued. After a
// write has failed it queues nothing and returns that write's error.
func (g *ingest) add(cmd steps.Record) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.queued >= ingestQueued && g.err == nil {
		g.room.Wait()
	}
	if g.err != nil {
		return g.err
	}
	q := g.queues[cmd.UserID]
	if len(q) == 0 && !g.busy[cmd.UserID] {
		g.ready = append(g.ready, cmd.UserID)
		g.work.Signal()
	}
	g.queues[cmd.UserID] = append(q, cmd)
	g.queued++
	return nil
}

// close waits until every queued update is written, or a write has
// failed, and returns the first failed write's error. Call it once, after
// the last add.
func (g *ingest) close() error {
	g.mu.Lock()
	g.done = true
	g.work.Broadcast()
	g.mu.Unlock()
	g.wg.Wait()
	return g.err
}

func (g *ingest) appender() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		for len(g.ready) == 0 && !g.done && g.err == nil {
			g.work.Wait()
		}
		// Done with none ready: the users still in flight are requeued
		// by their own appenders, which go on.
		if g.err != nil || len(g.ready) == 0 {
			return
		}
		u := g.ready[0]
		g.ready = g.ready[1:]
		q := g.queues[u]
		n := min(len(q), ingestBatch)
		batch := q[:n:n]
		if n == len(q) {
			delete(g.queues, u)
		} else {
			g.queues[u] = q[n:]
		}
		g.busy[u] = true
		g.queued -= n
		g.room.Signal()
		g.mu.Unlock()
		err := g.write(batch)
		g.mu.Lock()
		delete(g.busy, u)
		if err != nil {
			if g.err == nil {
				g.err = err
				g.room.Broadcast()
				g.work.Broadcast()
			}
			return
		}
		if len(g.queues[u]) > 0 {
			g.ready = append(g.ready, u)
			g.work.Signal()
		}
	}
}
