package wire

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ImportingStream is the stream 'tideline cluster-import' keeps on a
// cluster while it copies a store into it: a node started with
// --await-import opens its store once the events stream exists and this
// one does not (the copy, every stream of it, is done).
const ImportingStream = "TIDELINE_IMPORTING"

// JetStream error codes of a cluster without a leader for a request
// (nats-server's jetstream_errors_generated.go): nothing was done, and
// the request may succeed once the cluster has formed or elected one.
const (
	JSErrCodeClusterNoPeers         = 10005 // no suitable peers for placement (too few servers yet)
	JSErrCodeClusterNotAvailable    = 10008 // JetStream system temporarily unavailable
	JSErrCodeClusterNotLeader       = 10009 // JetStream cluster can not handle request
	JSErrCodeInsufficientResources  = 10023 // insufficient resources (also: too few servers for the replicas yet)
	JSErrCodeLastSubjectSeqNotReady = 10163 // expected last sequence per subject temporarily unavailable (a new leader catching up)
)

// ClusterNotReady reports whether err is what JetStream answers a request
// to create or change a stream, bucket or consumer while its cluster is
// forming or electing a leader, or too loaded to answer in time: the
// request may succeed if made again.
func ClusterNotReady(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case JSErrCodeClusterNoPeers, JSErrCodeClusterNotAvailable, JSErrCodeClusterNotLeader,
			JSErrCodeInsufficientResources, JSErrCodeLastSubjectSeqNotReady:
			return true
		}
		return apiErr.Code == 503
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}
