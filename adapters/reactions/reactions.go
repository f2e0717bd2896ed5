// Package reactions runs Tideline's reactions (process managers) on a
// watermill router (handlers, retry and poison-queue middleware) over
// JetStream durable consumers of the EVENTS stream (our own small watermill
// Subscriber, see jetstream.go).
//
// Each reaction has a stable name (its durable consumer, "reaction-<name>",
// whose ack floor is its checkpoint) and subject filters. A commit is
// handled at least once: the handler must be idempotent and append its
// results as new events. A failing handler is retried in process with
// exponential backoff (watermill Retry); when the retries are spent the
// message goes to the poison queue (subject reactions.poison.<name> on the
// POISON stream, with the reason in its headers) and is acked, so one bad
// commit does not stop the reaction. If even the poison publish fails the
// message is nacked with a delay and JetStream redelivers it, up to
// MaxDeliver times. A commit that cannot be decoded is poisoned at once,
// without retries: no retry could help, and the commits behind it wait.
//
// An error of kind Unavailable or ResourceExhausted (the store is out of
// disk, a read model the reaction waits for is stopped or behind) is no
// fault of the commit: after the in-process retries the commit is not
// poisoned but redelivered later (after RedeliverDelay times its delivery
// count, at most 30 s), again and again until the condition clears, so
// nothing is lost while an operator fixes it.
//
// A reaction that tells people (Reaction.Notifies: push, e-mail, Slack, a
// safety alert) skips commits recorded longer than Config.MaxAge ago: a
// new consumer on an old stream (a server started on a restored store, a
// renamed reaction) or one far behind would otherwise send weeks-old news.
// Such a commit is acked unhandled, counted (Outcome SkippedAsHistory) and
// logged. Reactions that do work the user still waits for or that keeps
// the books (OCR, speech, transcription, preprocessing, points, raffle
// entries) handle every commit, however old: their results are recorded
// now, so the notifications they cause are live ones.
package reactions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/wire"
)

// Decoder decodes one stored commit message; cmd wires wire.DecodeCommit.
type Decoder func(stream es.StreamID, seq uint64, h nats.Header, data []byte) (es.Commit, error)

// Reaction is one named handler of commits.
type Reaction struct {
	// Name is stable: renaming it starts a new durable consumer from the
	// stream's first event.
	Name string
	// Subjects filter the EVENTS stream, e.g. "ev.safety.device.>".
	Subjects []string
	// Handle is called once per commit, at least once, in stream order;
	// it must be idempotent. An error retries, then poisons the commit.
	Handle func(ctx context.Context, c es.Commit) error
	// Notifies marks a reaction that tells people (push, e-mail, Slack,
	// raising a safety alert): commits older than Config.MaxAge are
	// skipped as history, not handled.
	Notifies bool
	// Concurrency is how many commits Handle may take at once (default 1:
	// one at a time, in stream order). Above 1 the order across commits
	// is lost: for reactions whose commits are independent, such as one
	// engine call per story, that may use every core.
	Concurrency int
}

// Config configures an Engine.
type Config struct {
	// Conn is the connection to JetStream; the engine does not close it.
	Conn *nats.Conn
	// Stream is the events stream; default wire.EventsStream.
	Stream string
	// Replicas of the poison stream, as the events stream's; default 1.
	// The reactions' durable consumers take the events stream's.
	Replicas int
	// Decode decodes commits (required).
	Decode Decoder
	Logger *slog.Logger
	// MaxRetries in process before poisoning; default 5, from
	// RetryInterval (default 100ms) doubling up to 5s.
	MaxRetries    int
	RetryInterval time.Duration
	// MaxDeliver bounds JetStream redeliveries; default -1, unlimited:
	// a message is redelivered only when it could not be settled (a
	// transient error, or the poison queue could not be written), and
	// dropping it then would lose it.
	MaxDeliver int
	// RedeliverDelay is the delay before the first redelivery; the n-th
	// waits n times it, at most 30 s. Default 1 s.
	RedeliverDelay time.Duration
	// AckWait is how long JetStream waits for word from a handler before
	// it may redeliver; a running handler's message is marked in progress
	// every AckWait/3, so a handler may run longer. Default 1 minute.
	AckWait time.Duration
	// TracerProvider, if set, traces the handling of each commit that
	// carries a sampled trace context (wire.HeaderTraceParent): a span
	// "react <name>", child of the commit's append span, in the ctx Handle
	// gets, so what the handler appends or sends continues the trace.
	// nil traces nothing.
	TracerProvider trace.TracerProvider
	// OnOutcome, if set, is told each handling's outcome, by reaction
	// name: the metrics. It must be quick and safe for concurrent use.
	OnOutcome func(reaction string, o Outcome)
	// MaxAge is how long after it was recorded a commit is still news to
	// the reactions that notify (Reaction.Notifies); older ones are
	// skipped as history. 0: no bound, every commit notifies.
	// A notification held up longer than MaxAge (a push service down for
	// hours, redelivered all the while) is skipped too: set MaxAge above
	// the longest outage that should still be made up for.
	MaxAge time.Duration
	// Now tells the time MaxAge is measured against; default time.Now.
	Now func() time.Time
}

// DefaultMaxAge is the `--reaction-max-age` default: an hour.
const DefaultMaxAge = time.Hour

// Outcome is what became of one handling of a commit.
type Outcome int

const (
	// Handled: the handler succeeded.
	Handled Outcome = iota
	// Failed: one attempt failed; the commit is retried in process, then
	// poisoned or (transient errors) redelivered later.
	Failed
	// Poisoned: the commit was written to the poison queue and acked.
	Poisoned
	// SkippedAsHistory: a notifying reaction acked a commit older than
	// Config.MaxAge without handling it.
	SkippedAsHistory
)

func (o Outcome) String() string {
	switch o {
	case Handled:
		return "handled"
	case Failed:
		return "failed"
	case SkippedAsHistory:
		return "skipped_history"
	}
	return "poisoned"
}

// PoisonStream holds the commits reactions gave up on, on subjects
// PoisonSubjectPrefix.<reaction>.
const (
	PoisonStream        = "POISON"
	PoisonSubjectPrefix = "reactions.poison"
)

// Engine is a running set of reactions.
type Engine struct {
	router *message.Router
	sub    *subscriber
}

// New provisions the poison stream and each reaction's durable consumer
// and returns the engine; Run starts it.
func New(ctx context.Context, cfg Config, rs ...Reaction) (*Engine, error) {
	if cfg.Conn == nil || cfg.Decode == nil {
		return nil, errors.New("reactions: Conn and Decode are required")
	}
	if cfg.Stream == "" {
		cfg.Stream = wire.EventsStream
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 5
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = 100 * time.Millisecond
	}
	if cfg.MaxDeliver == 0 {
		cfg.MaxDeliver = -1
	}
	if cfg.RedeliverDelay <= 0 {
		cfg.RedeliverDelay = time.Second
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = time.Minute
	}
	if cfg.MaxAge < 0 {
		return nil, fmt.Errorf("reactions: MaxAge: want 0 (no bound) or more, got %v", cfg.MaxAge)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("reactions: jetstream: %w", err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        PoisonStream,
		Description: "commits that reactions failed to handle, with the reason in headers",
		Subjects:    []string{PoisonSubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Replicas, 1),
	}); err != nil {
		return nil, fmt.Errorf("reactions: provision %s stream: %w", PoisonStream, err)
	}
	byName := map[string]Reaction{}
	for _, r := range rs {
		if err := es.ValidateToken("reaction", r.Name); err != nil {
			return nil, fmt.Errorf("reactions: %w", err)
		}
		if _, dup := byName[r.Name]; dup || len(r.Subjects) == 0 || r.Handle == nil {
			return nil, fmt.Errorf("reactions: reaction %q is repeated or lacks subjects or a handler", r.Name)
		}
		byName[r.Name] = r
	}
	// Watermill logs every message at info: that is debug here.
	wlog := watermill.NewSlogLoggerWithLevelMapping(cfg.Logger.With("component", "reactions"),
		map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	sub := &subscriber{
		js:      js,
		stream:  cfg.Stream,
		log:     cfg.Logger,
		closing: make(chan struct{}),
		consumer: func(topic string) (jetstream.ConsumerConfig, error) {
			r, ok := byName[topic]
			if !ok {
				return jetstream.ConsumerConfig{}, fmt.Errorf("no reaction %q", topic)
			}
			return jetstream.ConsumerConfig{
				Durable:        "reaction-" + r.Name,
				Description:    "reaction " + r.Name,
				FilterSubjects: r.Subjects,
				DeliverPolicy:  jetstream.DeliverAllPolicy,
				AckPolicy:      jetstream.AckExplicitPolicy,
				AckWait:        cfg.AckWait,
				MaxDeliver:     cfg.MaxDeliver,
				MaxAckPending:  max(1, r.Concurrency), // 1: in stream order, one at a time
			}, nil
		},
		// A new consumer of a notifying reaction starts MaxAge ago: it
		// would skip every older commit as history, one at a time, and on
		// a long stream each takes the server a filtered search (a
		// reaction made on a 10M-event store took ~300 commits a second).
		startAt: func(topic string) time.Time {
			if r := byName[topic]; r.Notifies && cfg.MaxAge > 0 {
				return cfg.Now().Add(-cfg.MaxAge)
			}
			return time.Time{}
		},
		retryDelay: func(n uint64) time.Duration { return min(time.Duration(n)*cfg.RedeliverDelay, 30*time.Second) },
		progress:   cfg.AckWait / 3,
	}
	if err := sub.provision(ctx, slices.Sorted(maps.Keys(byName))); err != nil {
		return nil, fmt.Errorf("reactions: %w", err)
	}
	var tracer trace.Tracer
	if cfg.TracerProvider != nil {
		tracer = cfg.TracerProvider.Tracer("github.com/tideline/tideline/adapters/reactions")
	}
	observe := cfg.OnOutcome
	if observe == nil {
		observe = func(string, Outcome) {}
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("reactions: router: %w", err)
	}
	router.AddMiddleware(middleware.Recoverer)
	var past *history // nil: no reaction skips history
	if cfg.MaxAge > 0 {
		past = &history{maxAge: cfg.MaxAge, now: cfg.Now, log: cfg.Logger}
	}
	for name, r := range byName {
		pub := publisher{js: js, poisoned: func() { observe(name, Poisoned) }}
		poison, err := middleware.PoisonQueueWithFilter(pub, PoisonSubjectPrefix+"."+name, func(err error) bool { return !transient(err) })
		if err != nil {
			return nil, fmt.Errorf("reactions: poison queue: %w", err)
		}
		retry := middleware.Retry{MaxRetries: cfg.MaxRetries, InitialInterval: cfg.RetryInterval,
			MaxInterval: 5 * time.Second, Multiplier: 2, Logger: wlog,
			ShouldRetry: func(p middleware.RetryParams) bool { return !errors.As(p.Err, new(permanentError)) }}
		for i := range max(1, r.Concurrency) { // each a fetcher of the one durable consumer
			hname := name
			if i > 0 {
				hname = fmt.Sprintf("%s#%d", name, i+1)
			}
			h := router.AddConsumerHandler(hname, name, sub, handler(r, cfg.Decode, tracer, cfg.Logger, observe, past))
			h.AddMiddleware(poison, retry.Middleware)
		}
	}
	return &Engine{router: router, sub: sub}, nil
}

// Run runs the reactions until ctx ends or Close; it returns once they
// stopped.
func (e *Engine) Run(ctx context.Context) error { return e.router.Run(ctx) }

// Running is closed once every reaction consumes.
func (e *Engine) Running() <-chan struct{} { return e.router.Running() }

// Close stops the reactions and waits for handlers in flight (bounded).
// It leaves the connection open.
func (e *Engine) Close() error {
	return errors.Join(e.router.Close(), e.sub.Close())
}

// transient reports whether err says the commit should be tried again
// later rather than poisoned: the store or a read model is unavailable, or
// out of room.
func transient(err error) bool {
	switch es.KindOf(err) {
	case es.Unavailable, es.ResourceExhausted:
		return true
	}
	return false
}

// Metadata keys the unmarshaler sets.
const (
	mdSubject  = "tl_subject"
	mdSeq      = "tl_seq"
	mdRecorded = "tl_recorded" // the stream's timestamp, RFC 3339 with nanoseconds
)

// permanentError marks a commit no retry can help (it cannot be
// decoded): it goes to the poison queue at once, so it holds up the
// commits behind it for no longer than one attempt.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// history decides which commits are too old for the notifying reactions
// and logs the skips: the first of a run at info, then every
// historyLogEvery-th, so replaying a long history logs a few lines.
type history struct {
	maxAge time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	skipped map[string]uint64 // by reaction: skips since the last handled commit
}

const historyLogEvery = 1000

// skip reports whether reaction r should pass a commit recorded at
// recorded, and logs it if so. A commit handled ends r's run of skips.
func (h *history) skip(r Reaction, seq uint64, recorded time.Time) bool {
	if h == nil || !r.Notifies {
		return false
	}
	age := h.now().Sub(recorded)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.skipped == nil {
		h.skipped = map[string]uint64{}
	}
	if age <= h.maxAge {
		if n := h.skipped[r.Name]; n > 0 {
			h.log.Info("reaction: live again after skipping history", "reaction", r.Name, "skipped", n, "seq", seq)
			delete(h.skipped, r.Name)
		}
		return false
	}
	h.skipped[r.Name]++
	if n := h.skipped[r.Name]; n%historyLogEvery == 1 {
		h.log.Info("reaction: skipping history, no notification for a commit older than the max age",
			"reaction", r.Name, "seq", seq, "age", age.Round(time.Second), "max_age", h.maxAge, "skipped", n)
	}
	return true
}

func handler(r Reaction, decode Decoder, tracer trace.Tracer, log *slog.Logger, observe func(string, Outcome), past *history) message.NoPublishHandlerFunc {
	handle := handleCommit(r, decode, tracer, log, past)
	return func(msg *message.Message) error {
		returned := false
		defer func() {
			if !returned { // panicking: Recoverer makes it an error
				observe(r.Name, Failed)
			}
		}()
		o, err := handle(msg)
		returned = true
		if err != nil {
			observe(r.Name, Failed)
		} else {
			observe(r.Name, o)
		}
		return err
	}
}

func handleCommit(r Reaction, decode Decoder, tracer trace.Tracer, log *slog.Logger, past *history) func(msg *message.Message) (Outcome, error) {
	return func(msg *message.Message) (_ Outcome, err error) {
		seq, err := strconv.ParseUint(msg.Metadata.Get(mdSeq), 10, 64)
		if err != nil {
			return Failed, permanentError{fmt.Errorf("reaction %s: message without sequence: %w", r.Name, err)}
		}
		stream, err := es.ParseStreamID(msg.Metadata.Get(mdSubject))
		if err != nil {
			return Failed, permanentError{fmt.Errorf("reaction %s: %w", r.Name, err)}
		}
		recorded, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(mdRecorded))
		if err != nil {
			return Failed, permanentError{fmt.Errorf("reaction %s: message without its recorded time: %w", r.Name, err)}
		}
		if past.skip(r, seq, recorded) {
			return SkippedAsHistory, nil
		}
		ctx := msg.Context()
		if tracer != nil {
			if tctx := (propagation.TraceContext{}).Extract(ctx, propagation.MapCarrier(msg.Metadata)); trace.SpanContextFromContext(tctx).IsSampled() {
				var span trace.Span
				ctx, span = tracer.Start(tctx, "react "+r.Name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
					attribute.String("tideline.reaction", r.Name),
					attribute.String("messaging.destination.name", msg.Metadata.Get(mdSubject)),
					attribute.Int64("tideline.position", int64(seq))))
				defer func() {
					if err != nil {
						span.RecordError(err)
						span.SetStatus(codes.Error, err.Error())
					}
					span.End()
				}()
			}
		}
		h := nats.Header{}
		for k, v := range msg.Metadata {
			if k != mdSeq && k != mdSubject && k != mdRecorded {
				h.Set(k, v)
			}
		}
		c, err := decode(stream, seq, h, msg.Payload)
		if err != nil {
			log.Warn("reaction: undecodable commit poisoned without retry", "reaction", r.Name, "seq", seq, "err", err)
			return Failed, permanentError{fmt.Errorf("reaction %s: decode commit %d: %w", r.Name, seq, err)}
		}
		for i := range c.Events {
			c.Events[i].RecordedAt = recorded
		}
		if err := r.Handle(ctx, c); err != nil {
			log.Warn("reaction failed", "reaction", r.Name, "seq", seq, "err", err)
			return Failed, err
		}
		return Handled, nil
	}
}
