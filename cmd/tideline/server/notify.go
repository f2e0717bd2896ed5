package server

import (
	"context"

	"github.com/tideline/tideline/adapters/opentelemetry"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/notify"
	"github.com/tideline/tideline/projections"
	"github.com/tideline/tideline/projections/inbox"
)

// notifyModule wires notifications: the inbox, push subscriptions, and
// the reaction that pushes each posted notification (Web Push always,
// FCM when configured).
func notifyModule(_ context.Context, h *Host) error {
	svc := notify.NewService(h.Store, nil)
	box := inbox.New()
	e := reactions.PushEngines{FCM: h.Engines.FCM, Logger: h.Logger}
	push := api.PushConfig{FCM: h.Engines.FCM != nil}
	if h.Engines.WebPush != nil {
		e.WebPush, push.VAPIDPublicKey = h.Engines.WebPush, h.Engines.WebPush.PublicKey()
		if h.m.tracer != nil {
			e.WebPush = opentelemetry.Notifier("webpush", e.WebPush)
		}
	}
	h.React(reactions.NotifyReactions(svc, e)...)
	boxFeed := h.Runner(box)
	h.Past(boxFeed, func() projections.Projection { return inbox.New() }, nil)
	h.Serve(api.NotifyServices(svc, box, boxFeed, push)...)
	return nil
}
