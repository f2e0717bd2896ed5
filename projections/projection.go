// Package projections defines read models: named, versioned, pure folds
// of events that a runner (adapters/jetstream.Runner) feeds in position
// order, checkpoints, snapshots and rebuilds.
package projections

import "github.com/tideline/tideline/domain/es"

// Projection is a read model.
//
// Apply is called by one goroutine, in position order, once per event
// (events of unknown types have nil Data and may be ignored). Queries may
// run concurrently with Apply, so implementations guard their state.
// Apply must be deterministic: a model built live equals one rebuilt from
// position 1. An Apply that panics stops the projection at that commit
// (the runner recovers; the server goes on) until the code is fixed or an
// operator records the decision to skip the commit; so release locks with
// defer.
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
