package server

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/projections"
)

// Past makes r's projection answer as-of queries, with fresh instances
// from fresh and summary describing one for the admin service's
// ProjectionAt (nil: the model's state as its snapshot holds it, when the
// snapshot is JSON, else its size).
func (h *Host) Past(r *jetstream.Runner, fresh func() projections.Projection, summary func(p projections.Projection, at time.Time) any) api.Past {
	p := pastRunner{r: r, store: h.Store, fresh: fresh, summary: summary}
	if h.m.history == nil {
		h.m.history = map[string]api.Past{}
	}
	h.m.history[r.Name()] = p
	return p
}

// pastRunner adapts Runner.AsOf to api.Past.
type pastRunner struct {
	r       *jetstream.Runner
	store   *jetstream.Store
	fresh   func() projections.Projection
	summary func(p projections.Projection, at time.Time) any
}

func (p pastRunner) At(ctx context.Context, pos uint64) (api.PastModel, error) {
	m, err := p.r.AsOf(ctx, p.fresh, pos)
	if err != nil {
		return api.PastModel{}, err
	}
	at, err := p.store.TimeOf(ctx, pos)
	if err != nil {
		return api.PastModel{}, err
	}
	out := api.PastModel{Model: m.Model, Position: m.Position, Version: m.Version, Time: at,
		Snapshot: m.Snapshot, Replayed: uint64(m.Replayed)}
	if p.summary != nil {
		out.Summary = func() any { return p.summary(m.Model, at) }
	} else {
		out.Summary = func() any { return snapshotSummary(m.Model, m.Position) }
	}
	return out, nil
}

// snapshotSummary describes a model without a summary of its own by its
// snapshot: the state itself when the snapshot is JSON, else its size.
func snapshotSummary(p projections.Projection, pos uint64) any {
	snap, err := p.Snapshot()
	out := map[string]any{"name": p.Name(), "position": pos}
	switch {
	case err != nil:
		out["error"] = err.Error()
	case json.Valid(snap):
		out["state"] = json.RawMessage(snap)
	default:
		out["snapshot_bytes"] = len(snap)
	}
	return out
}

func (p pastRunner) PositionAt(ctx context.Context, t time.Time) (uint64, error) {
	return p.store.PositionAt(ctx, t)
}
