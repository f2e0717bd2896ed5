package wire_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/wire"
)

func TestReadDirectGet(t *testing.T) {
	at := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)
	// stored is a message as the server sends it: in a batch (pending set)
	// with Nats-Num-Pending and Nats-Last-Sequence too.
	stored := func(seq, pending uint64) *nats.Msg {
		h := nats.Header{}
		h.Set("Nats-Stream", "EVENTS")
		h.Set("Nats-Subject", "ev.steps.user.alice")
		h.Set("Nats-Sequence", strconv.FormatUint(seq, 10))
		h.Set("Nats-Time-Stamp", at.Format(time.RFC3339Nano))
		h.Set(wire.HeaderEventTypes, "tideline.steps.v1.StepsRecorded")
		if pending > 0 {
			h.Set("Nats-Num-Pending", strconv.FormatUint(pending, 10))
			h.Set("Nats-Last-Sequence", strconv.FormatUint(seq, 10))
		}
		return &nats.Msg{Header: h, Data: []byte{0x0a}}
	}
	// status is a status reply; nats.go puts the status line's text in
	// Description.
	status := func(code, desc string, kv ...string) *nats.Msg {
		h := nats.Header{"Status": {code}, "Description": {desc}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return &nats.Msg{Header: h}
	}
	withHeader := func(m *nats.Msg, k, v string) *nats.Msg {
		if v == "" {
			m.Header.Del(k)
		} else {
			m.Header.Set(k, v)
		}
		return m
	}
	found := func(seq uint64) wire.DirectGetReply {
		return wire.DirectGetReply{Found: true, Seq: seq, Subject: "ev.steps.user.alice", Time: at}
	}

	for _, tc := range []struct {
		name string
		msgs []*nats.Msg
		want []wire.DirectGetReply
		// err is what the last message reads as: "" no error, a status
		// for a *wire.DirectGetError, "bad" for any other error.
		err string
	}{
		{name: "found", msgs: []*nats.Msg{stored(7, 0)}, want: []wire.DirectGetReply{found(7)}},
		{name: "found_without_time_stamp",
			msgs: []*nats.Msg{withHeader(stored(7, 0), "Nats-Time-Stamp", "")},
			want: []wire.DirectGetReply{{Found: true, Seq: 7, Subject: "ev.steps.user.alice"}}},
		{name: "found_with_garbled_time_stamp",
			msgs: []*nats.Msg{withHeader(stored(7, 0), "Nats-Time-Stamp", "yesterday")},
			want: []wire.DirectGetReply{{Found: true, Seq: 7, Subject: "ev.steps.user.alice"}}},
		{name: "not_found", msgs: []*nats.Msg{status("404", "Message Not Found")}, want: []wire.DirectGetReply{{}}},
		{name: "batch_then_end_of_batch_with_more_pending",
			msgs: []*nats.Msg{stored(3, 6), stored(5, 5), stored(9, 4),
				status("204", "EOB", "Nats-Num-Pending", "4", "Nats-Last-Sequence", "9")},
			want: []wire.DirectGetReply{found(3), found(5), found(9), {EndOfBatch: true, Pending: 4, LastSeq: 9}}},
		{name: "batch_then_end_of_batch_with_none_pending",
			msgs: []*nats.Msg{stored(3, 1), status("204", "EOB", "Nats-Num-Pending", "0", "Nats-Last-Sequence", "3")},
			want: []wire.DirectGetReply{found(3), {EndOfBatch: true, LastSeq: 3}}},
		{name: "missing_sequence_header", msgs: []*nats.Msg{withHeader(stored(7, 0), "Nats-Sequence", "")}, err: "bad"},
		{name: "garbled_sequence_header", msgs: []*nats.Msg{withHeader(stored(7, 0), "Nats-Sequence", "7x")}, err: "bad"},
		{name: "negative_sequence_header", msgs: []*nats.Msg{withHeader(stored(7, 0), "Nats-Sequence", "-1")}, err: "bad"},
		{name: "bad_request_status", msgs: []*nats.Msg{status("408", "Bad Request")}, err: "408"},
		{name: "too_many_requests_status", msgs: []*nats.Msg{status("429", "Too Many Requests")}, err: "429"},
		{name: "guard_refusal_status", msgs: []*nats.Msg{status("403", "tideline: DIRECT.GET.OTHER: not allowed")}, err: "403"},
		{name: "batch_cut_by_an_error_status", msgs: []*nats.Msg{stored(3, 2), status("413", "Too Many Results")},
			want: []wire.DirectGetReply{found(3)}, err: "413"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, m := range tc.msgs {
				got, err := wire.ReadDirectGet(m)
				if i == len(tc.msgs)-1 && tc.err != "" {
					var st *wire.DirectGetError
					switch isStatus := errors.As(err, &st); {
					case err == nil:
						t.Fatalf("message %d read as %+v, want an error", i, got)
					case tc.err == "bad" && isStatus:
						t.Fatalf("message %d: status error %v, want a bad message", i, err)
					case tc.err != "bad" && (!isStatus || st.Status != tc.err || st.Description != m.Header.Get("Description")):
						t.Fatalf("message %d: %v, want status %s", i, err, tc.err)
					}
					if got != (wire.DirectGetReply{}) {
						t.Fatalf("message %d: an error with %+v", i, got)
					}
					continue
				}
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if want := tc.want[i]; !got.Time.Equal(want.Time) || withoutTime(got) != withoutTime(want) {
					t.Fatalf("message %d read as %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

func withoutTime(r wire.DirectGetReply) wire.DirectGetReply {
	r.Time = time.Time{}
	return r
}
