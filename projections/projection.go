// Package projections defines read models: named, versioned, pure folds
// of events that a runner (adapters/jetstream.Runner) feeds in position
// order, checkpoints, snapshots and rebuilds.
package projections

import (
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
)

// Projection is a read model.
//
// Apply is called by one goroutine, in position order, once per event
// (events of unknown types have nil Data and may be ignored). Queries may
// run concurrently with Apply, so implementations guard their state.
// Apply must be deterministic: a model built live equals one rebuilt from
// position 1. An Apply that panics stops the projection at that commit
// (the runner recovers; the server goes on) until the code is fixed or an
// operator records the decision to skip the commit; so release locks with
// defer. Apply must not change the event or its Data: a replay pass
// decodes a commit once and gives the same events to every projection
// that reads them, each on its own goroutine (keep a proto.Clone of Data
// to change or hold it).
type Projection interface {
	// Name is stable; renaming a projection is a migration (it changes
	// where its checkpoint lives).
	Name() string
	// Version changes when Apply's meaning changes; a stored snapshot of
	// another version is discarded and the model rebuilt from position 1.
	Version() int
	Apply(e es.Event)
	// Reset empties the model, as before position 1.
	Reset()
	// Snapshot serializes the model; Restore replaces the model with one.
	// When Restore fails (or panics) the runner discards the snapshot and
	// rebuilds the model from position 1.
	Snapshot() ([]byte, error)
	Restore(data []byte) error
}

// Selective is implemented by projections that read only some event
// types: the runner skips decoding commits that carry none of them (it
// reads the types from the commit's headers) and only advances the
// position past them.
type Selective interface {
	EventTypes() []string
}

// Scoped is implemented by projections that read only some streams: the
// runner's consumer then receives only these subjects (e.g. "ev.steps.>"),
// so other contexts' appends cost the projection nothing. Positions stay
// stream-wide: the runner proves, when asked to wait for a position, that
// no event of these subjects lies between what it applied and that
// position.
type Scoped interface {
	Subjects() []string
}

// Segmented is implemented by projections whose snapshot is a set of
// named segments, so that a runner stores only the segments that changed
// since the previous snapshot (and keeps the others it already stored).
// A runner uses Capture and RestoreSegments in place of Snapshot and
// Restore for them.
type Segmented interface {
	// Capture returns the model's position and every segment its state is
	// made of, in the order RestoreSegments must read them. A segment
	// without an Encode is unchanged since the previous Capture (or the
	// RestoreSegments before it); with full, every segment has an Encode.
	//
	// Capture is quick, so Apply waits little for a snapshot: the
	// encoding is left to Encode, which may run on another goroutine,
	// concurrently with Apply and queries. The caller calls each Encode
	// at most once, and calls or abandons all of a capture's before the
	// next Capture. It passes full unless it stored every segment of the
	// previous capture (or restored the model from them).
	Capture(full bool) (pos uint64, segs []Segment)
	// RestoreSegments replaces the model with the state a Capture at pos
	// described: the segments named in names, in that order, each read
	// with read. When it fails (or panics) the model is unchanged and the
	// runner rebuilds it from position 1.
	RestoreSegments(pos uint64, names []string, read func(name string) ([]byte, error)) error
}

// Segment is one named part of a Segmented projection's snapshot.
type Segment struct {
	// Name identifies the segment within its projection: letters, digits
	// and "-+_.".
	Name string
	// Encode returns the segment's bytes; nil when the segment is
	// unchanged since the previous capture.
	Encode func() ([]byte, error)
}

// TypeNames returns the full names of the event types of msgs, for
// Selective.EventTypes.
func TypeNames(msgs ...proto.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.ProtoReflect().Descriptor().FullName())
	}
	return out
}
