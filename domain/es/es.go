// Package es is Tideline's event-sourcing kernel: the event store port,
// positions, stream ids, the coded error type, and the command loop that
// loads an aggregate, decides, and commits with optimistic concurrency.
//
// It knows nothing of NATS: adapters/jetstream implements Store.
package es

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
)

// Position locates an event in the store: Seq is the stream sequence of the
// commit that holds it, Index its place inside that commit. Positions grow
// monotonically with Seq; a commit's position is {Seq, 0}.
type Position struct {
	Seq   uint64
	Index uint32
}

// Event is one recorded fact as read back from the store.
type Event struct {
	ID         string
	Type       string // fully qualified protobuf name of Data
	OccurredAt time.Time
	Data       proto.Message
	Position   Position
	Stream     StreamID
	Meta       Metadata
	// RecordedAt is when the store accepted the commit (server time);
	// zero when the reader did not have it.
	RecordedAt time.Time
}

// Metadata travels with a commit in message headers.
type Metadata struct {
	CorrelationID string
	CausationID   string
	Actor         string // who issued the command, e.g. "walker:alice"
	Source        string // where it came from: "api", "edge:<device>", "reaction:<name>"
}

// Commit is every event one command produced, read back together.
type Commit struct {
	Seq    uint64
	Stream StreamID
	Events []Event
}

// AnyVersion, passed as AppendOptions.ExpectedVersion, appends without an
// optimistic-concurrency check: for facts that need no invariant.
const AnyVersion int64 = -1

// AppendOptions tune one Append.
type AppendOptions struct {
	// ExpectedVersion is the stream's version (the sequence of its last
	// commit, 0 for a new stream) the caller decided on, or AnyVersion.
	ExpectedVersion int64
	// IdempotencyKey dedups retries within the store's duplicate window.
	// Empty means the commit's own id (no cross-request dedup).
	IdempotencyKey string
	Meta           Metadata
	// Now stamps OccurredAt; zero means time.Now().
	Now time.Time
}

// AppendResult says where a commit landed.
type AppendResult struct {
	// Position of the commit's first event; for a duplicate, of the original.
	Position Position
	// Duplicate is true when IdempotencyKey matched an earlier commit in the
	// duplicate window and nothing new was stored.
	Duplicate bool
}

// Store is the event store port.
//
// Implementations are safe for concurrent use. An Append that returns nil
// error is durable in the store (acknowledged) and will be seen by every
// later Load and by every reader past its position.
type Store interface {
	// Append stores events as one atomic commit on stream. It returns an
	// error of kind Conflict when ExpectedVersion does not match the
	// stream's version, and of kind Invalid for an empty commit.
	Append(ctx context.Context, stream StreamID, events []proto.Message, opts AppendOptions) (AppendResult, error)
	// Load returns the commits of stream with Seq > after, in order, and
	// the stream's version (Seq of its last commit, 0 if none).
	Load(ctx context.Context, stream StreamID, after uint64) (commits []Commit, version uint64, err error)
}
