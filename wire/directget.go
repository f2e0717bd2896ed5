package wire

import (
	"bufio"
	"bytes"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DirectGetSubject is the Direct Get API subject of stream under the
// JetStream API prefix api (jetstream.DefaultAPIPrefix unless configured;
// with or without its trailing dot): its request body is a
// DirectGetRequest.
func DirectGetSubject(api, stream string) string {
	return strings.TrimSuffix(api, ".") + ".DIRECT.GET." + stream
}

// DirectGetLastSubject asks stream for its last message on subject, with
// no request body.
func DirectGetLastSubject(api, stream, subject string) string {
	return DirectGetSubject(api, stream) + "." + subject
}

// DirectGetRequest is the body of a Direct Get request: from stream
// sequence Seq on, the first message on NextBySubject (wildcards allowed),
// or the first stored at or after StartTime,
// or with Batch up to that many of them (and up to about MaxBytes), then a
// 204 end-of-batch status whose Nats-Num-Pending says how many remain.
type DirectGetRequest struct {
	Seq           uint64 `json:"seq,omitempty"`
	Batch         int    `json:"batch,omitempty"`
	MaxBytes      int    `json:"max_bytes,omitempty"`
	NextBySubject string `json:"next_by_subj,omitempty"`
	// StartTime asks for the first message stored at or after it (the
	// stream's time index); not with Seq.
	StartTime *time.Time `json:"start_time,omitempty"`
}

// Headers of a Direct Get reply that nats.go does not name.
const (
	headerStatus      = "Status" // none on a message
	headerDescription = "Description"
	headerNumPending  = "Nats-Num-Pending"
)

// Direct Get reply statuses.
const (
	statusNotFound   = "404"
	statusEndOfBatch = "204"
)

// DirectGetReply is one message of the reply to a Direct Get request, as
// ReadDirectGet reads it: a stored message (Found), the end of a batch
// (EndOfBatch), or neither when nothing matched the request (404).
type DirectGetReply struct {
	// Found says the message is a stored one, at stream sequence Seq on
	// Subject, stored at Time (zero if the server sent no time it could
	// parse); its headers and data are the reply message's.
	Found   bool
	Seq     uint64
	Subject string
	Time    time.Time
	// EndOfBatch says the reply to a batched request ends here. Pending
	// messages match the request past LastSeq, the batch's last sequence
	// (each 0 if the server sent none it could parse).
	EndOfBatch bool
	Pending    uint64
	LastSeq    uint64
}

// DirectGetError is a Direct Get reply's status other than not found
// (404) and end of batch (204): the request was refused or failed, e.g.
// 408 for a bad request, 413 too many results, 429, or the NATS-user
// guard's 403.
type DirectGetError struct {
	Status      string
	Description string
}

func (e *DirectGetError) Error() string { return "status " + e.Status + " " + e.Description }

// ReadDirectGet reads m, one message of the reply to a Direct Get
// request. Not found is neither Found nor an error. Any other status is a
// *DirectGetError, and a stored message whose Nats-Sequence header is
// missing or garbled is an error, since it cannot be placed in the
// stream.
func ReadDirectGet(m *nats.Msg) (DirectGetReply, error) {
	h := m.Header
	switch st := h.Get(headerStatus); st {
	case "":
	case statusNotFound:
		return DirectGetReply{}, nil
	case statusEndOfBatch:
		r := DirectGetReply{EndOfBatch: true}
		r.Pending, _ = strconv.ParseUint(h.Get(headerNumPending), 10, 64)
		r.LastSeq, _ = strconv.ParseUint(h.Get(jetstream.LastSequenceHeader), 10, 64)
		return r, nil
	default:
		return DirectGetReply{}, &DirectGetError{Status: st, Description: h.Get(headerDescription)}
	}
	seq, err := strconv.ParseUint(h.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return DirectGetReply{}, fmt.Errorf("bad sequence header: %w", err)
	}
	r := DirectGetReply{Found: true, Seq: seq, Subject: h.Get(jetstream.SubjectHeader)}
	r.Time, _ = time.Parse(time.RFC3339Nano, h.Get(jetstream.TimeStampHeaer))
	return r, nil
}

// MsgGetRequest is the body of a request to the JetStream API's message
// get ($JS.API.STREAM.MSG.GET.<stream>), which only the stream's leader
// answers, unlike a Direct Get, which any replica answers however far
// behind it is: from Seq on, the first message on NextBySubject, or the
// last on LastBySubject.
type MsgGetRequest struct {
	Seq           uint64 `json:"seq,omitempty"`
	LastBySubject string `json:"last_by_subj,omitempty"`
	NextBySubject string `json:"next_by_subj,omitempty"`
	NoHeaders     bool   `json:"no_hdr,omitempty"`
}

// MsgGetReply is the JetStream API's answer to a MsgGetRequest.
type MsgGetReply struct {
	Message *struct {
		Seq    uint64 `json:"seq"`
		Header []byte `json:"hdrs"`
		Data   []byte `json:"data"`
	} `json:"message"`
	Error *jetstream.APIError `json:"error"`
}

// MsgHeaders parses a stored message's header block ("NATS/1.0\r\n"
// then MIME headers) as the message get's reply carries it.
func MsgHeaders(block []byte) (nats.Header, error) {
	if len(block) == 0 {
		return nats.Header{}, nil
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(block)))
	if _, err := r.ReadLine(); err != nil {
		return nil, fmt.Errorf("message headers: %w", err)
	}
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("message headers: %w", err)
	}
	return nats.Header(h), nil
}
