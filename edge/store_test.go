package edge_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/devicegate"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/edge/edgetest"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/wire"
)

// rig is one hub, one device behind a cuttable proxy.
type rig struct {
	h     *hub
	p     *edgetest.Proxy
	a     *edge.Agent
	dev   string
	dir   string
	creds edge.Creds
}

func newRig(t *testing.T, dupWindow time.Duration, o agentOpts) *rig {
	t.Helper()
	r := &rig{h: startHub(t, "", dupWindow), dev: "bike-1", dir: t.TempDir()}
	r.creds = r.h.addDevice(t, r.dev)
	r.p = edgetest.NewProxy(t, r.h.leafURL[len("nats-leaf://"):])
	r.a = openAgent(t, r.creds, "nats-leaf://"+r.p.Addr(), r.dir, o)
	return r
}

// writer records danger event i and telemetry window i for i in [from, to).
func (r *rig) write(t *testing.T, from, to int) (lastD, lastT uint64) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		var err error
		if lastD, err = r.a.RecordDanger(ctx, danger(r.dev, i)); err != nil {
			t.Fatal(err)
		}
		if lastT, err = r.a.RecordTelemetry(ctx, telemetry(r.dev, i, 5)); err != nil {
			t.Fatal(err)
		}
	}
	return lastD, lastT
}

// checkHub waits for both lanes to reach the given local sequences and
// checks that the hub holds events 0..n-1 of each exactly once, in order.
func (r *rig) checkHub(t *testing.T, lastD, lastT uint64, n int, within time.Duration) {
	t.Helper()
	waitSynced(t, r.h, eventsDanger(r.dev), lastD, within)
	waitSynced(t, r.h, eventsTelemetry(r.dev), lastT, within)
	checkExact(t, "danger", dangerIndexes(t, r.h.hubEvents(t, eventsDanger(r.dev))), n)
	checkExact(t, "telemetry", telemetryIndexes(t, r.h.hubEvents(t, eventsTelemetry(r.dev))), n)
}

func TestForwardsBothLanesInOrder(t *testing.T) {
	t.Parallel()
	r := newRig(t, 0, agentOpts{})
	lastD, lastT := r.write(t, 0, 1000)
	r.checkHub(t, lastD, lastT, 1000, 20*time.Second)
}

// A link cut during a stream, and an outage longer than the hub's
// duplicate window right after commits landed whose acks were lost: every
// event arrives exactly once, in order.
func TestLinkOutages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// outage runs with the link up and events flowing, and must leave
		// it down.
		outage func(t *testing.T, r *rig)
	}{
		{"cut_during_stream", func(t *testing.T, r *rig) {
			r.p.Cut()
		}},
		{"acks_lost_then_outage_longer_than_dup_window", func(t *testing.T, r *rig) {
			// The hub receives commits but the device never hears back.
			// Before deafening, the device has heard back for all it sent:
			// a commit in flight whose ack is lost would be resent, not
			// followed by a new one.
			stored := r.a.Status()[1].Stored
			poll.Until(t, 10*time.Second, "every commit so far acknowledged to the device", func() bool {
				return r.a.Status()[1].Forwarded >= stored
			})
			before := r.h.hubEdgeSeq(t, eventsTelemetry(r.dev))
			r.p.Deafen()
			r.write(t, 1000, 1100)
			poll.Until(t, 10*time.Second, "a commit to land unacknowledged", func() bool {
				return r.h.hubEdgeSeq(t, eventsTelemetry(r.dev)) > before
			})
			r.p.Cut()
			// Let the duplicate window (1s) pass: dedup by message id can
			// no longer save a resend.
			time.Sleep(1500 * time.Millisecond)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, time.Second, agentOpts{})
			r.write(t, 0, 1000)
			tc.outage(t, r)
			r.write(t, r.maxWritten(t), 2000)
			if r.a.LinkUp() {
				t.Fatal("link still up after the outage")
			}
			r.p.Restore()
			lastD, lastT := r.write(t, 2000, 2100)
			r.checkHub(t, lastD, lastT, 2100, 30*time.Second)
		})
	}
}

// maxWritten is how many events of each lane were written so far.
func (r *rig) maxWritten(t *testing.T) int {
	st := r.a.Status()
	return int(st[0].Stored)
}

// A link that flaps: 20 cuts at random intervals during a 20k-event
// stream (5k under the race detector, which still spans the cuts: each
// batch then takes far longer than its 10 ms pacing).
func TestFlappingLink(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	t.Parallel()
	r := newRig(t, time.Second, agentOpts{})
	const cuts = 20
	n := 20000
	if raceEnabled {
		n = 5000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() { // the cutter
		defer wg.Done()
		for c := 0; c < cuts; c++ {
			select {
			case <-time.After(time.Duration(150+rng.IntN(500)) * time.Millisecond):
			case <-done:
			}
			r.p.Cut()
			time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond) // link down for a while
			r.p.Restore()
		}
	}()
	ctx := context.Background()
	var lastD, lastT uint64
	for i := 0; i < n; i += 20 {
		batch := make([]int, 20)
		for k := range batch {
			batch[k] = i + k
		}
		var err error
		for _, k := range batch {
			if k%20 == 0 {
				if lastD, err = r.a.RecordDanger(ctx, danger(r.dev, k/20)); err != nil {
					t.Fatal(err)
				}
			}
		}
		ts := make([]*telemetryT, 0, len(batch))
		for _, k := range batch {
			ts = append(ts, telemetry(r.dev, k, 3))
		}
		if lastT, err = r.a.RecordTelemetry(ctx, ts...); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // pace the stream over the cuts
	}
	close(done)
	wg.Wait()
	waitSynced(t, r.h, eventsDanger(r.dev), lastD, 30*time.Second)
	waitSynced(t, r.h, eventsTelemetry(r.dev), lastT, 30*time.Second)
	checkExact(t, "danger", dangerIndexes(t, r.h.hubEvents(t, eventsDanger(r.dev))), n/20)
	checkExact(t, "telemetry", telemetryIndexes(t, r.h.hubEvents(t, eventsTelemetry(r.dev))), n)
}

// Sync resumes within seconds of the link returning: a backlog of 4900
// events per lane (900 under the race detector, several times slower) is
// at the hub within 5 s.
func TestSyncResumesQuickly(t *testing.T) {
	r := newRig(t, 0, agentOpts{})
	r.write(t, 0, 100)
	r.p.Cut()
	poll.Until(t, 5*time.Second, "link down", func() bool { return !r.a.LinkUp() })
	n := 5000
	if raceEnabled {
		n = 1000
	}
	lastD, lastT := r.write(t, 100, n)
	before := r.h.hubEdgeSeq(t, eventsTelemetry(r.dev))
	back := time.Now()
	r.p.Restore()
	var first time.Duration
	poll.Until(t, 10*time.Second, "first event after link return", func() bool {
		if r.h.hubEdgeSeq(t, eventsTelemetry(r.dev)) > before {
			first = time.Since(back)
			return true
		}
		return false
	})
	r.checkHub(t, lastD, lastT, n, 10*time.Second)
	last := time.Since(back)
	t.Logf("link return → first event at hub %v, → last %v (%d events per lane)", first, last, n-100)
	if last > 5*time.Second {
		t.Fatalf("sync took %v after link return, want < 5s", last)
	}
}

// --max-disk: telemetry beyond the bound is dropped oldest first; danger
// events are never dropped nor blocked.
func TestMaxDisk(t *testing.T) {
	const maxDisk = 8 << 20
	r := newRig(t, 0, agentOpts{maxDisk: maxDisk})
	r.p.Cut()
	poll.Until(t, 5*time.Second, "link down", func() bool { return !r.a.LinkUp() })
	ctx := context.Background()
	const n, dangers = 6000, 300
	var lastD, lastT uint64
	for i := 0; i < n; i++ {
		var err error
		if lastT, err = r.a.RecordTelemetry(ctx, telemetry(r.dev, i, 100)); err != nil {
			t.Fatal(err)
		}
		if i%(n/dangers) == 0 {
			if lastD, err = r.a.RecordDanger(ctx, danger(r.dev, i/(n/dangers))); err != nil {
				t.Fatalf("danger event blocked at telemetry %d: %v", i, err)
			}
		}
	}
	size := dirSize(t, r.dir)
	if os.Getenv("EDGE_DU") != "" {
		filepath.Walk(r.dir, func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				t.Logf("%8d %s", info.Size(), p)
			}
			return nil
		})
	}
	t.Logf("local store %d bytes for %d bytes of telemetry written (max-disk %d)", size, n*telemetryBytes(r.dev), maxDisk)
	if size > maxDisk*3/2 {
		t.Fatalf("local store is %d bytes, want about --max-disk %d", size, maxDisk)
	}
	r.p.Restore()
	waitSynced(t, r.h, eventsDanger(r.dev), lastD, 20*time.Second)
	waitSynced(t, r.h, eventsTelemetry(r.dev), lastT, 20*time.Second)
	checkExact(t, "danger", dangerIndexes(t, r.h.hubEvents(t, eventsDanger(r.dev))), dangers)
	tel := telemetryIndexes(t, r.h.hubEvents(t, eventsTelemetry(r.dev)))
	if len(tel) == 0 || len(tel) >= n {
		t.Fatalf("hub has %d telemetry windows of %d: want the newest that fit", len(tel), n)
	}
	for k, i := range tel { // the newest, contiguous, in order
		if want := n - len(tel) + k; i != want {
			t.Fatalf("telemetry %d at hub is #%d, want #%d", k, i, want)
		}
	}
	st := r.a.Status()[1]
	if st.Dropped != uint64(n-len(tel)) {
		t.Fatalf("agent counted %d dropped, hub misses %d", st.Dropped, n-len(tel))
	}
	t.Logf("kept %d newest telemetry windows of %d, all %d danger events", len(tel), n, dangers)
}

func telemetryBytes(dev string) int {
	b, _ := protoSize(telemetry(dev, 0, 100))
	return b
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// Commits are packed to fit the hub's limit (64 KiB), and an
// event that could never fit one is refused when recorded, not left to
// block its lane.
func TestCommitsFitTheHubLimit(t *testing.T) {
	t.Parallel()
	r := newRig(t, 0, agentOpts{})
	r.p.Cut()
	poll.Until(t, 5*time.Second, "link down", func() bool { return !r.a.LinkUp() })
	ctx := context.Background()
	const n = 300
	var last uint64
	for i := 0; i < n; i++ {
		var err error
		if last, err = r.a.RecordTelemetry(ctx, telemetry(r.dev, i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.a.RecordTelemetry(ctx, telemetry(r.dev, n, 8000)); err == nil {
		t.Fatal("an event larger than a hub commit was recorded")
	}
	r.p.Restore()
	waitSynced(t, r.h, eventsTelemetry(r.dev), last, 20*time.Second)
	checkExact(t, "telemetry", telemetryIndexes(t, r.h.hubEvents(t, eventsTelemetry(r.dev))), n)
	if st := r.a.Status()[1]; st.Commits < uint64(n*telemetryBytes(r.dev)/wire.MaxDeviceCommitBytes) {
		t.Fatalf("%d events of %d bytes in %d commits: more than %d bytes each", n, telemetryBytes(r.dev), st.Commits, wire.MaxDeviceCommitBytes)
	}
	if _, refused := r.h.gate.Stats(); refused != 0 {
		t.Fatalf("the hub refused %d commits", refused)
	}
}

// A device over its quota at the hub keeps its events and delivers them,
// exactly once and in order, as the quota allows; the hub refuses none.
func TestOverQuotaDeviceKeepsItsEvents(t *testing.T) {
	h := startHubGate(t, "", 0, devicegate.Config{Rate: 10, Burst: 2})
	a := openAgent(t, h.addDevice(t, "bike-q"), h.leafURL, t.TempDir(), agentOpts{})
	poll.Until(t, 10*time.Second, "link up", a.LinkUp)
	ctx := context.Background()
	const n = 40
	start := time.Now()
	var lastD uint64
	for i := 0; i < n; i++ { // one at a time: a commit each while the hub keeps up
		var err error
		if lastD, err = a.RecordDanger(ctx, danger("bike-q", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // a detection every 5 ms: far over 10 commits/s
	}
	waitSynced(t, h, eventsDanger("bike-q"), lastD, 20*time.Second)
	checkExact(t, "danger", dangerIndexes(t, h.hubEvents(t, eventsDanger("bike-q"))), n)
	st := a.Status()[0]
	if st.Refused != 0 {
		t.Fatalf("%d commits refused", st.Refused)
	}
	if st.Commits >= n/2 { // held back, the events wait and go in runs
		t.Fatalf("%d events in %d commits: the quota held nothing back", n, st.Commits)
	}
	if admitted, _ := h.gate.Stats(); admitted > uint64(2+10*time.Since(start).Seconds()+1) {
		t.Fatalf("%d commits admitted in %v: over the quota of 10/s after a burst of 2", admitted, time.Since(start))
	}
	t.Logf("%d danger events in %d commits within %v at 10 commits/s", n, st.Commits, time.Since(start).Round(time.Millisecond))
}
