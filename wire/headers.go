package wire

import (
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/domain/es"
)

// Headers of a commit in the events stream: what routing and filtering
// need without decoding the payload.
const (
	HeaderEventTypes    = "Tl-Event-Types" // comma-separated, in commit order
	HeaderCorrelationID = "Tl-Correlation-Id"
	HeaderCausationID   = "Tl-Causation-Id"
	HeaderActor         = "Tl-Actor"
	HeaderSource        = "Tl-Source"
)

// Headers of the device lanes. A device's commit carries the Tl-Edge-*
// headers (what it says of its local store), which the gate keeps with the
// commit in the events stream or in quarantine; the gate adds the others.
const (
	// HeaderEdgeSeq is the local sequence of the last event in a device
	// commit: where the device resumes after a restart or a lost ack.
	HeaderEdgeSeq = "Tl-Edge-Seq"
	// HeaderEdgeFirstSeq is the local sequence of the commit's first event.
	HeaderEdgeFirstSeq = "Tl-Edge-First-Seq"
	// HeaderEdgeEpoch identifies the device's local store: local sequences
	// restart when the store is wiped, and a new epoch says so.
	HeaderEdgeEpoch = "Tl-Edge-Epoch"
	// HeaderEdgeStored is the local sequence of the last event the device
	// had stored when it sent the commit: less HeaderEdgeSeq, its backlog.
	// The gate reports it (metrics) and does not keep it.
	HeaderEdgeStored = "Tl-Edge-Stored"
	// HeaderEventType is an edge agent's local message's event type.
	HeaderEventType = "Tl-Event-Type"

	HeaderReceivedAt   = "Tl-Received-At"
	HeaderDevice       = "Tl-Device"
	HeaderRider        = "Tl-Rider"
	HeaderLane         = "Tl-Lane"
	HeaderRejectCode   = "Tl-Reject-Code"
	HeaderRejectReason = "Tl-Reject-Reason"
)

// EdgeHeaders are the headers a device sets on its commits.
var EdgeHeaders = []string{HeaderEdgeSeq, HeaderEdgeFirstSeq, HeaderEdgeEpoch}

// SetCommitHeaders sets a commit's Tl-* headers on h: the event types in
// commit order, and each of meta's fields that is not empty. The values
// share one backing array: every append calls it.
func SetCommitHeaders(h nats.Header, types []string, meta es.Metadata) {
	fields := [...]struct{ k, v string }{
		{HeaderEventTypes, strings.Join(types, ",")},
		{HeaderCorrelationID, meta.CorrelationID},
		{HeaderCausationID, meta.CausationID},
		{HeaderActor, meta.Actor},
		{HeaderSource, meta.Source},
	}
	n := 0
	for i, f := range fields {
		if i == 0 || f.v != "" {
			n++
		}
	}
	vals := make([]string, 0, n)
	for i, f := range fields {
		if i == 0 || f.v != "" { // the types always, even none
			vals = append(vals, f.v)
			h[f.k] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
}

// CommitMetadata reads the metadata SetCommitHeaders wrote.
func CommitMetadata(h nats.Header) es.Metadata {
	return es.Metadata{
		CorrelationID: h.Get(HeaderCorrelationID),
		CausationID:   h.Get(HeaderCausationID),
		Actor:         h.Get(HeaderActor),
		Source:        h.Get(HeaderSource),
	}
}

// Headers of a commit's W3C trace context (https://www.w3.org/TR/trace-context/):
// the span that appended it, so that the projection apply and the
// reactions the commit triggers continue the command's trace. A commit
// appended outside a trace (tracing off, an edge device, a background
// job) has neither.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// TraceCarrier carries a commit's trace context in its headers: it is an
// OpenTelemetry propagation.TextMapCarrier (Get, Set, Keys) over
// nats.Header that keeps keys exactly as given (nats.Header's own Get and
// Set do too, but a carrier over http.Header would write "Traceparent").
type TraceCarrier nats.Header

// Get returns key's first value, or "".
func (c TraceCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces key's values with value.
func (c TraceCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header keys.
func (c TraceCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
