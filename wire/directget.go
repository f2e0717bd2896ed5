package wire

import "strings"

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
// or with Batch up to that many of them (and up to about MaxBytes), then a
// 204 end-of-batch status whose Nats-Num-Pending says how many remain.
type DirectGetRequest struct {
	Seq           uint64 `json:"seq,omitempty"`
	Batch         int    `json:"batch,omitempty"`
	MaxBytes      int    `json:"max_bytes,omitempty"`
	NextBySubject string `json:"next_by_subj,omitempty"`
}

// Direct Get reply statuses (the Status header; none on a message).
const (
	StatusNotFound   = "404"
	StatusEndOfBatch = "204"
)
