package api

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/steps"
)

// TestIngestStopsAtTheFirstFailedWrite: once a write fails, add and close
// return its error and nothing more is written.
func TestIngestStopsAtTheFirstFailedWrite(t *testing.T) {
	boom := errors.New("store down")
	var writes atomic.Int32
	g := newIngest(func(b []steps.Record) error {
		if writes.Add(1) == 3 {
			return boom
		}
		if writes.Load() > 3 {
			t.Errorf("write %d after the failed one", writes.Load())
		}
		return nil
	})
	// One user: one commit at a time, so the third write is the last.
	var addErr error
	for k := 0; addErr == nil; k++ {
		if k == 100000 {
			t.Fatal("add still accepts updates 100,000 updates after a failed write")
		}
		addErr = g.add(steps.Record{UserID: "u", Steps: int32(k)})
	}
	if !errors.Is(addErr, boom) {
		t.Fatalf("add after the failure: %v", addErr)
	}
	if err := g.close(); !errors.Is(err, boom) {
		t.Fatalf("close: %v", err)
	}
	if n := writes.Load(); n != 3 {
		t.Fatalf("%d writes, want 3", n)
	}
}

// TestIngestBoundsWhatItQueues: while writes are held, add queues
// ingestQueued updates and then waits; once writes go on, every update
// is written exactly once, no user has two commits in flight, and no
// commit holds more than ingestBatch updates.
func TestIngestBoundsWhatItQueues(t *testing.T) {
	hold := make(chan struct{})
	var mu sync.Mutex
	inFlight := map[string]bool{}
	seen := map[int32]int{}
	g := newIngest(func(b []steps.Record) error {
		<-hold
		u := b[0].UserID
		mu.Lock()
		if inFlight[u] {
			t.Errorf("two commits of %s in flight", u)
		}
		inFlight[u] = true
		mu.Unlock()
		if len(b) > ingestBatch {
			t.Errorf("a commit of %d updates, more than %d", len(b), ingestBatch)
		}
		time.Sleep(time.Millisecond) // a write's time, for overlaps to show
		mu.Lock()
		for _, r := range b {
			if r.UserID != u {
				t.Errorf("a commit of %s holds an update of %s", u, r.UserID)
			}
			seen[r.Steps]++
		}
		inFlight[u] = false
		mu.Unlock()
		return nil
	})
	users := []string{"a", "b", "c", "d", "e"}
	total := ingestCommits + ingestQueued + 5000
	added := make(chan int, total)
	go func() {
		for k := range total {
			if err := g.add(steps.Record{UserID: users[k%len(users)], Steps: int32(k)}); err != nil {
				t.Error(err)
				return
			}
			added <- k
		}
	}()
	// The appenders hold up to ingestCommits batches; ingestQueued more
	// wait in the queues, and then add waits.
	deadline := time.After(10 * time.Second)
	n := 0
	for quiet := time.After(200 * time.Millisecond); ; {
		select {
		case <-added:
			n++
			continue
		case <-quiet:
		case <-deadline:
			t.Fatal("no progress")
		}
		break
	}
	if n >= total {
		t.Fatalf("all %d updates queued while writes were held", n)
	}
	g.mu.Lock()
	queued := g.queued
	g.mu.Unlock()
	if queued != ingestQueued {
		t.Fatalf("%d updates queued while writes are held, want %d", queued, ingestQueued)
	}
	close(hold)
	for n < total {
		select {
		case <-added:
			n++
		case <-deadline:
			t.Fatalf("%d of %d updates added after writes went on", n, total)
		}
	}
	if err := g.close(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != total {
		t.Fatalf("%d distinct updates written, want %d", len(seen), total)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("update %d written %d times", k, c)
		}
	}
}
