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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
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
	c.APIPrefix = strings.TrimSuffix(c.APIPrefix, ".")
	return c
}

// Store is the JetStream event store. It is safe for concurrent use;
// concurrent Appends are pipelined over one connection (async publish),
// each waiting only for its own ack.
type Store struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	cfg       Config
	directGet string
	// end is a stream sequence known to exist, the highest seen in
	// appends' acks and LastPosition (give or take a race between two
	// updates): a position at or below it is proven written without
	// asking the server.
	end atomic.Uint64
	// tracer is Config.TracerProvider's, or nil.
	tracer trace.Tracer
}

// tracerName names the spans the store and its runners start.
const tracerName = "github.com/tideline/tideline/adapters/jetstream"

var _ es.Store = (*Store)(nil)

// Open provisions (creates or updates) the EVENTS stream and returns a
// store on it.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	// The ack timeout also frees the pending slot of an append that is
	// never acknowledged; without it 8192 of them would stall every later
	// append until a restart.
	js, err := jetstream.NewWithAPIPrefix(nc, cfg.APIPrefix,
		jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(cfg.WriteTimeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
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
	})
	if err != nil {
		return nil, fmt.Errorf("provision stream %s: %w", cfg.Stream, err)
	}
	st := &Store{nc: nc, js: js, cfg: cfg, directGet: wire.DirectGetSubject(cfg.APIPrefix, cfg.Stream)}
	if cfg.TracerProvider != nil {
		st.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	return st, nil
}

// JetStream returns the JetStream context the store uses.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// StreamName returns the events stream's name.
func (s *Store) StreamName() string { return s.cfg.Stream }

// LastPosition returns the stream's last sequence: the position every
// read model is measured against.
func (s *Store) LastPosition(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", s.cfg.Stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream info: %w", err)
	}
	s.sawEnd(info.State.LastSeq)
	return info.State.LastSeq, nil
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

// Append implements es.Store. It returns within Config.WriteTimeout
// whatever ctx allows: es.ErrStoreFull (kind ResourceExhausted) when the
// server has no room, at once; kind Unavailable when the server cannot be
// reached or does not acknowledge in time (the commit may then still land).
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
	msg, err := encodeCommit(stream, events, opts)
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
	paf, err := s.js.PublishMsgAsync(msg)
	if err != nil {
		return es.AppendResult{}, appendError(err)
	}
	select {
	case ack := <-paf.Ok():
		s.sawEnd(ack.Sequence)
		return es.AppendResult{Position: es.Position{Seq: ack.Sequence}, Duplicate: ack.Duplicate}, nil
	case err := <-paf.Err():
		err = appendError(err)
		if errors.Is(err, es.ErrConflict) && opts.IdempotencyKey != "" {
			seq, found, ferr := s.retriedCommit(ctx, msg, uint64(opts.ExpectedVersion))
			if ferr != nil {
				return es.AppendResult{}, ferr
			}
			if found {
				return es.AppendResult{Position: es.Position{Seq: seq}, Duplicate: true}, nil
			}
		}
		return es.AppendResult{}, err
	case <-ctx.Done():
		// The commit may still land; the caller retries with its
		// idempotency key to learn the outcome.
		return es.AppendResult{}, es.Wrap(es.Unavailable, "append commit: outcome unknown", ctx.Err())
	}
}

// retriedCommit finds the commit an append with an idempotency key already
// stored, after that append conflicted. JetStream checks the expected
// subject sequence before the duplicate window, so the retry of a commit
// that landed reports a conflict; under optimistic concurrency that commit
// can only be the first on the subject after the expected version.
func (s *Store) retriedCommit(ctx context.Context, msg *nats.Msg, expected uint64) (uint64, bool, error) {
	m, r, err := s.next(ctx, "append commit: find retried commit", msg.Subject, expected+1)
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
		case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return es.Wrap(es.Unavailable, "append commit: event store unavailable", err)
		}
	}
	switch {
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		return es.Wrap(es.Unavailable, "append commit: no acknowledgement in time; outcome unknown", err)
	case errors.Is(err, nats.ErrNoResponders):
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
	if err := s.writable(); err != nil {
		return err
	}
	if _, err := s.js.Stream(ctx, s.cfg.Stream); err != nil {
		return es.Wrap(es.Unavailable, "event store unavailable", err)
	}
	return nil
}

// encodeCommit builds the message for one commit. It validates the stream
// id and the events before anything is sent.
func encodeCommit(stream es.StreamID, events []proto.Message, opts es.AppendOptions) (*nats.Msg, error) {
	if err := stream.Validate(); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, es.Invalidf("events", "a commit needs at least one event")
	}
	if err := es.ValidateIdempotencyKey("idempotency_key", opts.IdempotencyKey); err != nil {
		return nil, err
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	ts := timestamppb.New(now)
	commit := &esv1.Commit{Events: make([]*esv1.Event, len(events))}
	types := make([]string, len(events))
	for i, e := range events {
		data, err := proto.Marshal(e)
		if err != nil {
			return nil, es.Wrap(es.Internal, "marshal event", err)
		}
		types[i] = string(e.ProtoReflect().Descriptor().FullName())
		if next, old := wire.Superseded(types[i]); old {
			return nil, es.Errorf(es.Internal, "append %s: an old version of %s, which readers get upcast: append that", types[i], next)
		}
		commit.Events[i] = &esv1.Event{Id: ulid.Make().String(), Type: types[i], OccurredAt: ts, Data: data}
	}
	data, err := proto.Marshal(commit)
	if err != nil {
		return nil, es.Wrap(es.Internal, "marshal commit", err)
	}
	h := make(nats.Header, 8)
	// Dedup is stream-wide in JetStream, and clients pick their keys: a
	// key counts only on its own aggregate's subject. '/' occurs in no
	// subject, so the id is unambiguous. Without a key there is nothing
	// a retry could repeat, and the server's dedup bookkeeping costs ~15%
	// of append throughput, so no id is sent.
	if opts.IdempotencyKey != "" {
		h.Set(jetstream.MsgIDHeader, stream.String()+"/"+opts.IdempotencyKey)
	}
	if opts.ExpectedVersion != es.AnyVersion {
		if opts.ExpectedVersion < 0 {
			return nil, es.Invalidf("expected_version", "must be >= 0 or AnyVersion, got %d", opts.ExpectedVersion)
		}
		h.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatInt(opts.ExpectedVersion, 10))
	}
	wire.SetCommitHeaders(h, types, opts.Meta)
	return &nats.Msg{Subject: stream.String(), Header: h, Data: data}, nil
}

// Load implements es.Store with batched Direct Get on the aggregate's
// subject: no consumer is created per load.
func (s *Store) Load(ctx context.Context, stream es.StreamID, after uint64) ([]es.Commit, uint64, error) {
	if err := stream.Validate(); err != nil {
		return nil, 0, err
	}
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
func (s *Store) nextOn(ctx context.Context, subject string, from uint64) (uint64, bool, error) {
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
