package reactions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/wire"
)

// subscriber is a watermill Subscriber over JetStream durable consumers.
//
// (watermill-nats/v2's beta jetstream subscriber closes its output channel
// while its consume callback may still send to it, a data race and a
// possible panic on shutdown, and its Close drains the connection it was
// given; this one has a single goroutine per subscription that owns the
// channel.)
type subscriber struct {
	js       jetstream.JetStream
	stream   string
	consumer func(topic string) (jetstream.ConsumerConfig, error)
	// startAt returns where topic's consumer starts when it is new: the
	// stream's first message for zero, else the first stored at or after
	// it (a reaction that would skip what is older as history).
	startAt func(topic string) time.Time
	// retryDelay is the redelivery delay after a nack of a message
	// delivered n times.
	retryDelay func(n uint64) time.Duration
	// progress is how often a message whose handler still runs is marked
	// in progress (a third of AckWait); 0: never.
	progress time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	wg      sync.WaitGroup
	made    map[string]jetstream.Consumer // by topic, made by provision
}

// provision creates or updates every topic's durable consumer, all at
// once: on a long stream the server counts a new filtered consumer's
// pending messages as it makes it, and the router subscribes one topic
// after another. Subscribe then takes the consumer made here.
func (s *subscriber) provision(ctx context.Context, topics []string) error {
	made := make([]jetstream.Consumer, len(topics))
	errs := make([]error, len(topics))
	var wg sync.WaitGroup
	for i, topic := range topics {
		wg.Go(func() {
			cfg, err := s.consumer(topic)
			if err == nil {
				var start time.Time
				if s.startAt != nil {
					start = s.startAt(topic)
				}
				made[i], err = s.create(ctx, cfg, start)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.made = make(map[string]jetstream.Consumer, len(topics))
	for i, topic := range topics {
		s.made[topic] = made[i]
	}
	return nil
}

// create creates or updates the durable consumer cfg. A new one starts at
// start, unless it is zero (see startAt); one that exists keeps where it
// started, as JetStream does not let that change. In a cluster the
// consumer is one for all nodes, replicated as the stream; creating it
// waits out a cluster that is forming or too loaded to answer in time
// (ctx ends the wait).
func (s *subscriber) create(ctx context.Context, cfg jetstream.ConsumerConfig, start time.Time) (jetstream.Consumer, error) {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		cons, err := s.createOnce(ctx, cfg, start)
		if err == nil {
			return cons, nil
		}
		if !wire.ClusterNotReady(err) {
			return nil, fmt.Errorf("consumer %s: %w", cfg.Durable, err)
		}
		s.log.Warn("consumer not ready; trying again", "consumer", cfg.Durable, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("consumer %s: %w", cfg.Durable, err)
		case <-time.After(backoff):
		}
	}
}

// createOnce is one try of create.
func (s *subscriber) createOnce(ctx context.Context, cfg jetstream.ConsumerConfig, start time.Time) (jetstream.Consumer, error) {
	if start.IsZero() {
		return s.js.CreateOrUpdateConsumer(ctx, s.stream, cfg)
	}
	for range 3 { // made by another node meanwhile: update it instead
		cons, err := s.js.Consumer(ctx, s.stream, cfg.Durable)
		switch {
		case err == nil:
			old := cons.CachedInfo().Config
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
			return s.js.UpdateConsumer(ctx, s.stream, cfg)
		case !errors.Is(err, jetstream.ErrConsumerNotFound):
			return nil, err
		}
		fresh := cfg
		fresh.DeliverPolicy, fresh.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		cons, err = s.js.CreateConsumer(ctx, s.stream, fresh)
		if !errors.Is(err, jetstream.ErrConsumerExists) {
			return cons, err
		}
	}
	return nil, fmt.Errorf("consumer %s: made and changed by others meanwhile, three times", cfg.Durable)
}

var _ message.Subscriber = (*subscriber)(nil)

// Subscribe delivers the messages of topic's durable consumer (made by
// provision) one at a time: the next is fetched once the previous one is
// acked or nacked. A message neither acked nor nacked when the
// subscription ends is redelivered by JetStream after AckWait.
func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("subscriber closed")
	}
	cfg, err := s.consumer(topic)
	if err != nil {
		return nil, err
	}
	cons := s.made[topic]
	if cons == nil {
		return nil, fmt.Errorf("consumer %s: not provisioned", cfg.Durable)
	}
	out := make(chan *message.Message)
	stop, cancel := context.WithCancel(ctx)
	s.wg.Add(2)
	go func() { // ends the consumption below
		defer s.wg.Done()
		select {
		case <-stop.Done():
		case <-s.closing:
		}
		cancel()
	}()
	go func() {
		defer s.wg.Done()
		defer close(out) // once no callback runs any more: after Closed
		defer cancel()
		p := &pulling{log: s.log, consumer: cfg.Durable}
		for backoff := time.Duration(0); ; {
			cc, err := cons.Consume(func(m jetstream.Msg) {
				p.pulled()
				if stop.Err() == nil && !s.deliver(stop, m, out) {
					cancel()
				}
			}, jetstream.PullMaxMessages(1), jetstream.PullExpiry(pullWait), jetstream.PullHeartbeat(2*time.Second),
				jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) { p.failed(err) }))
			if err == nil {
				select {
				case <-stop.Done():
					cc.Stop()
					<-cc.Closed()
					return
				case <-cc.Closed(): // ended on its own: the consumer is gone
					backoff = 0
				}
			} else {
				p.failed(err)
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
			select {
			case <-stop.Done():
				return
			case <-time.After(backoff):
			}
		}
	}()
	return out, nil
}

// pullWait is how long a pull waits for a message before the next one is
// sent (the client's default is 30 s): a pull the server dropped (a loaded
// machine, a reconnect) then holds a reaction up at most this long.
const pullWait = 5 * time.Second

// pulling tells how one fetcher's pulls go: the first error of a run of
// them is a warning, the next message after it a note.
//
// The fetcher consumes with a callback, one message a pull, rather than
// with the client's Messages iterator: that one buffers only as many
// messages as it pulls at once, one here, in a channel shared with the
// pull's heartbeats and expiry notices, and when the client read a
// heartbeat and a message in one go (a process starved of CPU, a
// connection busy with a bulk read) it dropped the message, which
// JetStream redelivers only after AckWait. A callback's subscription
// queues what arrives. The next pull is sent once the callback returns,
// so a fetcher busy with a long commit holds no other back.
type pulling struct {
	log      *slog.Logger
	consumer string
	mu       sync.Mutex
	failing  bool
}

func (p *pulling) failed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case errors.Is(err, jetstream.ErrNoHeartbeat): // a busy server: the client pulls again
		p.log.Debug("reaction pull", "consumer", p.consumer, "err", err)
	case !p.failing:
		p.log.Warn("reaction cannot pull; trying again", "consumer", p.consumer, "err", err)
		p.failing = true
	default:
		p.log.Debug("reaction cannot pull", "consumer", p.consumer, "err", err)
	}
}

func (p *pulling) pulled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing {
		p.log.Info("reaction pulls again", "consumer", p.consumer)
		p.failing = false
	}
}

// deliver hands m to the router and settles it; false means stop. ctx
// ends when the subscription ends or the subscriber closes.
func (s *subscriber) deliver(ctx context.Context, m jetstream.Msg, out chan<- *message.Message) bool {
	wm, err := unmarshal(m)
	if err != nil { // not a JetStream message: nothing to redeliver
		s.log.Error("reaction message", "subject", m.Subject(), "err", err)
		_ = m.Term()
		return true
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wm.SetContext(mctx)
	select {
	case out <- wm:
	case <-ctx.Done():
		return false
	}
	// A handler may run longer than AckWait (a long recording to
	// transcribe): tell JetStream it is in progress so that it does not
	// redeliver the message while it runs.
	var progress <-chan time.Time
	if s.progress > 0 {
		t := time.NewTicker(s.progress)
		defer t.Stop()
		progress = t.C
	}
	for {
		select {
		case <-progress:
			if err := m.InProgress(); err != nil {
				s.log.Debug("in progress", "subject", m.Subject(), "err", err)
			}
			continue
		case <-wm.Acked():
			if err := m.DoubleAck(ctx); err != nil {
				s.log.Warn("ack", "subject", m.Subject(), "err", err)
			}
		case <-wm.Nacked():
			n := uint64(1)
			if md, err := m.Metadata(); err == nil {
				n = md.NumDelivered
			}
			if err := m.NakWithDelay(s.retryDelay(n)); err != nil {
				s.log.Warn("nak", "subject", m.Subject(), "err", err)
			}
		case <-ctx.Done():
			return false
		}
		return true
	}
}

// Close ends every subscription and waits for them (bounded). It does
// not close the connection.
func (s *subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("reactions: subscriptions did not stop within 10s")
	}
}

// unmarshal keeps the raw commit with its subject, sequence and headers;
// decoding happens in the handler, where an error can be retried and
// poisoned.
func unmarshal(m jetstream.Msg) (*message.Message, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("message metadata: %w", err)
	}
	seq := strconv.FormatUint(md.Sequence.Stream, 10)
	wm := message.NewMessage(seq, m.Data())
	for k, v := range m.Headers() {
		if len(v) > 0 {
			wm.Metadata.Set(k, v[0])
		}
	}
	wm.Metadata.Set(mdSubject, m.Subject())
	wm.Metadata.Set(mdSeq, seq)
	wm.Metadata.Set(mdRecorded, md.Timestamp.UTC().Format(time.RFC3339Nano))
	return wm, nil
}

// publisher is a watermill Publisher to JetStream: the topic is the
// subject, metadata become headers. It is used for the poison queue.
// publisher writes poisoned commits; poisoned is called after each.
type publisher struct {
	js       jetstream.JetStream
	poisoned func()
}

var _ message.Publisher = publisher{}

func (p publisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		nm := nats.NewMsg(topic)
		for k, v := range m.Metadata {
			nm.Header.Set(k, v)
		}
		nm.Header.Set(jetstream.MsgIDHeader, topic+"/"+m.UUID) // a retried poisoning stores once
		nm.Data = m.Payload
		if _, err := p.js.PublishMsg(context.Background(), nm); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		p.poisoned()
	}
	return nil
}

func (publisher) Close() error { return nil }
