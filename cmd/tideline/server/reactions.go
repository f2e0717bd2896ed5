package server

import (
	"context"
	"fmt"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/domain/safety"
	alertsmodel "github.com/tideline/tideline/projections/alerts"
)

// startReactions runs the safety alert reactions (raise what the alert
// rules decide; notify by log line and, with --alert-webhook, a POST)
// until runCtx ends.
func (m *Main) startReactions(ctx, runCtx context.Context, svc *safety.Service, rules *alertsmodel.Model, rulesFeed *jetstream.Runner) error {
	eng, err := reactions.New(ctx, reactions.Config{Conn: m.nc, Stream: m.Store.StreamName(), Decode: jetstream.DecodeCommit, Logger: m.Config.Logger},
		reactions.RaiseAlerts(svc, reactions.AlertRules{WaitFor: rulesFeed.WaitFor, Triggered: rules.Triggered}),
		reactions.NotifyAlerts(reactions.LogNotifier{Logger: m.Config.Logger, WebhookURL: m.Config.AlertWebhook}),
	)
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
