package server

import (
	"context"
	"fmt"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/wire"
)

// startReactions runs the contexts' reactions on one engine until runCtx
// ends, and returns once they are running.
func (m *Main) startReactions(ctx, runCtx context.Context, rs []reactions.Reaction) error {
	cfg := reactions.Config{Conn: m.nc, Stream: m.Store.StreamName(), Replicas: m.Store.Replicas(), Decode: wire.DecodeCommit, Logger: m.Config.Logger, TracerProvider: m.tracer,
		MaxAge: m.Config.ReactionMaxAge}
	if m.Metrics != nil {
		cfg.OnOutcome = func(r string, o reactions.Outcome) { m.Metrics.ObserveReaction(r, o.String()) }
		for _, r := range rs {
			m.Metrics.Reactions(r.Name)
		}
	}
	var eng *reactions.Engine
	err := jetstream.WhileClusterForms(ctx, m.Store.Shared(), func(ctx context.Context) (err error) {
		eng, err = reactions.New(ctx, cfg, rs...)
		return err
	})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := eng.Run(runCtx)
		if err != nil {
			m.Config.Logger.Error("reactions stopped", "err", err)
		}
		m.reactionsDone.Store(true)
		errc <- err
	}()
	select {
	case <-eng.Running():
		return nil
	case err := <-errc:
		return fmt.Errorf("reactions: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}
