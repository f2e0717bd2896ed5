package server

import (
	"context"

	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/projections"
	alertsmodel "github.com/tideline/tideline/projections/alerts"
	safetymodel "github.com/tideline/tideline/projections/safety"
)

// safetyModule wires the safety context: riders' danger events (from
// phones and edge devices), the alert rules, and the reactions that raise
// the alerts the rules decide and notify of them (a log line always, a
// POST to --alert-webhook if set).
func safetyModule(_ context.Context, h *Host) error {
	svc := safety.NewService(h.Store)
	dangers := safetymodel.New()
	dangersFeed := h.Runner(dangers)
	h.Past(dangersFeed, func() projections.Projection { return safetymodel.New() }, nil)
	alerts := alertsmodel.New(alertsmodel.Rules{})
	alertsFeed := h.Runner(alerts)
	h.Past(alertsFeed, func() projections.Projection { return alertsmodel.New(alertsmodel.Rules{}) }, nil)
	h.React(
		reactions.RaiseAlerts(svc, reactions.AlertRules{WaitFor: alertsFeed.WaitFor, Triggered: alerts.Triggered}),
		reactions.NotifyAlerts(reactions.LogNotifier{Logger: h.Logger, WebhookURL: h.Config.AlertWebhook}),
	)
	h.Serve(api.SafetyServices(svc, dangers, dangersFeed, alerts, alertsFeed)...)
	return nil
}
