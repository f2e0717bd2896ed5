package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/webpush"
	"github.com/tideline/tideline/adapters/webpush/webpushtest"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/notify"
	"github.com/tideline/tideline/internal/poll"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/notify/v1/notifyv1connect"
)

func TestNotificationsPushedAndInboxLive(t *testing.T) {
	t.Parallel()
	ps := webpushtest.Start(t)
	keyFile := filepath.Join(t.TempDir(), "vapid.json")
	keys, err := webpush.LoadOrCreateKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, func(m *server.Main) {
		m.Config.VAPIDKeyFile = keyFile
		m.Config.WebPush.TLS = ps.TLS()
		m.Config.EgressAllowPrivate = true // the push service is on loopback
	})
	c := notifyv1connect.NewNotificationServiceClient(http.DefaultClient, s.URL)
	kim := s.Token(t, "kim", auth.Labeler)
	ctx := t.Context()

	cfg, err := c.GetPushConfig(ctx, withToken(&notifyv1.GetPushConfigRequest{}, kim))
	if err != nil || cfg.Msg.VapidPublicKey != keys.Public || cfg.Msg.Fcm {
		t.Fatalf("GetPushConfig: %v, %v; want the key file's public key, no FCM", cfg, err)
	}

	watchCtx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := c.WatchNotifications(watchCtx, withToken(&notifyv1.WatchNotificationsRequest{}, kim))
	if err != nil {
		t.Fatal(err)
	}
	updates := make(chan *notifyv1.WatchNotificationsResponse, 16)
	go func() {
		defer close(updates)
		for stream.Receive() {
			updates <- stream.Msg()
		}
	}()
	if first := <-updates; first == nil || len(first.Notifications) != 0 {
		t.Fatalf("first update %v; want the empty inbox", first)
	}

	browser := ps.Subscribe()
	sub, err := c.SubscribePush(ctx, withToken(&notifyv1.SubscribePushRequest{WebPush: &notifyv1.WebPushSubscription{
		Endpoint: browser.Endpoint, P256Dh: browser.P256dh, Auth: browser.Auth}}, kim))
	if err != nil {
		t.Fatal(err)
	}

	// A labeling reaction posts through the Go API (its own Service over
	// the same store, as another context's Module would hold).
	svc := notify.NewService(s.Store, nil)
	n := notify.Notification{ID: "alarm-2026-12-02", Topic: notify.TopicAlarmReminder, Title: "Time to wake up",
		Body: "Label 10 images to stop the alarm", Link: "https://tideline.example/missions/today"}
	res, err := svc.Post(ctx, "kim", n)
	if err != nil || res.Position.Seq == 0 {
		t.Fatalf("Post: %+v, %v", res, err)
	}
	if again, err := svc.Post(ctx, "kim", n); err != nil || again.Position.Seq != res.Position.Seq {
		t.Fatalf("Post again: %+v, %v; want nothing appended", again, err)
	}

	poll.Until(t, 10*time.Second, "the push to arrive", func() bool { return len(ps.Pushes()) > 0 })
	var payload struct{ Title, Body, URL string }
	if err := json.Unmarshal(ps.Pushes()[0].Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload.Title != n.Title || payload.Body != n.Body || payload.URL != n.Link || ps.Pushes()[0].VAPIDKey != keys.Public {
		t.Errorf("push %+v, payload %+v", ps.Pushes()[0], payload)
	}

	deadline := time.After(10 * time.Second)
	for got := false; !got; {
		select {
		case u := <-updates:
			if u == nil {
				t.Fatalf("watch ended: %v", stream.Err())
			}
			got = len(u.Notifications) == 1 && u.Notifications[0].NotificationId == n.ID && u.UnreadCount == 1
		case <-deadline:
			t.Fatal("the inbox watch did not see the notification")
		}
	}

	// Delivered once: recorded, and not pushed again.
	u, err := svc.User(ctx, "kim", 0)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the delivery to be recorded", func() bool {
		u, err = svc.User(ctx, "kim", s.Last(t))
		return err == nil && u.Delivered(n.ID, sub.Msg.SubscriptionId)
	})

	if _, err := c.MarkRead(ctx, withToken(&notifyv1.MarkReadRequest{UpToNotificationId: n.ID}, kim)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the notification to be read", func() bool {
		l, err := c.ListNotifications(ctx, withToken(&notifyv1.ListNotificationsRequest{}, kim))
		return err == nil && l.Msg.UnreadCount == 0 && len(l.Msg.Notifications) == 1 && l.Msg.Notifications[0].Read && l.Msg.Subscriptions == 1
	})

	// The browser unsubscribed: the push service answers 410, and the
	// subscription is removed.
	ps.Unsubscribe(browser)
	if _, err := svc.Post(ctx, "kim", notify.Notification{ID: "points-1", Topic: notify.TopicPoints, Title: "+10 points"}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the gone subscription to be removed", func() bool {
		l, err := c.ListNotifications(ctx, withToken(&notifyv1.ListNotificationsRequest{}, kim))
		return err == nil && l.Msg.Subscriptions == 0 && len(l.Msg.Notifications) == 2
	})
	if len(ps.Pushes()) != 1 {
		t.Errorf("%d pushes; want 1", len(ps.Pushes()))
	}

	// Each sees only their own inbox.
	lee := s.Token(t, "lee", auth.Walker)
	if l, err := c.ListNotifications(ctx, withToken(&notifyv1.ListNotificationsRequest{}, lee)); err != nil || len(l.Msg.Notifications) != 0 {
		t.Errorf("lee's inbox: %v, %v", l, err)
	}
}

func TestNotificationsBadInputAppendsNothing(t *testing.T) {
	t.Parallel()
	s := start(t)
	c := notifyv1connect.NewNotificationServiceClient(http.DefaultClient, s.URL)
	kim := s.Token(t, "kim", auth.Rider)
	ctx := t.Context()
	good := &notifyv1.WebPushSubscription{Endpoint: "https://push.example/x",
		P256Dh: "BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Auth: "AAAAAAAAAAAAAAAAAAAAAA"}
	before := s.Last(t)
	for _, c2 := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"http_endpoint", func() error {
			w := proto.CloneOf(good)
			w.Endpoint = "http://push.example/x"
			_, err := c.SubscribePush(ctx, withToken(&notifyv1.SubscribePushRequest{WebPush: w}, kim))
			return err
		}, "web_push.endpoint"},
		{"short_auth", func() error {
			w := proto.CloneOf(good)
			w.Auth = "AAAA"
			_, err := c.SubscribePush(ctx, withToken(&notifyv1.SubscribePushRequest{WebPush: w}, kim))
			return err
		}, "web_push.auth"},
		{"nothing_to_subscribe", func() error {
			_, err := c.SubscribePush(ctx, withToken(&notifyv1.SubscribePushRequest{}, kim))
			return err
		}, "web_push"},
		{"unknown_topic", func() error {
			_, err := c.SetPreferences(ctx, withToken(&notifyv1.SetPreferencesRequest{EnabledTopics: []notifyv1.Topic{99}}, kim))
			return err
		}, "enabled_topics[0]"},
		{"mark_read_nothing", func() error {
			_, err := c.MarkRead(ctx, withToken(&notifyv1.MarkReadRequest{}, kim))
			return err
		}, "up_to_notification_id"},
		{"limit_too_large", func() error {
			_, err := c.ListNotifications(ctx, withToken(&notifyv1.ListNotificationsRequest{Limit: 1000}, kim))
			return err
		}, "limit"},
	} {
		t.Run(c2.name, func(t *testing.T) {
			err := c2.call()
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), c2.field) {
				t.Errorf("err %v; want InvalidArgument naming %s", err, c2.field)
			}
		})
	}
	if after := s.Last(t); after != before {
		t.Errorf("bad input appended: last position %d → %d", before, after)
	}
	dev := s.Token(t, "bike-1", auth.Device)
	_, err := c.SubscribePush(ctx, withToken(&notifyv1.SubscribePushRequest{WebPush: good}, dev))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a device subscribing: %v; want PermissionDenied", err)
	}
	var ce *connect.Error
	if _, err := c.UnsubscribePush(ctx, withToken(&notifyv1.UnsubscribePushRequest{SubscriptionId: "wnone"}, kim)); !errors.As(err, &ce) || ce.Code() != connect.CodeNotFound {
		t.Errorf("unsubscribing an unknown subscription: %v; want NotFound", err)
	}
}
