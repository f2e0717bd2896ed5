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

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
)

// worker admits one device lane's commits, in ingress order. Only its run
// goroutine touches its state, except known, wake and feed (the ingress
// consumer's, see Gate.dispatch) and seen (the ingress consumer's alone).
type worker struct {
	g            *Gate
	log          *slog.Logger
	device       string
	lane         safety.DeviceLane
	in, out, q   string
	known        atomic.Uint64 // highest ingress sequence hinted
	wake         chan struct{}
	feed         chan ingressMsg // commits as the ingress consumer delivered them
	seen         uint64          // the last commit the ingress consumer delivered
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
		wake: make(chan struct{}, 1), feed: make(chan ingressMsg, fetchBatch), lim: rate.NewLimiter(rate.Limit(g.cfg.Rate), g.cfg.Burst),
	}
}

const (
	fetchBatch = 64
	// maxGroupBytes bounds the EVENTS commit a run of admitted ingress
	// commits is appended as.
	maxGroupBytes = 1 << 20
	// purgeEvery bounds what a busy lane leaves decided in the ingress
	// stream; purgeIdle is how soon an idle one purges.
	purgeEvery = 64
	purgeIdle  = 250 * time.Millisecond
	retryMax   = 2 * time.Second
)

// group is a run of admitted ingress commits appended to EVENTS as one
// commit: a backlog costs one append per megabyte, not one per commit.
type group struct {
	buf   []byte
	types []string
	parts []part
	done  uint64 // the last ingress commit dropped from it (appended or quarantined)
}

// part is one ingress commit's share of a group.
type part struct {
	m        ingressMsg
	end, nty int // where its events end in buf and types
}

func (w *worker) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	// retry runs f until it succeeds; false means ctx ended.
	retry := func(what string, f func() error) bool {
		for {
			err := f()
			if err == nil {
				backoff = 50 * time.Millisecond
				return true
			}
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
		}
	}
	var idle *time.Timer
	var g group
	flush := func() bool { return retry("append to "+w.out, func() error { return w.flush(ctx, &g) }) }
	for ctx.Err() == nil {
		if !w.loaded && !retry("read state", func() error { return w.load(ctx) }) {
			return
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
		msgs := w.fed()
		if len(msgs) == 0 && !retry("read ingress", func() (err error) {
			msgs, err = w.g.directGet(ctx, w.g.cfg.Stream, w.in, w.next, fetchBatch, false)
			return err
		}) {
			return
		}
		if len(msgs) == 0 {
			// Hinted but gone (the stream was purged by hand): nothing to decide.
			w.log.Warn("device gate: hinted commits are not in the ingress stream", "from", w.next, "to", w.known.Load())
			w.next = w.known.Load() + 1
			continue
		}
		for _, m := range msgs {
			if !w.lim.Allow() { // over quota: what is admitted goes first, then wait
				if !flush() {
					return
				}
				if err := w.lim.Wait(ctx); err != nil {
					return
				}
			}
			d, err := decode(w.lane, m.data, m.receivedAt)
			var admitted []es.Event
			if err == nil {
				admitted, err = safety.AdmitDeviceCommit(w.registered(), w.lane, d.events, m.receivedAt)
			} else {
				err = safety.Rejected(safety.RejectUndecodable, err)
			}
			if err == nil && len(g.parts) > 0 && g.parts[0].m.header.Get("Tl-Edge-Epoch") != m.header.Get("Tl-Edge-Epoch") {
				if !flush() { // a new local store on the device: its own commit
					return
				}
			}
			if err == nil {
				n, nt := len(g.buf), len(g.types)
				if g.buf, g.types, err = encode(g.buf, g.types, d, admitted); err != nil {
					g.buf, g.types = g.buf[:n], g.types[:nt]
					err = safety.Rejected(safety.RejectUndecodable, err)
				}
			}
			if err != nil { // refused: what came before goes first
				if !flush() || !retry("quarantine", func() error { return w.quarantine(ctx, m, err) }) {
					return
				}
				w.next, w.done = m.seq+1, m.seq
				continue
			}
			g.parts = append(g.parts, part{m: m, end: len(g.buf), nty: len(g.types)})
			if len(g.buf) >= maxGroupBytes && !flush() {
				return
			}
		}
		if !flush() {
			return
		}
		if w.done-w.purged >= purgeEvery {
			w.purge(ctx)
		}
	}
}

// fed returns the commits the ingress consumer handed over that follow
// the last decided one without a gap; the rest (after a feed that was
// full, or a restart) are read from the stream.
func (w *worker) fed() []ingressMsg {
	var out []ingressMsg
	last, gap := w.done, false
	for {
		select {
		case m := <-w.feed:
			switch {
			case m.seq <= last: // decided already
			case gap || m.prev != last:
				gap = true
			default:
				out, last = append(out, m), m.seq
			}
		default:
			return out
		}
	}
}

func (w *worker) registered() safety.RegisteredDevice {
	reg := w.g.cfg.Registry(w.device)
	reg.ID = w.device
	return reg
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

// flush appends g to EVENTS as one commit and empties it. An error is
// transient (the store did not answer) and what is left of g is kept to
// flush again. Commits found already in EVENTS (an append whose ack was
// lost, or another gate's) are not appended again. A group the store
// refuses for good is appended commit by commit, and a commit it refuses
// alone is quarantined.
func (w *worker) flush(ctx context.Context, g *group) error {
	for len(g.parts) > 0 {
		landed, err := w.append(ctx, g.buf, g.types, g.parts[0].m, g.parts[len(g.parts)-1].m)
		var refused *storeRefused
		switch {
		case err == nil:
			w.g.admitted.Add(uint64(len(g.parts)))
			g.drop(len(g.parts))
		case landed > 0: // some or all are in already
			n := 0
			for n < len(g.parts) && g.parts[n].m.seq <= landed {
				n++
			}
			g.drop(n)
		case errors.As(err, &refused):
			p := g.parts[0]
			if len(g.parts) > 1 {
				if _, err = w.append(ctx, g.buf[:p.end], g.types[:p.nty], p.m, p.m); err == nil {
					w.g.admitted.Add(1)
				}
			}
			if errors.As(err, &refused) {
				err = w.quarantine(ctx, p.m, safety.Rejected(safety.RejectStoreRefused, refused.err))
			}
			if err != nil {
				return err
			}
			g.drop(1)
		default:
			return err
		}
		w.next, w.done = g.done+1, g.done
	}
	return nil
}

// drop removes the first n parts of g, recording them decided.
func (g *group) drop(n int) {
	if n == 0 {
		return
	}
	p := g.parts[n-1]
	g.done = p.m.seq
	// What is left moves to the front: the buffers are reused.
	g.buf = g.buf[:copy(g.buf, g.buf[p.end:])]
	g.types = g.types[:copy(g.types, g.types[p.nty:])]
	g.parts = g.parts[:copy(g.parts, g.parts[n:])]
	for i := range g.parts {
		g.parts[i].end -= p.end
		g.parts[i].nty -= p.nty
	}
}

// storeRefused is the event store refusing a commit for good.
type storeRefused struct{ err error }

func (e *storeRefused) Error() string { return e.err.Error() }

// append appends the admitted events of ingress commits first..last to
// EVENTS with the lane's expected last sequence. When the subject's last
// commit turns out to hold ingress commits from first on already, it
// returns that commit's last ingress sequence with an error.
func (w *worker) append(ctx context.Context, data []byte, types []string, first, last ingressMsg) (uint64, error) {
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, w.out+"/ingress-"+w.g.epoch+"-"+strconv.FormatUint(last.seq, 10))
	h.Set(headerEventTypes, strings.Join(types, ","))
	h.Set(headerActor, "device:"+w.device)
	h.Set(headerSource, "edge:"+w.device)
	w.g.stamp(h, last)
	if v := first.header.Get("Tl-Edge-First-Seq"); v != "" {
		h.Set("Tl-Edge-First-Seq", headerValue(v))
	}
	if first.seq != last.seq {
		h.Set(HeaderIngressFirstSeq, strconv.FormatUint(first.seq, 10))
	}
	msg := &nats.Msg{Subject: w.out, Header: h, Data: data}
	for attempt := 0; ; attempt++ {
		h.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.outSeq, 10))
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := w.g.js.PublishMsg(actx, msg, jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil {
			w.outSeq = ack.Sequence
			return 0, nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) {
			return 0, fmt.Errorf("append to %s: %w", w.out, err)
		}
		if apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence && apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequenceConstant {
			return 0, &storeRefused{err}
		}
		// The subject moved: an earlier attempt of ours landed (its ack
		// lost), or another writer's.
		got, err := w.g.directGet(ctx, w.g.cfg.EventsStream, w.out, 0, 1, true)
		if err != nil {
			return 0, err
		}
		if len(got) == 0 {
			w.outSeq = 0
		} else {
			w.outSeq = got[0].seq
			if in := w.g.ingressSeq(got[0].header); in >= first.seq {
				return in, fmt.Errorf("append to %s: ingress commits up to %d are in already", w.out, in)
			}
		}
		if attempt >= 3 {
			return 0, fmt.Errorf("append to %s: subject keeps moving (another writer?)", w.out)
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

// quarantine keeps a refused commit, as received, with the reason (a
// *safety.RejectedError).
func (w *worker) quarantine(ctx context.Context, m ingressMsg, reason error) error {
	code := safety.CodeOf(reason)
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, w.q+"/"+w.g.epoch+"-"+strconv.FormatUint(m.seq, 10))
	h.Set(HeaderDevice, w.device)
	h.Set(HeaderRider, w.registered().RiderID)
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
