// Package devicegate is the hub's gate for edge devices. A device never
// writes a stream, nor calls the JetStream API: it sends each commit as a
// request to its own subject, in.<lane>.device.<id>, and the gate decides
// it with the domain's check (safety.AdmitDeviceCommit), bound to the
// rider the device registry names. An admitted commit is appended to
// EVENTS; a refused one is quarantined with the reason, and the device is
// told either way. Nothing a device sends reaches a read model unchecked.
//
//	request   in.<lane>.device.<id>         a commit (tideline.es.v1.Commit)
//	request   in.<lane>.device.<id>.last    where the hub stands for the lane
//	EVENTS    ev.safety.device.<id>         lane danger, written by the gate alone
//	          ev.telemetry.device.<id>      lane telemetry
//	DEVICE_QUARANTINE  quarantine.<lane>.device.<id>   refused commits, as sent, with the reason
//
// Why requests to the gate rather than publishes into a stream: JetStream
// answers every API request and every publish on the reply subject the
// sender names, in the hub's account, and an answer on ev.<anything> is
// stored in EVENTS. A device allowed to publish into a stream (or to read
// its last message back) could so make the hub write its own message, or
// the ack, on any subject of EVENTS, past any gate. The gate answers only
// on the device's own inbox.
//
// Exactly once, as the edge agent's forwarder wants it: a commit carries
// Nats-Expected-Last-Subject-Sequence, the EVENTS sequence of its lane's
// last commit; the gate appends with it, and quarantines only when it
// still holds. The .last request returns that sequence and the last local
// sequence (Tl-Edge-Seq) the hub has decided for the device's store epoch,
// admitted or quarantined. A commit without the header is appended (or
// quarantined) without the check.
//
// Quotas: a commit is at most wire.MaxDeviceCommitBytes; each device lane decides
// one commit at a time and has a token bucket (Config.Rate, Burst). Over
// either, the device is told to retry later (it keeps the commit: a danger
// event is never dropped for going too fast), and nothing is stored. One
// device's commits never wait behind another's: each request is decided
// on its own goroutine, and a refused commit is quarantined at once, never
// retried.
package devicegate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/wire"
)

// Registry returns what the device registry says of a device id; a zero
// RiderID means the id is not registered.
type Registry func(id string) safety.RegisteredDevice

// Config configures a Gate.
type Config struct {
	// Conn is a connection of the hub's own (in-process) the gate may
	// subscribe on; it does not close it.
	Conn *nats.Conn
	// Registry names each device's rider (required).
	Registry Registry
	// EventsStream is the events stream, default wire.EventsStream;
	// QuarantineStream default wire.QuarantineStream.
	EventsStream, QuarantineStream string
	// Rate is each device lane's sustained quota in commits per second
	// (default 100) and Burst its bucket (default 2000 commits): at most
	// wire.MaxDeviceCommitBytes each, that is 6.25 MiB/s sustained,
	// 125 MiB at once.
	Rate  float64
	Burst int
	// QuarantineKeep is how many refused commits are kept per device lane,
	// the oldest dropped first (default 1000).
	QuarantineKeep int
	// Replicas of the quarantine stream; default 1.
	Replicas int
	Logger   *slog.Logger
}

func (c *Config) defaults() error {
	if c.Conn == nil || c.Registry == nil {
		return errors.New("devicegate: Conn and Registry are required")
	}
	if c.EventsStream == "" {
		c.EventsStream = wire.EventsStream
	}
	if c.QuarantineStream == "" {
		c.QuarantineStream = wire.QuarantineStream
	}
	if c.Rate == 0 {
		c.Rate = 100
	}
	if c.Burst == 0 {
		c.Burst = 2000
	}
	if c.Rate < 0 || c.Burst < 1 {
		return fmt.Errorf("devicegate: rate %g and burst %d must be positive", c.Rate, c.Burst)
	}
	if c.QuarantineKeep == 0 {
		c.QuarantineKeep = 1000
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Gate decides device commits. Its methods are safe for concurrent use.
type Gate struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream

	mu       sync.Mutex
	lanes    map[string]*laneState // by commit subject
	stopping bool                  // Run is returning: no new work
	wg       sync.WaitGroup        // requests being decided

	rejected *index
	admitted atomic.Uint64
	refused  atomic.Uint64
	serving  atomic.Bool
}

// laneState is one device lane's quota.
type laneState struct {
	busy     atomic.Bool // a commit of the lane is being decided
	lastBusy atomic.Bool // a .last request of the lane is being answered
	lim      *rate.Limiter
	device   string
	lane     safety.DeviceLane
	seen     atomic.Int64 // unix nanos of the lane's last commit request
	backlog  atomic.Int64 // as its last commit reported; -1: not reported
}

// LaneSeen is what the gate last heard of one device lane.
type LaneSeen struct {
	Device string
	Lane   safety.DeviceLane
	// LastCommit is when the lane's last commit request arrived.
	LastCommit time.Time
	// Backlog is how many events the device had stored and not yet sent
	// when it sent that commit (header wire.HeaderEdgeStored); -1 when
	// the device did not say.
	Backlog int64
}

// Seen returns every device lane that sent a commit since Open. Safe for
// concurrent use.
func (g *Gate) Seen() []LaneSeen {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]LaneSeen, 0, len(g.lanes))
	for _, st := range g.lanes {
		if at := st.seen.Load(); at != 0 {
			out = append(out, LaneSeen{Device: st.device, Lane: st.lane, LastCommit: time.Unix(0, at), Backlog: st.backlog.Load()})
		}
	}
	return out
}

// Open provisions the quarantine stream and returns the gate; Run runs it.
func Open(ctx context.Context, cfg Config) (*Gate, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("devicegate: jetstream: %w", err)
	}
	var subjects []string
	for _, l := range wire.Lanes {
		subjects = append(subjects, wire.QuarantineSubject(l, "*"))
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              cfg.QuarantineStream,
		Description:       "edge device commits the device gate refused, as sent, with the reason in headers",
		Subjects:          subjects,
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: int64(cfg.QuarantineKeep),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		Duplicates:        2 * time.Minute,
		AllowDirect:       true,
		DenyDelete:        true,
		Replicas:          cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("devicegate: provision stream %s: %w", cfg.QuarantineStream, err)
	}
	return &Gate{cfg: cfg, log: cfg.Logger.With("component", "devicegate"), nc: cfg.Conn, js: js,
		lanes: map[string]*laneState{}, rejected: newIndex(10000)}, nil
}

// Run serves devices until ctx ends; it returns once no request is being
// decided. It also follows the quarantine stream (headers only) for
// Rejected.
func (g *Gate) Run(ctx context.Context) error {
	defer func() {
		g.mu.Lock()
		g.stopping = true
		g.mu.Unlock()
		g.wg.Wait()
	}()
	c, err := g.js.OrderedConsumer(ctx, g.cfg.QuarantineStream, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("devicegate: follow %s: %w", g.cfg.QuarantineStream, err)
	}
	qc, err := c.Consume(g.rejected.add)
	if err != nil {
		return fmt.Errorf("devicegate: follow %s: %w", g.cfg.QuarantineStream, err)
	}
	defer qc.Stop()
	commits, err := g.nc.Subscribe(wire.CommitSubject("*", "*"), func(m *nats.Msg) { g.commit(ctx, m) })
	if err != nil {
		return fmt.Errorf("devicegate: subscribe: %w", err)
	}
	defer commits.Unsubscribe()
	lasts, err := g.nc.Subscribe(wire.LastSubject("*", "*"), func(m *nats.Msg) { g.last(ctx, m) })
	if err != nil {
		return fmt.Errorf("devicegate: subscribe: %w", err)
	}
	defer lasts.Unsubscribe()
	// A flood of one device's requests must not make the hub drop everyone's.
	for _, s := range []*nats.Subscription{commits, lasts} {
		_ = s.SetPendingLimits(1<<20, 256<<20)
	}
	if err := g.nc.Flush(); err != nil {
		return fmt.Errorf("devicegate: subscribe: %w", err)
	}
	g.serving.Store(true)
	defer g.serving.Store(false)
	g.log.Info("device gate serving", "quarantine", g.cfg.QuarantineStream, "rate", g.cfg.Rate, "burst", g.cfg.Burst)
	<-ctx.Done()
	return nil
}

// Serving reports whether Run is serving devices.
func (g *Gate) Serving() bool { return g.serving.Load() }

// Stats counts the commits admitted into EVENTS and refused since Open.
func (g *Gate) Stats() (admitted, refused uint64) { return g.admitted.Load(), g.refused.Load() }

// request parses a device request's subject: lane, device id, and whether
// the gate may answer it (a commit, or a .last request if last, whose reply
// is the device's own inbox).
func request(m *nats.Msg, last bool) (safety.DeviceLane, string, bool) {
	lane, id, isLast, ok := wire.ParseDeviceRequest(m.Subject)
	if !ok || isLast != last || !strings.HasPrefix(m.Reply, wire.DeviceInboxPrefix(id)+".") {
		return "", "", false
	}
	return lane, id, true
}

func respond(m *nats.Msg, r wire.GateReply) {
	b, _ := json.Marshal(r)
	_ = m.Respond(b)
}

func errorReply(code, errCode int, format string, args ...any) wire.GateReply {
	return wire.GateReply{Error: &wire.GateError{Code: code, ErrCode: errCode, Description: fmt.Sprintf(format, args...)}}
}

// commit handles a commit request on the subscription's goroutine: the
// cheap refusals at once, the decision on a goroutine of its own.
func (g *Gate) commit(ctx context.Context, m *nats.Msg) {
	lane, id, ok := request(m, false)
	if !ok {
		return // not a device's, or its answer would go elsewhere than its inbox
	}
	st := g.lane(lane, id)
	st.seen.Store(time.Now().UnixNano())
	st.backlog.Store(reportedBacklog(m.Header))
	if size := msgSize(m); size > wire.MaxDeviceCommitBytes {
		respond(m, errorReply(413, wire.ErrTooLarge, "commit of %d bytes: at most %d", size, wire.MaxDeviceCommitBytes))
		return
	}
	if !st.busy.CompareAndSwap(false, true) {
		respond(m, errorReply(429, 0, "a commit of this lane is being decided: send one at a time"))
		return
	}
	if !st.lim.Allow() {
		st.busy.Store(false)
		respond(m, errorReply(429, 0, "over the lane's quota of %g commits/s: retry later", g.cfg.Rate))
		return
	}
	if !g.start(func() {
		r := g.decide(ctx, lane, id, m)
		st.busy.Store(false) // before the reply: with it, the device may send its next commit
		respond(m, r)
	}) {
		st.busy.Store(false)
	}
}

// reportedBacklog is what a commit says its device holds beyond it: its
// wire.HeaderEdgeStored less its wire.HeaderEdgeSeq, or -1.
func reportedBacklog(h nats.Header) int64 {
	stored, err1 := strconv.ParseUint(h.Get(wire.HeaderEdgeStored), 10, 63)
	last, err2 := strconv.ParseUint(h.Get(wire.HeaderEdgeSeq), 10, 63)
	if err1 != nil || err2 != nil {
		return -1
	}
	if stored < last {
		return 0
	}
	return int64(stored - last)
}

// lane returns the state of device id's lane.
func (g *Gate) lane(lane safety.DeviceLane, id string) *laneState {
	subject := wire.CommitSubject(lane, id)
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.lanes[subject]
	if st == nil {
		st = &laneState{lim: rate.NewLimiter(rate.Limit(g.cfg.Rate), g.cfg.Burst), device: id, lane: lane}
		g.lanes[subject] = st
	}
	return st
}

// start runs f on a goroutine of its own unless Run is returning.
func (g *Gate) start(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopping {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

func msgSize(m *nats.Msg) int {
	n := len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// decide admits the commit into EVENTS or quarantines it.
func (g *Gate) decide(ctx context.Context, lane safety.DeviceLane, id string, m *nats.Msg) wire.GateReply {
	receivedAt := time.Now()
	expected, occ := uint64(0), false
	if v := m.Header.Get(jetstream.ExpectedLastSubjSeqHeader); v != "" {
		var err error
		if expected, err = strconv.ParseUint(v, 10, 64); err != nil {
			return errorReply(400, 0, "bad %s %q", jetstream.ExpectedLastSubjSeqHeader, v)
		}
		occ = true
	}
	reg := g.cfg.Registry(id)
	reg.ID = id
	d, err := decode(lane, m.Data, receivedAt)
	var admitted []es.Event
	if err != nil {
		err = safety.Rejected(safety.RejectUndecodable, err)
	} else {
		admitted, err = safety.AdmitDeviceCommit(reg, lane, d.events, receivedAt)
	}
	out := wire.EventsSubject(lane, id)
	if err != nil {
		return g.quarantine(ctx, lane, id, reg.RiderID, m, receivedAt, expected, occ, err)
	}
	data, types, err := encode(nil, nil, d, admitted)
	if err != nil {
		return g.quarantine(ctx, lane, id, reg.RiderID, m, receivedAt, expected, occ, safety.Rejected(safety.RejectUndecodable, err))
	}
	h := nats.Header{}
	if occ {
		h.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expected, 10))
	}
	wire.SetCommitHeaders(h, types, es.Metadata{Actor: "device:" + id, Source: "edge:" + id})
	stamp(h, m, receivedAt)
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ack, err := g.js.PublishMsg(actx, &nats.Msg{Subject: out, Header: h, Data: data}, jetstream.WithRetryAttempts(0))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return errorReply(409, wire.ErrWrongLastSequence, "%s", apiErr.Description)
		}
		g.log.Warn("device commit not stored", "device", id, "lane", string(lane), "err", err)
		return errorReply(503, 0, "the hub could not store the commit: retry later")
	}
	g.admitted.Add(1)
	return wire.GateReply{Seq: ack.Sequence}
}

// stamp sets the headers every gate-written message carries: when the hub
// received the commit, and what the device said of it.
func stamp(h nats.Header, m *nats.Msg, receivedAt time.Time) {
	h.Set(wire.HeaderReceivedAt, receivedAt.UTC().Format(time.RFC3339Nano))
	for _, k := range wire.EdgeHeaders {
		if v := m.Header.Get(k); v != "" {
			h.Set(k, headerValue(v))
		}
	}
}

// quarantine keeps a refused commit, as sent, with the reason (a
// *safety.RejectedError), if the device's expected sequence holds.
func (g *Gate) quarantine(ctx context.Context, lane safety.DeviceLane, id, rider string, m *nats.Msg, receivedAt time.Time, expected uint64, occ bool, reason error) wire.GateReply {
	out := wire.EventsSubject(lane, id)
	last, _, err := g.lastOn(ctx, g.cfg.EventsStream, out)
	if err != nil {
		return errorReply(503, 0, "the hub could not read the lane: retry later")
	}
	if occ && last != expected {
		return errorReply(409, wire.ErrWrongLastSequence, "wrong last sequence: %d", last)
	}
	code := safety.CodeOf(reason)
	q := wire.QuarantineSubject(lane, id)
	h := nats.Header{}
	if e, s := m.Header.Get(wire.HeaderEdgeEpoch), m.Header.Get(wire.HeaderEdgeSeq); e != "" && s != "" {
		h.Set(jetstream.MsgIDHeader, q+"/"+headerValue(e)+"-"+headerValue(s)) // a resent refusal is kept once
	}
	h.Set(wire.HeaderDevice, id)
	h.Set(wire.HeaderRider, rider)
	h.Set(wire.HeaderLane, string(lane))
	h.Set(wire.HeaderRejectCode, string(code))
	h.Set(wire.HeaderRejectReason, headerValue(reason.Error()))
	stamp(h, m, receivedAt)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := g.js.PublishMsg(qctx, &nats.Msg{Subject: q, Header: h, Data: m.Data}, jetstream.WithRetryAttempts(0)); err != nil {
		g.log.Warn("device commit not quarantined", "device", id, "lane", string(lane), "err", err)
		return errorReply(503, 0, "the hub could not store the commit: retry later")
	}
	g.refused.Add(1)
	g.log.Warn("device commit refused", "device", id, "lane", string(lane), "code", string(code), "reason", reason.Error(), "bytes", len(m.Data))
	return wire.GateReply{Seq: last, Quarantined: true, Code: string(code), Reason: reason.Error()}
}

// last answers a .last request: the lane's last EVENTS sequence, and the
// last local sequence of the asked epoch (header Tl-Edge-Epoch) the hub
// decided, in EVENTS or in quarantine.
func (g *Gate) last(ctx context.Context, m *nats.Msg) {
	lane, id, ok := request(m, true)
	if !ok {
		return
	}
	epoch := m.Header.Get(wire.HeaderEdgeEpoch)
	st := g.lane(lane, id)
	if !st.lastBusy.CompareAndSwap(false, true) {
		respond(m, errorReply(429, 0, "a request of this lane is being answered: send one at a time"))
		return
	}
	if !g.start(func() {
		r := g.lastReply(ctx, lane, id, epoch)
		st.lastBusy.Store(false) // before the reply: with it, the device may ask again
		respond(m, r)
	}) {
		st.lastBusy.Store(false)
	}
}

// lastReply is the answer to a .last request of lane and device id for epoch.
func (g *Gate) lastReply(ctx context.Context, lane safety.DeviceLane, id, epoch string) wire.GateReply {
	seq, h, err := g.lastOn(ctx, g.cfg.EventsStream, wire.EventsSubject(lane, id))
	if err != nil {
		return errorReply(503, 0, "the hub could not read the lane: retry later")
	}
	_, qh, err := g.lastOn(ctx, g.cfg.QuarantineStream, wire.QuarantineSubject(lane, id))
	if err != nil {
		return errorReply(503, 0, "the hub could not read the lane: retry later")
	}
	r := wire.GateReply{Seq: seq}
	for _, h := range []nats.Header{h, qh} {
		if h != nil && epoch != "" && h.Get(wire.HeaderEdgeEpoch) == epoch {
			n, _ := strconv.ParseUint(h.Get(wire.HeaderEdgeSeq), 10, 64)
			r.EdgeSeq = max(r.EdgeSeq, n)
		}
	}
	return r
}

// lastOn reads the last message on subject in stream: its sequence and
// headers (0 and nil when there is none).
func (g *Gate) lastOn(ctx context.Context, stream, subject string) (uint64, nats.Header, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m, err := g.nc.RequestWithContext(rctx, wire.DirectGetLastSubject(jetstream.DefaultAPIPrefix, stream, subject), nil)
	if err != nil {
		return 0, nil, fmt.Errorf("direct get %s: %w", subject, err)
	}
	r, err := wire.ReadDirectGet(m)
	if err != nil {
		return 0, nil, fmt.Errorf("direct get %s: %w", subject, err)
	}
	if !r.Found {
		return 0, nil, nil
	}
	return r.Seq, m.Header, nil
}
