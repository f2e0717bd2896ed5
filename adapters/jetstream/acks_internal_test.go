package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/internal/poll"
)

// parseAck reads what the server sends as encoding/json would: flat
// acknowledgements itself, the rest through encoding/json.
func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       jetstream.PubAck
		err        error // errors.Is; nil for none
		code       jetstream.ErrorCode
	}{
		{name: "stored", data: `{"stream":"EVENTS","seq":42}`, want: jetstream.PubAck{Stream: "EVENTS", Sequence: 42}},
		{name: "duplicate", data: `{"stream":"EVENTS","seq":7,"duplicate":true}`, want: jetstream.PubAck{Stream: "EVENTS", Sequence: 7, Duplicate: true}},
		{name: "domain and spaces", data: " {\"stream\" : \"EVENTS\",\n \"domain\":\"hub\", \"seq\": 18446744073709551615, \"duplicate\":false } ", want: jetstream.PubAck{Stream: "EVENTS", Domain: "hub", Sequence: 1<<64 - 1}},
		{name: "fields it does not know", data: `{"stream":"EVENTS","seq":3,"batch":"b1","count":2,"val":"x"}`, want: jetstream.PubAck{Stream: "EVENTS", Sequence: 3, Value: "x"}},
		{name: "escaped string", data: `{"stream":"EV\u0045NTS","seq":5}`, want: jetstream.PubAck{Stream: "EVENTS", Sequence: 5}},
		{name: "conflict", data: `{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 41"},"stream":"EVENTS","seq":0}`, err: &jetstream.APIError{}, code: jetstream.JSErrCodeStreamWrongLastSequence},
		{name: "no stream", data: `{"seq":5}`, err: jetstream.ErrInvalidJSAck},
		{name: "empty object", data: `{}`, err: jetstream.ErrInvalidJSAck},
		{name: "not JSON", data: `+OK`, err: jetstream.ErrInvalidJSAck},
		{name: "empty", data: ``, err: jetstream.ErrInvalidJSAck},
		{name: "cut short", data: `{"stream":"EVENTS","seq":4`, err: jetstream.ErrInvalidJSAck},
		{name: "sequence too large", data: `{"stream":"EVENTS","seq":18446744073709551616}`, err: jetstream.ErrInvalidJSAck},
		{name: "negative sequence", data: `{"stream":"EVENTS","seq":-1}`, err: jetstream.ErrInvalidJSAck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAck([]byte(tc.data))
			switch {
			case tc.err == nil && err != nil:
				t.Fatalf("error %v, want %+v", err, tc.want)
			case tc.err == nil && got != tc.want:
				t.Fatalf("got %+v, want %+v", got, tc.want)
			case tc.code != 0:
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != tc.code {
					t.Fatalf("error %v, want the server's error %d", err, tc.code)
				}
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("got %+v, error %v; want %v", got, err, tc.err)
			}
		})
	}
}

// FuzzParseAck: whatever parseFlatAck accepts, encoding/json reads alike.
func FuzzParseAck(f *testing.F) {
	for _, s := range []string{`{"stream":"EVENTS","seq":42}`, `{"stream":"E","seq":7,"duplicate":true,"domain":"d"}`, `{"seq":1,"stream":"S","x":false}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := parseFlatAck(data)
		if !ok {
			return
		}
		var want jetstream.PubAck
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("parseFlatAck read %q as %+v; encoding/json refuses it: %v", data, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parseFlatAck read %q as %+v; encoding/json as %+v", data, got, want)
		}
	})
}

// Against a real server: what an append waits on ends as
// PublishMsgAsync's would, with the same errors.
func TestAcksEnds(t *testing.T) {
	ns, nc := natstest.Start(t)
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	a, err := newAcks(nc, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	send := func(ctx context.Context, subject string, h nats.Header) (jetstream.PubAck, time.Duration, error) {
		t0 := time.Now()
		ack, err := a.publish(ctx, &nats.Msg{Subject: subject, Header: h, Data: []byte("x")})
		return ack, time.Since(t0), err
	}

	if ack, _, err := send(ctx, "s.a", nil); err != nil || ack.Stream != "S" || ack.Sequence != 1 {
		t.Fatalf("stored: %+v, %v; want S at 1", ack, err)
	}
	dedup := nats.Header{jetstream.MsgIDHeader: {"m1"}}
	for _, want := range []bool{false, true} {
		if ack, _, err := send(ctx, "s.b", dedup); err != nil || ack.Duplicate != want || ack.Sequence != 2 {
			t.Fatalf("dedup: %+v, %v; want 2, duplicate %v", ack, err, want)
		}
	}
	occ := nats.Header{jetstream.ExpectedLastSubjSeqHeader: {"5"}}
	var apiErr *jetstream.APIError
	if _, _, err := send(ctx, "s.a", occ); !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("conflict: %v, want the server's wrong last sequence", err)
	}
	// No stream takes the subject: tried 3 times, 250 ms apart.
	if _, took, err := send(ctx, "nostream", nil); !errors.Is(err, jetstream.ErrNoStreamResponse) || took < 2*noResponderWait {
		t.Fatalf("no stream: %v after %v; want %v after %v or more", err, took, jetstream.ErrNoStreamResponse, 2*noResponderWait)
	}
	// A responder that never answers: the timeout.
	if _, err := nc.Subscribe("mute", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if _, took, err := send(ctx, "mute", nil); !errors.Is(err, jetstream.ErrAsyncPublishTimeout) || took < a.timeout || took > a.timeout+2*time.Second {
		t.Fatalf("mute: %v after %v; want %v after %v", err, took, jetstream.ErrAsyncPublishTimeout, a.timeout)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, _, err := send(cctx, "mute", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("mute, context ending: %v, want %v", err, context.DeadlineExceeded)
	}
	// Nobody waits for the timed-out ids, and a late reply to one is
	// dropped without blocking.
	a.mu.Lock()
	left := len(a.waiting)
	a.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d replies still awaited", left)
	}
	a.receive(&nats.Msg{Subject: a.prefix + "1", Data: []byte(`{"stream":"S","seq":9}`)})
	a.receive(&nats.Msg{Subject: a.prefix + "not-an-id"})
	if ack, _, err := send(ctx, "s.c", nil); err != nil || ack.Sequence != 3 {
		t.Fatalf("after all that: %+v, %v; want 3", ack, err)
	}

	// A wait in flight when its connection closes ends then, not at the
	// timeout (nor never: nothing will come).
	closing, err := natsserver.Connect(ns, "closing")
	if err != nil {
		t.Fatal(err)
	}
	b, err := newAcks(closing, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := b.publish(ctx, &nats.Msg{Subject: "mute", Data: []byte("x")})
		ended <- err
	}()
	poll.Until(t, 10*time.Second, "the wait registered", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.waiting) == 1
	})
	closing.Close()
	select {
	case err := <-ended:
		if !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
			t.Fatalf("closed: %v, want %v", err, jetstream.ErrAsyncPublishTimeout)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a wait outlived its connection by 30 s")
	}
}
