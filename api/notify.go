package api

import (
	"context"
	"net/http"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/notify"
	"github.com/tideline/tideline/projections/inbox"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/notify/v1/notifyv1connect"
)

// PushConfig is what clients learn from GetPushConfig.
type PushConfig struct {
	VAPIDPublicKey string // base64url, for pushManager.subscribe
	FCM            bool   // FCM tokens are sent to
}

// NotifyServices serves tideline.notify.v1.NotificationService over
// svc, the inbox read model and its runner.
func NotifyServices(svc *notify.Service, box *inbox.Model, boxFeed ReadModel, push PushConfig) []Service {
	return []Service{{Name: notifyv1connect.NotificationServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return notifyv1connect.NewNotificationServiceHandler(&notifyHandler{rt: rt, svc: svc, box: box, feed: boxFeed, push: push}, opts)
	}}}
}

type notifyHandler struct {
	rt   *runtime
	svc  *notify.Service
	box  *inbox.Model
	feed ReadModel
	push PushConfig
}

const maxInboxList = inbox.MaxPerUser

func (h *notifyHandler) GetPushConfig(ctx context.Context, _ *connect.Request[notifyv1.GetPushConfigRequest]) (*connect.Response[notifyv1.GetPushConfigResponse], error) {
	if err := notify.MayUse(caller(ctx)); err != nil {
		return nil, err
	}
	return connect.NewResponse(&notifyv1.GetPushConfigResponse{VapidPublicKey: h.push.VAPIDPublicKey, Fcm: h.push.FCM}), nil
}

func (h *notifyHandler) SubscribePush(ctx context.Context, req *connect.Request[notifyv1.SubscribePushRequest]) (*connect.Response[notifyv1.SubscribePushResponse], error) {
	var sub notify.Subscription
	switch w := req.Msg.WebPush; {
	case w != nil && req.Msg.FcmToken != "":
		return nil, es.Invalidf("fcm_token", "give web_push or fcm_token, not both")
	case w != nil:
		sub = notify.Subscription{Kind: notify.WebPush, Endpoint: w.Endpoint, P256dh: w.P256Dh, Auth: w.Auth}
	case req.Msg.FcmToken != "":
		sub = notify.Subscription{Kind: notify.FCM, Token: req.Msg.FcmToken}
	}
	id, res, err := h.svc.Subscribe(ctx, caller(ctx), sub)
	if err != nil {
		return nil, err
	}
	return withPosition(&notifyv1.SubscribePushResponse{SubscriptionId: id, Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *notifyHandler) UnsubscribePush(ctx context.Context, req *connect.Request[notifyv1.UnsubscribePushRequest]) (*connect.Response[notifyv1.UnsubscribePushResponse], error) {
	res, err := h.svc.Unsubscribe(ctx, caller(ctx), req.Msg.SubscriptionId)
	if err != nil {
		return nil, err
	}
	return withPosition(&notifyv1.UnsubscribePushResponse{Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *notifyHandler) GetPreferences(ctx context.Context, _ *connect.Request[notifyv1.GetPreferencesRequest]) (*connect.Response[notifyv1.GetPreferencesResponse], error) {
	topics, err := h.svc.Preferences(ctx, caller(ctx))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&notifyv1.GetPreferencesResponse{EnabledTopics: topics}), nil
}

func (h *notifyHandler) SetPreferences(ctx context.Context, req *connect.Request[notifyv1.SetPreferencesRequest]) (*connect.Response[notifyv1.SetPreferencesResponse], error) {
	res, err := h.svc.SetPreferences(ctx, caller(ctx), req.Msg.EnabledTopics)
	if err != nil {
		return nil, err
	}
	return withPosition(&notifyv1.SetPreferencesResponse{Position: res.Position.Seq}, res.Position.Seq), nil
}

func inboxLimit(limit int32) (int, error) {
	if limit == 0 {
		return 20, nil
	}
	if limit < 1 || limit > maxInboxList {
		return 0, es.Invalidf("limit", "must be between 1 and %d, got %d", maxInboxList, limit)
	}
	return int(limit), nil
}

func (h *notifyHandler) ListNotifications(ctx context.Context, req *connect.Request[notifyv1.ListNotificationsRequest]) (*connect.Response[notifyv1.ListNotificationsResponse], error) {
	p := caller(ctx)
	if err := notify.MayUse(p); err != nil {
		return nil, err
	}
	limit, err := inboxLimit(req.Msg.Limit)
	if err != nil {
		return nil, err
	}
	if err := h.rt.waitFor(ctx, h.feed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	pos := h.feed.Position()
	b := h.box.Get(p.Subject, limit)
	return connect.NewResponse(&notifyv1.ListNotificationsResponse{Notifications: b.Notifications, UnreadCount: int64(b.Unread),
		Subscriptions: int64(b.Subscriptions), Position: pos}), nil
}

func (h *notifyHandler) WatchNotifications(ctx context.Context, req *connect.Request[notifyv1.WatchNotificationsRequest], s *connect.ServerStream[notifyv1.WatchNotificationsResponse]) error {
	p := caller(ctx)
	if err := notify.MayUse(p); err != nil {
		return err
	}
	limit, err := inboxLimit(req.Msg.Limit)
	if err != nil {
		return err
	}
	first, sent := true, uint64(0)
	return live(ctx, h.rt, h.feed, 0, s, func(time.Time) []*notifyv1.WatchNotificationsResponse {
		pos := h.feed.Position()
		b := h.box.Get(p.Subject, limit)
		if !first && b.Version == sent {
			return nil
		}
		first, sent = false, b.Version
		return []*notifyv1.WatchNotificationsResponse{{Notifications: b.Notifications, UnreadCount: int64(b.Unread), Position: pos}}
	})
}

func (h *notifyHandler) MarkRead(ctx context.Context, req *connect.Request[notifyv1.MarkReadRequest]) (*connect.Response[notifyv1.MarkReadResponse], error) {
	res, err := h.svc.MarkRead(ctx, caller(ctx), req.Msg.UpToNotificationId, req.Msg.NotificationIds)
	if err != nil {
		return nil, err
	}
	return withPosition(&notifyv1.MarkReadResponse{Position: res.Position.Seq}, res.Position.Seq), nil
}
