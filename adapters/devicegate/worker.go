package devicegate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/tideline/tideline/domain/safety"
)

// worker admits one device lane's commits, in ingress order. Only its run
// goroutine touches its state, except known and wake.
type worker struct {
	g            *Gate
	log          *slog.Logger
	device       string
	lane         safety.DeviceLane
	in, out, q   string
	known        atomic.Uint64 // highest ingress sequence hinted
	wake         chan struct{}
	lim          *rate.Limiter
	next         uint64 // next ingress sequence to decide
	outSeq       uint64 // EVENTS sequence of the subject's last commit
	loaded       bool
	done, purged uint64 // last ingress sequence decided; purged below
}

func (g *Gate) newWorker(lane safety.DeviceLane, device string) *worker {
	return &worker{
		g: g, log: g.log.With("device", device, "lane", string(lane)), device: device, lane: lane,
		in: IngressSubject(lane, device), out: EventsSubject(lane, device), q: QuarantineSubject(lane, device),
		wake: make(chan struct{}, 1), lim: rate.NewLimiter(rate.Limit(g.cfg.Rate), g.cfg.Burst),
	}
}

const (
	fetchBatch = 64
	// purgeEvery bounds what a busy lane leaves decided in the ingress
	// stream; purgeIdle is how soon an idle one purges.
	purgeEvery = 64
	purgeIdle  = 250 * time.Millisecond
	retryMax   = 2 * time.Second
)

func (w *worker) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	fail := func(what string, err error) bool {
		if ctx.Err() != nil {
			return false
		}
		w.log.Warn("device gate: "+what+": retrying", "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false
		}
		backoff = min(2*backoff, retryMax)
		return true
	}
	var idle *time.Timer
	for ctx.Err() == nil {
		if !w.loaded {
			if err := w.load(ctx); err != nil {
				if !fail("read state", err) {
					return
				}
				continue
			}
		}
		if w.known.Load() < w.next {
			var purge <-chan time.Time
			if w.done > w.purged {
				if idle == nil {
					idle = time.NewTimer(purgeIdle)
				} else {
					idle.Reset(purgeIdle)
				}
				purge = idle.C
			}
			select {
			case <-w.wake:
			case <-purge:
				w.purge(ctx)
			case <-ctx.Done():
				return
			}
			continue
		}
		msgs, err := w.g.directGet(ctx, w.g.cfg.Stream, w.in, w.next, fetchBatch, false)
		if err != nil {
			if !fail("read ingress", err) {
				return
			}
			continue
		}
		if len(msgs) == 0 {
			// Hinted but gone (the stream was purged by hand): nothing to decide.
			w.log.Warn("device gate: hinted commits are not in the ingress stream", "from", w.next, "to", w.known.Load())
			w.next = w.known.Load() + 1
			continue
		}
		for _, m := range msgs {
			if err := w.lim.Wait(ctx); err != nil {
				return
			}
			for {
				err := w.decide(ctx, m)
				if err == nil {
					break
				}
				if !fail("decide commit "+strconv.FormatUint(m.seq, 10), err) {
					return
				}
			}
			backoff = 50 * time.Millisecond
			w.next, w.done = m.seq+1, m.seq
		}
		if w.done-w.purged >= purgeEvery {
			w.purge(ctx)
		}
	}
}

// load reads where the lane stands: the last commit the gate appended to
// EVENTS and the last it quarantined, each naming its ingress sequence.
func (w *worker) load(ctx context.Context) error {
	out, err := w.g.directGet(ctx, w.g.cfg.EventsStream, w.out, 0, 1, true)
	if err != nil {
		return err
	}
	q, err := w.g.directGet(ctx, w.g.cfg.QuarantineStream, w.q, 0, 1, true)
	if err != nil {
		return err
	}
	var done uint64
	if len(out) > 0 {
		w.outSeq = out[0].seq
		done = w.g.ingressSeq(out[0].header)
	}
	if len(q) > 0 {
		done = max(done, w.g.ingressSeq(q[0].header))
	}
	w.next, w.done, w.purged, w.loaded = done+1, done, 0, true
	return nil
}

// ingressSeq is the ingress sequence a gate-written message names, 0 when
// it names none of this ingress stream's.
func (g *Gate) ingressSeq(h nats.Header) uint64 {
	if h.Get(HeaderIngressEpoch) != g.epoch {
		return 0
	}
	n, _ := strconv.ParseUint(h.Get(HeaderIngressSeq), 10, 64)
	return n
}

// decide admits or quarantines one commit. An error is transient (the
// hub's own streams did not answer) and the commit is decided again.
func (w *worker) decide(ctx context.Context, m ingressMsg) error {
	reg := w.g.cfg.Registry(w.device)
	reg.ID = w.device
	events, stamps, err := decode(w.lane, m.data, m.receivedAt)
	if err != nil {
		return w.quarantine(ctx, m, reg, safety.RejectUndecodable, err)
	}
	admitted, err := safety.AdmitDeviceCommit(reg, w.lane, events, m.receivedAt)
	if err != nil {
		return w.quarantine(ctx, m, reg, safety.CodeOf(err), err)
	}
	data, types, err := encode(admitted, stamps)
	if err != nil {
		return w.quarantine(ctx, m, reg, safety.RejectUndecodable, err)
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, w.out+"/ingress-"+w.g.epoch+"-"+strconv.FormatUint(m.seq, 10))
	h.Set(headerEventTypes, strings.Join(types, ","))
	h.Set(headerActor, "device:"+w.device)
	h.Set(headerSource, "edge:"+w.device)
	w.g.stamp(h, m)
	msg := &nats.Msg{Subject: w.out, Header: h, Data: data}
	for attempt := 0; ; attempt++ {
		h.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.outSeq, 10))
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := w.g.js.PublishMsg(actx, msg, jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil {
			w.outSeq = ack.Sequence
			w.g.admitted.Add(1)
			return nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) {
			return fmt.Errorf("append to %s: %w", w.out, err)
		}
		if apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence && apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequenceConstant {
			return w.quarantine(ctx, m, reg, safety.RejectStoreRefused, err)
		}
		// The subject moved: an earlier attempt of ours landed (its ack
		// lost), or someone else wrote it, which only the gate should.
		last, err := w.g.directGet(ctx, w.g.cfg.EventsStream, w.out, 0, 1, true)
		if err != nil {
			return err
		}
		if len(last) == 0 {
			w.outSeq = 0
		} else {
			w.outSeq = last[0].seq
			if w.g.ingressSeq(last[0].header) >= m.seq {
				return nil
			}
		}
		if attempt >= 3 {
			return fmt.Errorf("append to %s: subject keeps moving (another writer?)", w.out)
		}
	}
}

// stamp sets the headers every gate-written message carries: where the
// commit came from, and what the device said of it.
func (g *Gate) stamp(h nats.Header, m ingressMsg) {
	h.Set(HeaderIngressSeq, strconv.FormatUint(m.seq, 10))
	h.Set(HeaderIngressEpoch, g.epoch)
	h.Set(HeaderReceivedAt, m.receivedAt.UTC().Format(time.RFC3339Nano))
	for _, k := range edgeHeaders {
		if v := m.header.Get(k); v != "" {
			h.Set(k, headerValue(v))
		}
	}
}

// quarantine keeps a refused commit, as received, with the reason.
func (w *worker) quarantine(ctx context.Context, m ingressMsg, reg safety.RegisteredDevice, code safety.RejectCode, reason error) error {
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, w.q+"/"+w.g.epoch+"-"+strconv.FormatUint(m.seq, 10))
	h.Set(HeaderDevice, w.device)
	h.Set(HeaderRider, reg.RiderID)
	h.Set(HeaderLane, string(w.lane))
	h.Set(HeaderRejectCode, string(code))
	h.Set(HeaderRejectReason, headerValue(reason.Error()))
	w.g.stamp(h, m)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := w.g.js.PublishMsg(qctx, &nats.Msg{Subject: w.q, Header: h, Data: m.data}, jetstream.WithRetryAttempts(0)); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	w.g.refused.Add(1)
	w.log.Warn("device commit refused", "ingress_seq", m.seq, "code", string(code), "reason", reason.Error(), "bytes", m.size())
	return nil
}

// purge drops the decided commits from the ingress stream, keeping the
// last one: the device resumes from it (its edge headers).
func (w *worker) purge(ctx context.Context) {
	if err := w.g.ingress.Purge(ctx, jetstream.WithPurgeSubject(w.in), jetstream.WithPurgeSequence(w.done)); err != nil {
		w.log.Warn("device gate: purge decided commits", "err", err)
		return
	}
	w.purged = w.done
}
