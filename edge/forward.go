package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/wire"
)

// forwarder moves one lane's events to the hub, in local order, exactly
// once: the outbox pattern over the leaf link.
//
// Each hub commit carries a run of local events (one tideline.es.v1.Commit
// of at most wire.MaxDeviceCommitBytes) and is sent as a request to the hub's device
// gate with Nats-Expected-Last-Subject-Sequence set to the hub (EVENTS)
// sequence of the lane's previous commit, and headers naming the local
// sequences it holds. The gate admits it into EVENTS with that expected
// sequence, or refuses it (quarantined, with the reason: the device is
// done with it either way). The lane's hub subject is written by this
// device alone, so:
//   - a commit whose reply was lost and is sent again conflicts (wrong
//     last sequence) instead of landing twice, however long the outage: no
//     reliance on a duplicate window;
//   - on any doubt (error, timeout, conflict, restart) the forwarder asks
//     the gate where the hub stands (wire.LastSubject: the lane's last
//     sequence and the last local sequence it decided for this store) and
//     resumes after it.
type forwarder struct {
	lane  *lane
	hubNC *nats.Conn // the lane's connection, used towards the hub
	log   *slog.Logger
	// linkUp reports whether the leaf link is connected; while it is not,
	// the forwarder waits on it instead of backing off.
	linkUp   func() bool
	retryMax time.Duration
	timeout  time.Duration
	purged   uint64 // local sequence purged up to; run's goroutine only

	stored    atomic.Uint64
	forwarded atomic.Uint64
	hubSeq    atomic.Uint64
	dropped   atomic.Uint64
	commits   atomic.Uint64
	refused   atomic.Uint64
}

func (f *forwarder) status() LaneStatus {
	return LaneStatus{
		Name: f.lane.name, Stored: f.stored.Load(), Forwarded: f.forwarded.Load(),
		HubSeq: f.hubSeq.Load(), Dropped: f.dropped.Load(), Commits: f.commits.Load(), Refused: f.refused.Load(),
	}
}

// errResync says the hub's state must be read again before going on.
var errResync = errors.New("resync")

func (f *forwarder) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	synced, failing := false, false
	var lastPurge time.Time
	for ctx.Err() == nil {
		var err error
		if !synced {
			err = f.resync(ctx)
			synced = err == nil
		}
		var sent bool
		if err == nil {
			sent, err = f.forwardOnce(ctx)
		}
		switch {
		case err == nil && sent:
			if failing {
				f.log.Info("sync resumed", "lane", f.lane.name, "forwarded", f.forwarded.Load())
			}
			failing, backoff = false, 100*time.Millisecond
			if time.Since(lastPurge) > 250*time.Millisecond {
				f.purge(ctx)
				lastPurge = time.Now()
			}
		case err == nil:
			f.purge(ctx)
			lastPurge = time.Now()
			select { // caught up: wait for news
			case <-f.lane.wake:
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		default:
			if ctx.Err() != nil {
				return
			}
			synced = false
			if !failing {
				if f.linkUp() {
					f.log.Warn("sync paused", "lane", f.lane.name, "err", err)
				} else {
					f.log.Info("hub link down: events kept locally", "lane", f.lane.name)
				}
			}
			failing = true
			if f.waitLink(ctx, backoff) {
				backoff = 100 * time.Millisecond // a fresh link: retry soon
			} else {
				backoff = min(2*backoff, f.retryMax)
			}
		}
	}
}

// waitLink waits d, and while the link is down until it is up again. It
// reports whether the link was down.
func (f *forwarder) waitLink(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	const poll = 20 * time.Millisecond
	down := false
	for !f.linkUp() {
		down = true
		select {
		case <-ctx.Done():
			return down
		case <-time.After(poll):
		}
	}
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return down
}

// ask sends a request to the hub's device gate and reads its answer.
func (f *forwarder) ask(ctx context.Context, m *nats.Msg) (wire.GateReply, error) {
	var r wire.GateReply
	rctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	reply, err := f.hubNC.RequestMsgWithContext(rctx, m)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(reply.Data, &r); err != nil {
		return r, fmt.Errorf("bad reply %q: %w", reply.Data, err)
	}
	return r, nil
}

// resync asks the hub where the lane stands and sets where forwarding
// resumes.
func (f *forwarder) resync(ctx context.Context) error {
	m := nats.NewMsg(wire.LastSubject(safety.DeviceLane(f.lane.name), f.lane.device))
	m.Header.Set(wire.HeaderEdgeEpoch, f.lane.epoch)
	r, err := f.ask(ctx, m)
	if err != nil {
		return fmt.Errorf("read hub state: %w", err)
	}
	if r.Error != nil {
		return fmt.Errorf("read hub state: %s (%d)", r.Error.Description, r.Error.Code)
	}
	hubSeq, fwd := r.Seq, r.EdgeSeq
	f.hubSeq.Store(hubSeq)
	f.forwarded.Store(fwd)
	// The hub has more of this store than the store itself: it lost
	// acknowledged writes (power cut within the sync interval). Move the
	// local sequence past what the hub has, or new events would reuse
	// sequences the hub counts as forwarded.
	if info, err := f.lane.st.Info(ctx); err == nil && info.State.LastSeq < fwd {
		f.log.Error("local store is behind the hub: it lost writes; skipping ahead", "lane", f.lane.name,
			"local_last", info.State.LastSeq, "hub_has", fwd)
		if err := f.lane.st.Purge(ctx, jetstream.WithPurgeSequence(fwd+1)); err != nil {
			return fmt.Errorf("skip ahead: %w", err)
		}
	}
	return nil
}

// forwardOnce sends the next run of local events as one hub commit and
// reports whether there was anything to send.
func (f *forwarder) forwardOnce(ctx context.Context) (bool, error) {
	from := f.forwarded.Load() + 1
	msgs, err := f.readLocal(ctx, from)
	if err != nil || len(msgs) == 0 {
		return false, err
	}
	first := msgs[0].seq
	if first > from {
		// Evicted by the disk bound before it could be sent.
		f.dropped.Add(first - from)
		f.log.Warn("telemetry dropped before sync (disk full)", "lane", f.lane.name, "from", from, "to", first-1)
	}
	n, size := 0, 0
	for ; n < len(msgs); n++ {
		s := wire.EncodedEventSize(len(msgs[n].data))
		if n > 0 && size+s > f.lane.maxBytes {
			break
		}
		size += s
	}
	msgs = msgs[:n]
	last := msgs[n-1].seq
	if size > f.lane.maxBytes {
		// Recorded before this bound existed: it can never be sent.
		f.dropped.Add(1)
		f.forwarded.Store(last)
		f.log.Error("event too large for a hub commit: skipped", "lane", f.lane.name, "seq", last, "bytes", size)
		return true, nil
	}
	msg := f.encodeCommit(msgs, f.hubSeq.Load())
	r, err := f.ask(ctx, msg)
	if err != nil {
		return false, fmt.Errorf("forward: %w", err)
	}
	if r.Error != nil {
		switch r.Error.ErrCode {
		case wire.ErrWrongLastSequence:
			// An earlier send landed but its reply was lost: learn where.
			return false, fmt.Errorf("forward: %w: %s", errResync, r.Error.Description)
		case wire.ErrTooLarge:
			// The hub takes smaller commits than we thought.
			f.lane.maxBytes = max(f.lane.maxBytes/2, 1)
			f.log.Warn("hub refused a commit as too large: halving commits", "lane", f.lane.name, "bytes", len(msg.Data), "now", f.lane.maxBytes)
		}
		return false, fmt.Errorf("forward: %s (%d)", r.Error.Description, r.Error.Code)
	}
	if r.Quarantined {
		f.refused.Add(1)
		f.log.Warn("hub refused a commit: kept in its quarantine, not in its read models", "lane", f.lane.name,
			"from", msgs[0].seq, "to", last, "code", r.Code, "reason", r.Reason)
	}
	f.hubSeq.Store(r.Seq)
	f.forwarded.Store(last)
	f.commits.Add(1)
	return true, nil
}

type localMsgRec struct {
	seq  uint64
	data []byte
}

// readLocal returns the lane's next events from local sequence from on,
// at most maxEvents and about maxBytes, with a batched Direct Get.
func (f *forwarder) readLocal(ctx context.Context, from uint64) ([]localMsgRec, error) {
	nc := f.lane.nc
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, f.lane.maxEvents+1)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("read local: %w", err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(wire.DirectGetRequest{Seq: from, Batch: f.lane.maxEvents, MaxBytes: f.lane.maxBytes, NextBySubject: f.lane.local})
	if err := nc.PublishRequest(wire.DirectGetSubject(jetstream.DefaultAPIPrefix, f.lane.stream), inbox, req); err != nil {
		return nil, fmt.Errorf("read local: %w", err)
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	var out []localMsgRec
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-timeout.C:
			return nil, errors.New("read local: no reply in 5s")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		r, err := wire.ReadDirectGet(m)
		if err != nil {
			return nil, fmt.Errorf("read local: %w", err)
		}
		if !r.Found { // not found, or the batch's end
			return out, nil
		}
		out = append(out, localMsgRec{seq: r.Seq, data: m.Data})
	}
}

// encodeCommit packs local events (each a marshalled tideline.es.v1.Event)
// into one tideline.es.v1.Commit message for the hub: field 1, repeated.
func (f *forwarder) encodeCommit(msgs []localMsgRec, expected uint64) *nats.Msg {
	n := 0
	for _, m := range msgs {
		n += len(m.data) + 8
	}
	data := make([]byte, 0, n)
	for _, m := range msgs {
		data = wire.AppendEncodedEvent(data, m.data)
	}
	first, last := msgs[0].seq, msgs[len(msgs)-1].seq
	l := f.lane
	h := nats.Header{}
	h.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	h.Set(wire.HeaderEdgeSeq, strconv.FormatUint(last, 10))
	h.Set(wire.HeaderEdgeFirstSeq, strconv.FormatUint(first, 10))
	h.Set(wire.HeaderEdgeEpoch, l.epoch)
	h.Set(wire.HeaderEdgeStored, strconv.FormatUint(max(f.stored.Load(), last), 10))
	return &nats.Msg{Subject: l.hub, Header: h, Data: data}
}

// purge deletes locally what the hub has acknowledged.
func (f *forwarder) purge(ctx context.Context) {
	fwd := f.forwarded.Load()
	if fwd == 0 || fwd == f.purged {
		return
	}
	if err := f.lane.st.Purge(ctx, jetstream.WithPurgeSequence(fwd+1)); err != nil {
		f.log.Warn("purge forwarded events", "lane", f.lane.name, "err", err)
		return
	}
	f.purged = fwd
}
