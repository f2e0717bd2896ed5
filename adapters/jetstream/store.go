// Package jetstream is the NATS JetStream implementation of the event
// store (es.Store) and the projection runner.
//
// Layout: one stream (EVENTS, subjects ev.>), one message per commit on the
// aggregate's subject ev.<context>.<type>.<id>, payload a protobuf
// tideline.es.v1.Commit. Headers carry routing and dedup data so readers
// need not decode payloads to filter.
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/wire"
)

// Config configures the EVENTS stream.
type Config struct {
	// Stream is the stream name; default wire.EventsStream.
	Stream string
	// Replicas is 1 embedded, 3 clustered; default 1.
	Replicas int
	// DuplicateWindow bounds idempotency-key dedup; default 2 minutes.
	DuplicateWindow time.Duration
	// APIPrefix is the JetStream API prefix; default "$JS.API".
	APIPrefix string
	// WriteTimeout bounds how long an append waits for the server's
	// acknowledgement when its context allows longer; default 5s. A server
	// that cannot write (a full disk) sends none.
	WriteTimeout time.Duration
	// Writable, if set, is asked before every append: a non-nil error
	// fails the append at once, nothing sent. The embedded server's
	// natsserver.DiskGuard.Err reports a full disk this way.
	Writable func() error
	// TracerProvider, if set, traces appends and projection applies (see
	// Store.Append and Runner); nil traces nothing, at no cost.
	TracerProvider trace.TracerProvider
	// OnAppend, if set, is called after every Append with how long it
	// took, whether it was a duplicate (a retry of a stored commit, by its
	// idempotency key) and its error: the metrics' append latency,
	// conflicts and retries. It must be quick and safe for concurrent use.
	OnAppend func(took time.Duration, duplicate bool, err error)
	// OnRetry, if set, is called each time an append publishes its
	// commit again because the stream had no leader it could reach (a
	// leader change), with that attempt's error. Quick and concurrency-safe.
	OnRetry func(err error)
	// FailoverWait bounds how long an append keeps retrying while the
	// stream has no leader (a replicated stream electing a new one, a
	// node cut off from the majority); default 15 s, longer than a NATS
	// election (4 to 9 s) after a leader dies. Past it the append fails
	// with kind Unavailable.
	FailoverWait time.Duration
	// BlockDir, if set, is the events stream's directory in the file
	// store of the embedded server this process runs, alone (no cluster):
	// a Replay then reads the history stored before it starts from the
	// stream's block files, at a quarter of a consumer's CPU or less, and
	// goes on through the server from where they end (see readBlocks).
	BlockDir string
	// Shared says other processes append to the stream too (the nodes of
	// a cluster): repositories then check for newer commits before
	// deciding on a cached state (es.SharedStore). Default: Replicas > 1.
	Shared bool
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = wire.EventsStream
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.APIPrefix == "" {
		c.APIPrefix = jetstream.DefaultAPIPrefix
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.FailoverWait <= 0 {
		c.FailoverWait = 15 * time.Second
	}
	c.Shared = c.Shared || c.Replicas > 1
	c.APIPrefix = strings.TrimSuffix(c.APIPrefix, ".")
	return c
}

// Store is the JetStream event store. It is safe for concurrent use;
// concurrent Appends are pipelined over one connection, each waiting only
// for its own ack (acks).
type Store struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	acks      *acks // appends' publishes and acknowledgements
	cfg       Config
	directGet string
	// end is a stream sequence known to exist, the highest seen in
	// appends' acks, LastPosition and Open (give or take a race between
	// two updates): a position at or below it is proven written without
	// asking the server.
	end       atomic.Uint64
	filesRead atomic.Int64 // see FilesRead
	// tracer is Config.TracerProvider's, or nil.
	tracer trace.Tracer
}

// tracerName names the spans the store and its runners start.
const tracerName = "github.com/tideline/tideline/adapters/jetstream"

var _ es.SharedStore = (*Store)(nil)

// Shared implements es.SharedStore: Config.Shared.
func (s *Store) Shared() bool { return s.cfg.Shared }

// Current implements es.SharedStore. A replicated stream's leader answers
// the reads Load starts with; cut off from the majority it goes on
// answering, with what it had, until it steps down (up to 10 s). Current
// asks it whom it has heard from lately: fewer than a majority of the
// replicas (itself included) within quorumSeen, and Current returns an
// error of kind Unavailable. On a stream alone it returns nil.
func (s *Store) Current(ctx context.Context) error {
	if s.cfg.Replicas <= 1 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, directGetTimeout)
	defer cancel()
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if err != nil {
		return es.Wrap(es.Unavailable, "event store: ask the stream's leader", err)
	}
	info := st.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return es.Errorf(es.Unavailable, "event store: stream %s has no leader", s.cfg.Stream)
	}
	heard := 1 // the leader
	for _, p := range info.Cluster.Replicas {
		if !p.Offline && p.Active <= quorumSeen {
			heard++
		}
	}
	if 2*heard <= s.cfg.Replicas {
		return es.Errorf(es.Unavailable, "event store: stream %s's leader %s has heard from %d of %d replicas lately: cut off from the majority", s.cfg.Stream, info.Cluster.Leader, heard, s.cfg.Replicas)
	}
	return nil
}

// quorumSeen is how recently a stream's leader must have heard from a
// replica to count it: two of NATS's Raft heartbeats (1 s apart).
const quorumSeen = 2 * time.Second

// Open provisions (creates or updates) the EVENTS stream and returns a
// store on it. A replicated stream (Replicas > 1) needs as many
// JetStream servers: Open waits for them, as long as ctx allows. An
// existing stream with fewer replicas is raised to Replicas (a stream
// update; JetStream copies it to the new replicas).
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	// Appends publish through acks (newAcks), not js.
	js, err := jetstream.NewWithAPIPrefix(nc, cfg.APIPrefix)
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	var stream jetstream.Stream
	err = WhileClusterForms(ctx, cfg.Shared, func(ctx context.Context) error {
		var err error
		stream, err = js.CreateOrUpdateStream(ctx, streamConfig(cfg))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("provision stream %s: %w", cfg.Stream, err)
	}
	acks, err := newAcks(nc, cfg.WriteTimeout)
	if err != nil {
		return nil, err
	}
	st := &Store{nc: nc, js: js, acks: acks, cfg: cfg, directGet: wire.DirectGetSubject(cfg.APIPrefix, cfg.Stream)}
	st.sawEnd(stream.CachedInfo().State.LastSeq)
	if cfg.TracerProvider != nil {
		st.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	return st, nil
}

// streamConfig is the events stream's configuration.
func streamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "Tideline events: one message per commit, subject ev.<context>.<type>.<id>",
		Subjects:    []string{wire.EventsSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew, // limits are unlimited: events are never discarded
		MaxMsgs:     -1,
		MaxBytes:    -1,
		MaxAge:      0,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		AllowDirect: true,
		DenyDelete:  true,
		DenyPurge:   true,
	}
}

// aloneBusyWait bounds WhileClusterForms's retries on a server alone.
const aloneBusyWait = 2 * time.Minute

// WhileClusterForms calls provision until it succeeds, the error says
// something other than that the JetStream cluster is not ready (no meta
// leader yet, too few servers for the replicas), or ctx ends.
//
// A server alone is ready when it answers, but it may answer late: while
// it restores a large store's snapshots, a request can time out. Unless
// clustered, provision is tried again after a time-out (each try with
// the requests' own time-outs) for up to aloneBusyWait in all.
//
// While the cluster forms, a request can go unanswered (no meta leader to
// answer it): each try is bounded, 1 s at first and doubling up to 5 s
// (nats.go's own default), so that the first try after the cluster has
// formed comes within about a second, not after a 5 s time-out. So
// provision must be idempotent (create or update, or get what exists):
// a try can time out after its request was taken.
func WhileClusterForms(ctx context.Context, clustered bool, provision func(ctx context.Context) error) error {
	began, wait := time.Now(), time.Second
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if clustered {
			tctx, cancel = context.WithTimeout(ctx, wait)
			wait = min(2*wait, 5*time.Second)
		}
		err := provision(tctx)
		cancel()
		if err == nil || !wire.ClusterNotReady(err) || !clustered && time.Since(began) > aloneBusyWait {
			return err
		}
		select {
		case <-ctx.Done():
			if !clustered {
				return err
			}
			return fmt.Errorf("%w (waiting for the JetStream cluster: %w)", err, ctx.Err())
		case <-time.After(backoff):
		}
	}
}

// Replicas returns the events stream's replica count, which every stream
// and bucket Tideline provisions beside it shares.
func (s *Store) Replicas() int { return s.cfg.Replicas }

// JetStream returns the JetStream context the store uses.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// StreamName returns the events stream's name.
func (s *Store) StreamName() string { return s.cfg.Stream }

// LastPosition returns the stream's last sequence: the position every
// read model is measured against. It costs one stream info request.
func (s *Store) LastPosition(ctx context.Context) (uint64, error) {
	last, err := s.streamEnd(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", s.cfg.Stream, err)
	}
	return last, nil
}

// streamEnd asks for the stream's info and returns its last sequence.
func (s *Store) streamEnd(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, s.cfg.Stream) // asks for the stream's info
	if err != nil {
		return 0, err
	}
	last := st.CachedInfo().State.LastSeq
	s.sawEnd(last)
	return last, nil
}

// knownEnd returns a stream sequence known to exist, without asking the
// server: at most LastPosition.
func (s *Store) knownEnd() uint64 { return s.end.Load() }

// sawEnd records that sequence seq exists. Concurrent calls may leave the
// lower of two values: end is a lower bound of the stream's last sequence
// either way, and appends stay free of a compare-and-swap loop.
func (s *Store) sawEnd(seq uint64) {
	if seq > s.end.Load() {
		s.end.Store(seq)
	}
}

// Append implements es.Store. It returns es.ErrStoreFull (kind
// ResourceExhausted) when the server has no room, at once. On a
// replicated stream it rides out a leader change: while the stream has no
// leader (no responders, JetStream's "temporarily unavailable" answers, an
// acknowledgement that does not come) it publishes the same message again,
// with the same Nats-Msg-Id, so that the duplicate window stores it once,
// for up to Config.FailoverWait. It then returns kind Unavailable: the
// stream has no leader this node can reach (the commit may still land,
// and a retry with the same idempotency key learns the outcome). The
// wait for each acknowledgement is bounded by Config.WriteTimeout.
//
// With Config.TracerProvider set and a span in ctx (an RPC's, a
// reaction's), the append is a span "append", child of that one, whose
// W3C trace context the commit carries in its headers (wire.HeaderTraceParent):
// the projection applies and the reactions the commit triggers continue
// the trace from it. Without a span in ctx nothing is traced.
func (s *Store) Append(ctx context.Context, stream es.StreamID, events []proto.Message, opts es.AppendOptions) (es.AppendResult, error) {
	if s.cfg.OnAppend == nil {
		return s.append(ctx, stream, events, opts)
	}
	start := time.Now()
	res, err := s.append(ctx, stream, events, opts)
	s.cfg.OnAppend(time.Since(start), res.Duplicate, err)
	return res, err
}

func (s *Store) append(ctx context.Context, stream es.StreamID, events []proto.Message, opts es.AppendOptions) (res es.AppendResult, err error) {
	msg, err := encodeCommit(stream, events, opts, s.cfg.Replicas > 1)
	if err != nil {
		return es.AppendResult{}, err
	}
	if s.tracer != nil && trace.SpanContextFromContext(ctx).IsValid() {
		var span trace.Span
		ctx, span = s.tracer.Start(ctx, "append", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msg.Subject),
			attribute.String("tideline.event_types", msg.Header.Get(wire.HeaderEventTypes))))
		propagation.TraceContext{}.Inject(ctx, wire.TraceCarrier(msg.Header))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			} else {
				span.SetAttributes(attribute.Int64("tideline.position", int64(res.Position.Seq)), attribute.Bool("tideline.duplicate", res.Duplicate))
			}
			span.End()
		}()
	}
	if err := s.writable(); err != nil {
		return es.AppendResult{}, err
	}
	giveUp := time.Now().Add(s.cfg.FailoverWait)
	for attempt, backoff := 0, 50*time.Millisecond; ; attempt, backoff = attempt+1, min(2*backoff, time.Second) {
		res, err := s.publish(ctx, msg, opts, attempt > 0)
		if err == nil || !s.retriable(err, msg) || ctx.Err() != nil {
			return res, err
		}
		if time.Now().Add(backoff).After(giveUp) {
			return es.AppendResult{}, es.Wrap(es.Unavailable, fmt.Sprintf("append commit: the event stream has no leader this node can reach (%d attempts in %v); outcome unknown", attempt+1, s.cfg.FailoverWait), err)
		}
		if s.cfg.OnRetry != nil {
			s.cfg.OnRetry(err)
		}
		select {
		case <-ctx.Done():
			return es.AppendResult{}, es.Wrap(es.Unavailable, "append commit: outcome unknown", ctx.Err())
		case <-time.After(backoff):
		}
	}
}

// publish sends msg once and waits for its acknowledgement. retry says an
// earlier attempt of msg may have landed.
func (s *Store) publish(ctx context.Context, msg *nats.Msg, opts es.AppendOptions, retry bool) (es.AppendResult, error) {
	ack, err := s.acks.publish(ctx, msg)
	switch {
	case err == nil:
		s.sawEnd(ack.Sequence)
		return es.AppendResult{Position: es.Position{Seq: ack.Sequence}, Duplicate: ack.Duplicate}, nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		// The commit may still land; the caller retries with its
		// idempotency key to learn the outcome.
		return es.AppendResult{}, es.Wrap(es.Unavailable, "append commit: outcome unknown", ctx.Err())
	default:
		err = appendError(err)
		if errors.Is(err, es.ErrConflict) && (opts.IdempotencyKey != "" || retry && msg.Header.Get(jetstream.MsgIDHeader) != "") {
			seq, found, ferr := s.retriedCommit(ctx, msg, uint64(opts.ExpectedVersion))
			if ferr != nil {
				return es.AppendResult{}, ferr
			}
			if found {
				return es.AppendResult{Position: es.Position{Seq: seq}, Duplicate: true}, nil
			}
		}
		return es.AppendResult{}, err
	}
}

// retriable reports whether publishing msg again may succeed where err
// failed, without storing it twice: the stream had no leader to take it
// (nothing stored), or an acknowledgement did not come and msg has a
// Nats-Msg-Id for the duplicate window to catch a second copy with. Only
// a replicated stream elects a new leader; a server alone that does not
// answer is not retried.
func (s *Store) retriable(err error, msg *nats.Msg) bool {
	if s.cfg.Replicas <= 1 {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case wire.JSErrCodeLastSubjectSeqNotReady, wire.JSErrCodeClusterNotAvailable, wire.JSErrCodeClusterNotLeader:
			return true
		}
		return false
	}
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return true
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return msg.Header.Get(jetstream.MsgIDHeader) != ""
	}
	return false
}

// retriedCommit finds the commit an append with an idempotency key already
// stored, after that append conflicted. JetStream checks the expected
// subject sequence before the duplicate window, so the retry of a commit
// that landed reports a conflict; under optimistic concurrency that commit
// can only be the first on the subject after the expected version.
// On a replicated stream it asks the leader, which has every commit that
// was acknowledged, where a follower might not yet.
func (s *Store) retriedCommit(ctx context.Context, msg *nats.Msg, expected uint64) (uint64, bool, error) {
	const op = "append commit: find retried commit"
	if s.cfg.Replicas > 1 {
		seq, h, found, err := s.leaderGet(ctx, op, wire.MsgGetRequest{Seq: expected + 1, NextBySubject: msg.Subject})
		if err != nil || !found || h.Get(jetstream.MsgIDHeader) != msg.Header.Get(jetstream.MsgIDHeader) {
			return 0, false, err
		}
		return seq, true, nil
	}
	m, r, err := s.next(ctx, op, msg.Subject, expected+1)
	if err != nil || !r.Found || m.Header.Get(jetstream.MsgIDHeader) != msg.Header.Get(jetstream.MsgIDHeader) {
		return 0, false, err
	}
	return r.Seq, true, nil
}

// JetStream error codes nats.go does not name (nats-server's
// jetstream_errors_generated.go): each says the server has no room.
const (
	jsErrCodeAccountResourcesExceeded = 10002 // resource limits exceeded for account
	jsErrCodeInsufficientResources    = 10023 // insufficient resources: the server's max store is reached
	jsErrCodeMemoryResourcesExceeded  = 10028
	jsErrCodeStorageResourcesExceeded = 10047
)

func appendError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return es.ErrConflict
		case jsErrCodeAccountResourcesExceeded, jsErrCodeInsufficientResources,
			jsErrCodeMemoryResourcesExceeded, jsErrCodeStorageResourcesExceeded:
			return storeFull(err)
		case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount,
			wire.JSErrCodeClusterNotAvailable, wire.JSErrCodeClusterNotLeader, wire.JSErrCodeLastSubjectSeqNotReady:
			return es.Wrap(es.Unavailable, "append commit: event store unavailable", err)
		}
	}
	switch {
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return es.Wrap(es.Unavailable, "append commit: no acknowledgement in time; outcome unknown", err)
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return es.Wrap(es.Unavailable, "append commit: event store unavailable", err)
	}
	return es.Wrap(es.Unavailable, "append commit", err)
}

// storeFull returns es.ErrStoreFull with cause err.
func storeFull(err error) error {
	return &es.Error{Kind: es.ErrStoreFull.Kind, Message: es.ErrStoreFull.Message, Err: err}
}

// writable asks Config.Writable.
func (s *Store) writable() error {
	if s.cfg.Writable == nil {
		return nil
	}
	return s.cfg.Writable()
}

// whileWritable returns a context that is also canceled, with the error
// as its cause, once Config.Writable reports one: an upload the server
// will never acknowledge (its disk is full) is abandoned then rather than
// at its deadline.
func (s *Store) whileWritable(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	if s.cfg.Writable == nil {
		return ctx, func() { cancel(nil) }
	}
	go func() {
		t := time.NewTicker(writableEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.cfg.Writable(); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}

// writableEvery is how often whileWritable asks Config.Writable.
const writableEvery = 50 * time.Millisecond

// Healthy returns nil when the store can take writes and its stream
// answers within ctx. Otherwise it returns what an append would: an
// *es.Error of kind ResourceExhausted (es.ErrStoreFull) when the disk is
// full, of kind Unavailable when the stream cannot be reached.
func (s *Store) Healthy(ctx context.Context) error {
	_, err := s.HealthyAt(ctx)
	return err
}

// HealthyAt is Healthy that also returns the stream's last sequence, read
// with the same request (a health check measures every read model's lag
// against it).
func (s *Store) HealthyAt(ctx context.Context) (uint64, error) {
	if err := s.writable(); err != nil {
		return 0, err
	}
	last, err := s.streamEnd(ctx)
	if err != nil {
		return 0, es.Wrap(es.Unavailable, "event store unavailable", err)
	}
	return last, nil
}

// encodeCommit builds the message for one commit. It validates the stream
// id and the events before anything is sent. With alwaysID a commit
// without an idempotency key gets a Nats-Msg-Id all the same (with its first
// event's id), so that publishing it again after a lost acknowledgement
// stores it once.
func encodeCommit(stream es.StreamID, events []proto.Message, opts es.AppendOptions, alwaysID bool) (*nats.Msg, error) {
	if err := stream.Validate(); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, es.Invalidf("events", "a commit needs at least one event")
	}
	if err := es.ValidateIdempotencyKey("idempotency_key", opts.IdempotencyKey); err != nil {
		return nil, err
	}
	// The envelope is written straight into the message's data
	// (wire.AppendEventMessage) rather than built as an esv1.Commit and
	// marshalled: appends pay neither the generated structs nor a copy of
	// each event.
	now, ms := opts.Now, uint64(0)
	if now.IsZero() {
		now = time.Now()
		ms = ulid.Timestamp(now)
	} else {
		ms = ulid.Now() // ids sort by when they were made, whatever Now says
	}
	var one [1]string
	types := one[:0]
	if len(events) > 1 {
		types = make([]string, 0, len(events))
	}
	var firstID [ulid.EncodedSize]byte
	data := make([]byte, 0, 512)
	for i, e := range events {
		typ := string(e.ProtoReflect().Descriptor().FullName())
		if next, old := wire.Superseded(typ); old {
			return nil, es.Errorf(es.Internal, "append %s: an old version of %s, which readers get upcast: append that", typ, next)
		}
		types = append(types, typ)
		var id [ulid.EncodedSize]byte
		_ = ulid.MustNew(ms, ulid.DefaultEntropy()).MarshalTextTo(id[:]) // cannot fail: id is EncodedSize long
		if i == 0 {
			firstID = id
		}
		var err error
		if data, err = wire.AppendEventMessage(data, id[:], typ, now, e); err != nil {
			return nil, es.Wrap(es.Internal, "marshal event", err)
		}
	}
	subject := stream.String()
	h := make(nats.Header, 4)
	// Dedup is stream-wide in JetStream, and clients pick their keys: a
	// key counts only on its own aggregate's subject. '/' occurs in no
	// subject, so the id is unambiguous. Without a key there is nothing
	// a retry could repeat, and the server's dedup bookkeeping costs ~15%
	// of append throughput, so no id is sent.
	if opts.IdempotencyKey != "" {
		h.Set(jetstream.MsgIDHeader, subject+"/"+opts.IdempotencyKey)
	} else if alwaysID { // a space occurs in no key: no client can pick this id
		h.Set(jetstream.MsgIDHeader, subject+" commit "+string(firstID[:]))
	}
	if opts.ExpectedVersion != es.AnyVersion {
		if opts.ExpectedVersion < 0 {
			return nil, es.Invalidf("expected_version", "must be >= 0 or AnyVersion, got %d", opts.ExpectedVersion)
		}
		h.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatInt(opts.ExpectedVersion, 10))
	}
	wire.SetCommitHeaders(h, types, opts.Meta)
	return &nats.Msg{Subject: subject, Header: h, Data: data}, nil
}

// Load implements es.Store with batched Direct Get on the aggregate's
// subject: no consumer is created per load. On a replicated stream every
// replica answers Direct Gets, and a follower may be a few commits behind
// the leader: Load first asks the leader for the subject's last sequence
// and reads until the replica it reads from has it, so that a commit
// acknowledged through any node is seen by a load through any other.
func (s *Store) Load(ctx context.Context, stream es.StreamID, after uint64) ([]es.Commit, uint64, error) {
	if err := stream.Validate(); err != nil {
		return nil, 0, err
	}
	subj := stream.String()
	if s.cfg.Replicas <= 1 {
		return s.load(ctx, stream, after)
	}
	fence, err := s.leaderLast(ctx, subj)
	if err != nil {
		return nil, 0, err
	}
	commits, version, err := s.load(ctx, stream, after)
	if err != nil || version >= fence {
		return commits, version, err
	}
	stale := time.Now().Add(directGetTimeout)
	for version < fence {
		if time.Now().After(stale) {
			return nil, 0, es.Errorf(es.Unavailable, "load %s: this node's replica stays behind the leader (at %d of %d)", subj, version, fence)
		}
		select {
		case <-ctx.Done():
			return nil, 0, es.Wrap(es.Unavailable, "load: direct get", ctx.Err())
		case <-time.After(5 * time.Millisecond): // a follower applies within milliseconds
		}
		more, v, err := s.load(ctx, stream, version)
		if err != nil {
			return nil, 0, err
		}
		commits, version = append(commits, more...), v
	}
	return commits, version, nil
}

// leaderLast returns the sequence of the last message on subject as the
// stream's leader has it, 0 when there is none.
func (s *Store) leaderLast(ctx context.Context, subject string) (uint64, error) {
	seq, _, _, err := s.leaderGet(ctx, "load: ask the leader for the last commit", wire.MsgGetRequest{LastBySubject: subject, NoHeaders: true})
	return seq, err
}

// leaderGet asks the stream's leader for a message (the JetStream API's
// message get, which only the leader answers, where a Direct Get may be
// answered by a follower still behind it, such as one that was cut off):
// its sequence and headers, found false when none matches. op names the
// caller in errors.
func (s *Store) leaderGet(ctx context.Context, op string, req wire.MsgGetRequest) (seq uint64, h nats.Header, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, directGetTimeout)
	defer cancel()
	body, _ := json.Marshal(req)
	m, err := s.nc.RequestWithContext(ctx, s.cfg.APIPrefix+".STREAM.MSG.GET."+s.cfg.Stream, body)
	if err != nil {
		return 0, nil, false, es.Wrap(es.Unavailable, op, err)
	}
	var res wire.MsgGetReply
	if err := json.Unmarshal(m.Data, &res); err != nil {
		return 0, nil, false, es.Wrap(es.Unavailable, op, err)
	}
	switch {
	case res.Error != nil && res.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return 0, nil, false, nil
	case res.Error != nil:
		return 0, nil, false, es.Wrap(es.Unavailable, op, res.Error)
	case res.Message == nil:
		return 0, nil, false, es.Errorf(es.Unavailable, "%s: the leader's answer has no message", op)
	}
	if h, err = wire.MsgHeaders(res.Message.Header); err != nil {
		return 0, nil, false, es.Wrap(es.Internal, op, err)
	}
	return res.Message.Seq, h, true, nil
}

// load reads the commits of stream past after from the replica that
// answers the Direct Get.
func (s *Store) load(ctx context.Context, stream es.StreamID, after uint64) ([]es.Commit, uint64, error) {
	subj := stream.String()
	inbox := s.nc.NewRespInbox()
	// One batch and its end marker fit the channel, and the next batch is
	// asked for only once this one is read: the subscription never drops a
	// message. (SubscribeSync would allocate a 64k-slot channel per load.)
	// Unlike a sync subscription's, the channel is not closed when the
	// connection is, hence the reply timeout.
	const batch = 256
	msgs := make(chan *nats.Msg, batch+1)
	sub, err := s.nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return nil, 0, es.Wrap(es.Unavailable, "load: subscribe", err)
	}
	defer sub.Unsubscribe()
	replyTimeout := time.NewTimer(directGetTimeout)
	defer replyTimeout.Stop()

	var commits []es.Commit
	version := after
	for {
		req, _ := json.Marshal(wire.DirectGetRequest{Seq: version + 1, NextBySubject: subj, Batch: batch})
		if err := s.nc.PublishRequest(s.directGet, inbox, req); err != nil {
			return nil, 0, es.Wrap(es.Unavailable, "load: direct get", err)
		}
		replyTimeout.Reset(directGetTimeout)
		more, err := func() (bool, error) {
			for {
				var m *nats.Msg
				select {
				case m = <-msgs:
				case <-ctx.Done():
					return false, es.Wrap(es.Unavailable, "load: direct get", ctx.Err())
				case <-replyTimeout.C:
					return false, es.Errorf(es.Unavailable, "load: direct get: no reply in %v", directGetTimeout)
				}
				r, err := wire.ReadDirectGet(m)
				if err != nil {
					return false, directGetError("load: direct get", err)
				}
				if !r.Found { // not found, or the batch's end
					return r.Pending > 0, nil
				}
				c, err := wire.DecodeCommit(stream, r.Seq, m.Header, m.Data)
				if err != nil {
					return false, err
				}
				if !r.Time.IsZero() {
					for i := range c.Events {
						c.Events[i].RecordedAt = r.Time
					}
				}
				commits = append(commits, c)
				version = r.Seq
			}
		}()
		if err != nil {
			return nil, 0, err
		}
		if !more {
			return commits, version, nil
		}
	}
}

// directGetTimeout bounds the wait for each batch of a Load, as the
// jetstream package bounds its API calls.
const directGetTimeout = 5 * time.Second

// nextOn returns the sequence of the first message at or after from on
// subject (wildcards allowed), with one Direct Get.
// On a replicated stream it asks the leader instead: a follower that is
// behind would say "none" for a message it has not received yet.
func (s *Store) nextOn(ctx context.Context, subject string, from uint64) (uint64, bool, error) {
	if s.cfg.Replicas > 1 {
		seq, _, found, err := s.leaderGet(ctx, "next on "+subject, wire.MsgGetRequest{Seq: from, NextBySubject: subject, NoHeaders: true})
		return seq, found, err
	}
	_, r, err := s.next(ctx, "direct get next", subject, from)
	return r.Seq, r.Found, err
}

// next reads the first message at or after from on subject (wildcards
// allowed) with one Direct Get: r.Found is false when there is none. op
// names the caller in errors.
func (s *Store) next(ctx context.Context, op, subject string, from uint64) (m *nats.Msg, r wire.DirectGetReply, err error) {
	req, _ := json.Marshal(wire.DirectGetRequest{Seq: from, NextBySubject: subject})
	m, err = s.nc.RequestWithContext(ctx, s.directGet, req)
	if err != nil {
		return nil, r, es.Wrap(es.Unavailable, op, err)
	}
	if r, err = wire.ReadDirectGet(m); err != nil {
		return nil, r, directGetError(op, err)
	}
	return m, r, nil
}

// directGetError is an error of wire.ReadDirectGet as the store reports
// it: a status the server answered with is Unavailable (retry later), a
// stored message the reply cannot place is Internal.
func directGetError(op string, err error) error {
	if _, ok := errors.AsType[*wire.DirectGetError](err); ok {
		return es.Wrap(es.Unavailable, op, err)
	}
	return es.Wrap(es.Internal, op, err)
}
