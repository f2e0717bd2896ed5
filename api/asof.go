package api

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
)

// Past answers a read model as of a past position: a fresh instance
// rebuilt up to it (adapters/jetstream.Runner.AsOf, through
// cmd/tideline/server). Implementations are safe for concurrent use.
type Past interface {
	// At returns the model holding every commit up to and including pos
	// (0: the empty model); es.OutOfRange past the stream's end,
	// es.ResourceExhausted when as-of replays are busy or too long.
	At(ctx context.Context, pos uint64) (PastModel, error)
	// PositionAt returns the position of the last commit stored at or
	// before t; 0 when none is that old.
	PositionAt(ctx context.Context, t time.Time) (uint64, error)
}

// PastModel is a read model as of Position, treated as read-only. Model
// is the projection's own type (e.g. *dashboard.Model).
type PastModel struct {
	Model    any
	Position uint64
	Version  int
	// Time is when the commit at Position was stored (zero for 0):
	// "now" for the figures of a past model that depend on the clock.
	Time time.Time
	// Snapshot is the kept snapshot it started from (0: position 1);
	// Replayed the stream messages read after it.
	Snapshot, Replayed uint64
	// Summary describes the model for the admin API, as JSON-encodable
	// data.
	Summary func() any
}

// asOf resolves a query's position and time fields (named posField and
// timeField, e.g. as_of_position and as_of_time) into a model; ok is false
// when neither is set, so the query reads the live model. Both set is
// Invalid; a position past the stream's end OutOfRange; a time before
// the first event the empty model.
func asOf(ctx context.Context, past Past, posField, timeField string, pos uint64, at *timestamppb.Timestamp) (m PastModel, ok bool, err error) {
	switch {
	case pos == 0 && at == nil:
		return PastModel{}, false, nil
	case pos != 0 && at != nil:
		return PastModel{}, false, es.Invalidf(timeField, "set %s or %s, not both", posField, timeField)
	case past == nil:
		return PastModel{}, false, es.Errorf(es.Unavailable, "this server does not answer as-of queries")
	}
	if at != nil {
		t, err := validTime(timeField, at)
		if err != nil {
			return PastModel{}, false, err
		}
		if pos, err = past.PositionAt(ctx, t); err != nil {
			return PastModel{}, false, err
		}
	}
	m, err = past.At(ctx, pos)
	if es.KindOf(err) == es.OutOfRange {
		return PastModel{}, false, &es.Error{Kind: es.OutOfRange, Field: posField, Message: fmt.Sprintf("%d is past the last written position", pos)}
	}
	return m, err == nil, err
}
