package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acks publishes commits and waits for each one's acknowledgement, on one
// reply subscription for all: what jetstream.PublishMsgAsync does, for
// less CPU: no pubAckFuture and timer per message (one sweeper ends the
// waits that time out), no JSON decoder for an acknowledgement that is
// one flat object (parseAck reads it, and hands anything else to
// encoding/json), and a channel from a pool.
//
// It keeps PublishMsgAsync's behaviour where an append can tell: an
// acknowledgement not come within the timeout (give or take a tenth) is
// jetstream.ErrAsyncPublishTimeout; a stream with no responder is tried
// twice more, 250 ms apart, and is then jetstream.ErrNoStreamResponse;
// the server's refusals are *jetstream.APIError.
type acks struct {
	nc      *nats.Conn
	prefix  string // a reply subject is prefix followed by its id
	timeout time.Duration
	mu      sync.Mutex
	next    uint64
	waiting map[uint64]waiter
}

// waiter is an append waiting for its acknowledgement: the reply goes to
// ch, or nil once the wait has lasted since sent beyond the timeout.
type waiter struct {
	ch   chan *nats.Msg
	sent time.Time
}

// noResponderRetries and noResponderWait are PublishMsgAsync's defaults:
// a stream that has no responder (its server starting, a leader being
// elected) is tried this many more times, this far apart.
const (
	noResponderRetries = 2
	noResponderWait    = 250 * time.Millisecond
)

// ackChans holds the channels acknowledgements are handed over on: each
// is empty when in the pool.
var ackChans = sync.Pool{New: func() any { return make(chan *nats.Msg, 1) }}

// newAcks subscribes to the replies of nc's appends, and sweeps the
// waits that time out until nc is closed. timeout bounds each wait for
// an acknowledgement.
func newAcks(nc *nats.Conn, timeout time.Duration) (*acks, error) {
	a := &acks{nc: nc, prefix: nc.NewInbox() + ".", timeout: timeout, waiting: make(map[uint64]waiter)}
	if _, err := nc.Subscribe(a.prefix+"*", a.receive); err != nil {
		return nil, fmt.Errorf("subscribe to append acknowledgements: %w", err)
	}
	go a.sweep(max(timeout/10, time.Millisecond))
	return a, nil
}

// sweep ends, every period, the waits that have lasted beyond the
// timeout; once the connection is closed, every wait, and itself.
func (a *acks) sweep(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for range t.C {
		closed := a.nc.IsClosed()
		now := time.Now()
		a.mu.Lock()
		for id, w := range a.waiting {
			if closed || now.Sub(w.sent) >= a.timeout {
				delete(a.waiting, id)
				w.ch <- nil // never blocks: whoever deletes the entry sends
			}
		}
		a.mu.Unlock()
		if closed {
			return
		}
	}
}

// receive hands a reply to the append waiting for it. A reply nobody
// waits for (its append gave up) is dropped.
func (a *acks) receive(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[len(a.prefix):], 10, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	w, ok := a.waiting[id]
	delete(a.waiting, id)
	a.mu.Unlock()
	if ok {
		w.ch <- m // never blocks: whoever deletes the entry sends
	}
}

// publish sends msg (setting its Reply) and returns its acknowledgement.
func (a *acks) publish(ctx context.Context, msg *nats.Msg) (ack jetstream.PubAck, err error) {
	for attempt := 0; ; attempt++ {
		reply, err := a.send(ctx, msg)
		if err != nil {
			return jetstream.PubAck{}, err
		}
		if len(reply.Data) > 0 || reply.Header.Get("Status") != "503" {
			return parseAck(reply.Data)
		}
		if attempt == noResponderRetries {
			return jetstream.PubAck{}, jetstream.ErrNoStreamResponse
		}
		select {
		case <-time.After(noResponderWait):
		case <-ctx.Done():
			return jetstream.PubAck{}, ctx.Err()
		}
	}
}

// send sends msg once and waits for its reply.
func (a *acks) send(ctx context.Context, msg *nats.Msg) (*nats.Msg, error) {
	ch := ackChans.Get().(chan *nats.Msg)
	a.mu.Lock()
	a.next++
	id := a.next
	a.waiting[id] = waiter{ch: ch, sent: time.Now()}
	a.mu.Unlock()
	msg.Reply = a.prefix + strconv.FormatUint(id, 10)
	if err := a.nc.PublishMsg(msg); err != nil {
		a.forget(id, ch)
		return nil, err
	}
	select {
	case reply := <-ch:
		ackChans.Put(ch)
		if reply == nil {
			return nil, jetstream.ErrAsyncPublishTimeout
		}
		return reply, nil
	case <-ctx.Done():
		a.forget(id, ch)
		return nil, ctx.Err()
	}
}

// forget stops waiting for id's reply. Its channel goes back to the pool
// only if nothing can be sent to it any more.
func (a *acks) forget(id uint64, ch chan *nats.Msg) {
	a.mu.Lock()
	_, waiting := a.waiting[id]
	delete(a.waiting, id)
	a.mu.Unlock()
	if waiting {
		ackChans.Put(ch)
	}
}

// parseAck reads a publish acknowledgement: the stored message's
// sequence and whether it was a duplicate, or the server's refusal as a
// *jetstream.APIError. An acknowledgement is one flat JSON object of
// plain strings, numbers and booleans (jetstream.PubAck's fields), which
// it reads itself; anything else (an error's nested object, an escaped
// string) goes to encoding/json.
func parseAck(data []byte) (jetstream.PubAck, error) {
	if ack, ok := parseFlatAck(data); ok {
		return ack, nil
	}
	var res struct {
		jetstream.PubAck
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return jetstream.PubAck{}, fmt.Errorf("%w: %q", jetstream.ErrInvalidJSAck, data)
	}
	if res.Error != nil {
		return jetstream.PubAck{}, res.Error
	}
	if res.Stream == "" {
		return jetstream.PubAck{}, fmt.Errorf("%w: %q", jetstream.ErrInvalidJSAck, data)
	}
	return res.PubAck, nil
}

// parseFlatAck reads an acknowledgement that is one JSON object whose
// values are strings of printable ASCII without escapes, unsigned
// integers, true or false, that names its stream, and whose keys are
// jetstream.PubAck's exactly or unlike them (encoding/json matches keys
// without regard to case). ok is false for anything else.
func parseFlatAck(b []byte) (ack jetstream.PubAck, ok bool) {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return ack, false
	}
	i = skipSpace(b, i+1)
	for {
		key, next, ok := flatString(b, i)
		if !ok {
			return ack, false
		}
		field, known := ackFields[key]
		if !known && (ackFieldLike(key) || strings.EqualFold(key, "error")) {
			return ack, false
		}
		i = skipSpace(b, next)
		if i == len(b) || b[i] != ':' {
			return ack, false
		}
		i = skipSpace(b, i+1)
		if i == len(b) {
			return ack, false
		}
		kind := byte(0) // of the value: '"', '0' or 'b'
		switch c := b[i]; {
		case c == '"':
			v, next, ok := flatString(b, i)
			if !ok {
				return ack, false
			}
			switch key {
			case "stream":
				ack.Stream = v
			case "domain":
				ack.Domain = v
			case "val":
				ack.Value = v
			}
			kind, i = '"', next
		case c >= '0' && c <= '9':
			var n uint64
			j := i
			for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
				d := uint64(b[j] - '0')
				if n > (1<<64-1-d)/10 {
					return ack, false
				}
				n = n*10 + d
			}
			if j-i > 1 && b[i] == '0' || j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
				return ack, false
			}
			if key == "seq" {
				ack.Sequence = n
			}
			kind, i = '0', j
		case c == 't' || c == 'f':
			v, next, ok := flatBool(b, i)
			if !ok {
				return ack, false
			}
			if key == "duplicate" {
				ack.Duplicate = v
			}
			kind, i = 'b', next
		default: // an object (an error), an array, null: encoding/json's
			return ack, false
		}
		if known && kind != field {
			return ack, false
		}
		i = skipSpace(b, i)
		if i == len(b) {
			return ack, false
		}
		if b[i] == '}' {
			return ack, skipSpace(b, i+1) == len(b) && ack.Stream != ""
		}
		if b[i] != ',' {
			return ack, false
		}
		i = skipSpace(b, i+1)
	}
}

// ackFields are jetstream.PubAck's JSON keys, and the kind of each one's
// value as parseFlatAck names it.
var ackFields = map[string]byte{"stream": '"', "seq": '0', "duplicate": 'b', "domain": '"', "val": '"'}

// ackFieldLike reports whether key is one of ackFields but for case.
func ackFieldLike(key string) bool {
	for f := range ackFields {
		if strings.EqualFold(key, f) {
			return true
		}
	}
	return false
}

// flatString reads the JSON string at b[i:] if it has no escapes, and
// returns it and the index after it.
func flatString(b []byte, i int) (s string, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return string(b[i+1 : j]), j + 1, true
		case '\\':
			return "", 0, false
		}
		if b[j] < 0x20 || b[j] >= 0x7f { // encoding/json's UTF-8 checks are its own
			return "", 0, false
		}
	}
	return "", 0, false
}

// flatBool reads the JSON true or false at b[i:], and returns it and the
// index after it.
func flatBool(b []byte, i int) (v bool, next int, ok bool) {
	for _, w := range [...]string{"true", "false"} {
		if len(b)-i >= len(w) && string(b[i:i+len(w)]) == w {
			return w == "true", i + len(w), true
		}
	}
	return false, 0, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
