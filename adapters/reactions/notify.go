package reactions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/notify"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
)

// NotifyPushName is the push reaction's stable name.
const NotifyPushName = "notify-push"

// PushEngines are the notifiers of the push reaction; nil when not
// configured (a delivery to such a subscription then fails, recorded
// with that reason).
type PushEngines struct {
	WebPush, FCM media.Notifier
	Logger       *slog.Logger
}

// NotifyReactions push each posted notification to the user's
// subscriptions and record each delivery or failure. A subscription the
// push service says is gone (media.ErrNotFound) is removed. A push
// service that is unavailable has the commit redelivered later; the
// subscriptions already served are not sent it again (the user's state
// records each delivery), nor is a notification older than the last
// notify.MaxTracked. A notification posted longer than Config.MaxAge ago
// is skipped as history: it stays in the inbox, unpushed.
func NotifyReactions(svc *notify.Service, e PushEngines) []Reaction {
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
	p := &pusher{svc: svc, e: e}
	return []Reaction{{Name: NotifyPushName, Subjects: []string{"ev.notify.user.>"}, Handle: p.push, Notifies: true, Concurrency: 4}}
}

type pusher struct {
	svc *notify.Service
	e   PushEngines
}

func (p *pusher) push(ctx context.Context, c es.Commit) error {
	var unavailable []error
	for _, ev := range c.Events {
		n, ok := ev.Data.(*notifyv1.NotificationPosted)
		if !ok {
			continue
		}
		u, err := p.svc.User(ctx, n.UserId, c.Seq)
		if err != nil {
			return err
		}
		msg := media.Message{Subject: n.Title, Text: n.Body, Tag: strings.ToLower(strings.TrimPrefix(n.Topic.String(), "TOPIC_"))}
		if n.Link != "" {
			msg.Links = []media.Link{{Title: "Open", URL: n.Link}}
		}
		for _, sub := range u.Subscriptions {
			if u.Delivered(n.NotificationId, sub.ID) {
				continue
			}
			if err := p.send(ctx, n, sub, msg); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if es.KindOf(err) != es.Unavailable {
					return err
				}
				unavailable = append(unavailable, err)
			}
		}
	}
	return errors.Join(unavailable...)
}

// send delivers msg to sub and records the outcome; it returns an
// Unavailable error for the commit to be retried.
func (p *pusher) send(ctx context.Context, n *notifyv1.NotificationPosted, sub notify.Subscription, msg media.Message) error {
	var notifier media.Notifier
	switch sub.Kind {
	case notify.WebPush:
		notifier = p.e.WebPush
		msg.To = media.Recipient{WebPush: &media.WebPushSubscription{Endpoint: sub.Endpoint, P256dh: sub.P256dh, Auth: sub.Auth}}
	case notify.FCM:
		notifier = p.e.FCM
		msg.To = media.Recipient{FCMToken: sub.Token}
	}
	record := func(failure string) error {
		return p.svc.RecordDelivery(ctx, n.UserId, notify.RecordDelivery{NotificationID: n.NotificationId, SubscriptionID: sub.ID, Failure: failure})
	}
	if notifier == nil {
		kind := "web push"
		if sub.Kind == notify.FCM {
			kind = "fcm"
		}
		return record(kind + " not configured")
	}
	err := notifier.Notify(ctx, msg)
	switch {
	case err == nil:
		return record("")
	case errors.Is(err, media.ErrNotFound):
		if err := record("subscription gone: " + err.Error()); err != nil {
			return err
		}
		return p.svc.Gone(ctx, n.UserId, sub.ID)
	case errors.Is(err, media.ErrUnavailable):
		p.e.Logger.Warn("push service unavailable: the notification waits", "user", n.UserId, "subscription", sub.ID, "err", err)
		return es.Wrap(es.Unavailable, fmt.Sprintf("push to %s", sub.ID), err)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	p.e.Logger.Warn("push refused", "user", n.UserId, "subscription", sub.ID, "err", err)
	return record(err.Error())
}
