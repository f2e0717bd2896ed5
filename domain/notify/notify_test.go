package notify_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/notify"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
)

var now = time.Date(2026, 12, 2, 6, 30, 0, 0, time.UTC)

func run(t *testing.T, cmds ...notify.Command) (notify.User, []proto.Message) {
	t.Helper()
	u := notify.Decider.Initial()
	var evs []proto.Message
	for i, c := range cmds {
		var err error
		evs, err = notify.Decider.Decide(u, c)
		if err != nil {
			t.Fatalf("command %d %T: %v", i, c, err)
		}
		for _, e := range evs {
			u = notify.Decider.Evolve(u, e)
		}
	}
	return u, evs
}

func b64(n int, first byte) string {
	b := make([]byte, n)
	b[0] = first
	return base64.RawURLEncoding.EncodeToString(b)
}

func webSub(endpoint string) notify.Subscription {
	s, err := notify.ValidateSubscription(notify.Subscription{Kind: notify.WebPush, Endpoint: endpoint, P256dh: b64(65, 4), Auth: b64(16, 1)})
	if err != nil {
		panic(err)
	}
	return s
}

var (
	phone  = webSub("https://push.example/send/abc")
	sub    = notify.Subscribe{UserID: "kim", Sub: phone, Now: now}
	alarm  = notify.Post{UserID: "kim", N: notify.Notification{ID: "n1", Topic: notify.TopicAlarmReminder, Title: "Time to wake up"}, Now: now}
	points = notify.Post{UserID: "kim", N: notify.Notification{ID: "n2", Topic: notify.TopicPoints, Title: "+10 points"}, Now: now}
	only   = notify.SetPreferences{UserID: "kim", Enabled: []notify.Topic{notify.TopicPoints}}
)

func names(evs []proto.Message) string {
	var n []string
	for _, e := range evs {
		n = append(n, string(e.ProtoReflect().Descriptor().Name()))
	}
	return strings.Join(n, ",")
}

func TestDecide(t *testing.T) {
	cases := []struct {
		name string
		cmds []notify.Command
		want string // the last command's events
	}{
		{"subscribe_adds_a_device", []notify.Command{sub}, "PushSubscribed"},
		{"same_device_again_appends_nothing", []notify.Command{sub, sub}, ""},
		{"post_puts_it_in_the_inbox", []notify.Command{alarm}, "NotificationPosted"},
		{"same_id_posted_twice_posts_once", []notify.Command{alarm, alarm}, ""},
		{"all_topics_are_on_by_default", []notify.Command{points}, "NotificationPosted"},
		{"a_topic_turned_off_posts_nothing", []notify.Command{only, alarm}, ""},
		{"a_topic_left_on_posts", []notify.Command{only, points}, "NotificationPosted"},
		{"same_preferences_again_append_nothing", []notify.Command{only, only}, ""},
		{"all_topics_before_any_set_append_nothing", []notify.Command{notify.SetPreferences{UserID: "kim", Enabled: notify.Topics}}, ""},
		{"delivery_recorded", []notify.Command{sub, alarm, notify.RecordDelivery{NotificationID: "n1", SubscriptionID: phone.ID}}, "NotificationDelivered"},
		{"delivery_recorded_once", []notify.Command{sub, alarm, notify.RecordDelivery{NotificationID: "n1", SubscriptionID: phone.ID},
			notify.RecordDelivery{NotificationID: "n1", SubscriptionID: phone.ID, Failure: "late"}}, ""},
		{"failure_recorded", []notify.Command{sub, alarm, notify.RecordDelivery{NotificationID: "n1", SubscriptionID: phone.ID, Failure: "fcm not configured"}}, "NotificationDeliveryFailed"},
		{"delivery_of_an_unknown_notification_appends_nothing", []notify.Command{sub, notify.RecordDelivery{NotificationID: "n9", SubscriptionID: phone.ID}}, ""},
		{"user_unsubscribes", []notify.Command{sub, notify.Unsubscribe{SubscriptionID: phone.ID, Reason: notifyv1.UnsubscribeReason_UNSUBSCRIBE_REASON_BY_USER}}, "PushUnsubscribed"},
		{"gone_twice_appends_once", []notify.Command{sub, notify.Unsubscribe{SubscriptionID: phone.ID, Reason: notifyv1.UnsubscribeReason_UNSUBSCRIBE_REASON_GONE},
			notify.Unsubscribe{SubscriptionID: phone.ID, Reason: notifyv1.UnsubscribeReason_UNSUBSCRIBE_REASON_GONE}}, ""},
		{"mark_read_up_to", []notify.Command{alarm, points, notify.MarkRead{UserID: "kim", UpTo: "n2", Now: now}}, "NotificationsRead"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, evs := run(t, c.cmds...)
			if got := names(evs); got != c.want {
				t.Errorf("events %q; want %q", got, c.want)
			}
		})
	}
}

func TestDecideErrors(t *testing.T) {
	u, _ := run(t, sub, alarm)
	for _, c := range []struct {
		name  string
		cmd   notify.Command
		kind  es.Kind
		field string
	}{
		{"unsubscribe_unknown_by_user", notify.Unsubscribe{SubscriptionID: "w-none", Reason: notifyv1.UnsubscribeReason_UNSUBSCRIBE_REASON_BY_USER}, es.NotFound, ""},
		{"mark_read_unknown_up_to", notify.MarkRead{UserID: "kim", UpTo: "n9"}, es.NotFound, "up_to_notification_id"},
		{"mark_read_unknown_id", notify.MarkRead{UserID: "kim", IDs: []string{"n1", "n9"}}, es.NotFound, "notification_ids[1]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := notify.Decider.Decide(u, c.cmd)
			var e *es.Error
			if err == nil || es.KindOf(err) != c.kind || (c.field != "" && (!asError(err, &e) || e.Field != c.field)) {
				t.Errorf("err %v; want %v naming %q", err, c.kind, c.field)
			}
		})
	}
}

func asError(err error, e **es.Error) bool {
	var ok bool
	*e, ok = err.(*es.Error)
	return ok
}

func TestSubscriptionsAreBoundedOldestReplaced(t *testing.T) {
	var cmds []notify.Command
	for i := range notify.MaxSubscriptions + 1 {
		cmds = append(cmds, notify.Subscribe{UserID: "kim", Sub: webSub(fmt.Sprintf("https://push.example/%d", i)), Now: now})
	}
	u, evs := run(t, cmds...)
	if got := names(evs); got != "PushUnsubscribed,PushSubscribed" {
		t.Fatalf("events %q", got)
	}
	if len(u.Subscriptions) != notify.MaxSubscriptions || u.Subscriptions[0].Endpoint != "https://push.example/1" {
		t.Errorf("%d subscriptions, oldest %s", len(u.Subscriptions), u.Subscriptions[0].Endpoint)
	}
}

func TestRememberedIDsAreBounded(t *testing.T) {
	u := notify.Decider.Initial()
	for i := range notify.MaxRemembered + 5 {
		u = notify.Decider.Evolve(u, &notifyv1.NotificationPosted{UserId: "kim", NotificationId: fmt.Sprintf("n%d", i)})
	}
	if len(u.Remembered) != notify.MaxRemembered || u.Remembered[0] != "n5" || len(u.Recent) != notify.MaxTracked {
		t.Errorf("remembered %d from %s, tracked %d", len(u.Remembered), u.Remembered[0], len(u.Recent))
	}
	if evs, _ := notify.Decider.Decide(u, notify.Post{UserID: "kim", N: notify.Notification{ID: "n1004", Topic: notify.TopicPoints, Title: "x"}}); len(evs) != 0 {
		t.Error("a remembered id posted again")
	}
	if !u.Delivered("n3", "any") {
		t.Error("a notification no longer tracked is to be sent again")
	}
}

func TestEvolveLeavesEarlierStatesAlone(t *testing.T) {
	u, _ := run(t, sub, alarm)
	before := fmt.Sprint(u)
	_ = notify.Decider.Evolve(u, &notifyv1.NotificationDelivered{NotificationId: "n1", SubscriptionId: phone.ID})
	_ = notify.Decider.Evolve(u, &notifyv1.PushUnsubscribed{SubscriptionId: phone.ID})
	_ = notify.Decider.Evolve(u, &notifyv1.NotificationPosted{NotificationId: "n3"})
	if after := fmt.Sprint(u); after != before {
		t.Errorf("evolve changed the state it was given:\n%s\n%s", before, after)
	}
}

func TestValidateNotification(t *testing.T) {
	ok := notify.Notification{ID: "n1", Topic: notify.TopicDataset, Title: "Review ready", Body: "12 labels", Link: "https://tideline.example/d/1"}
	for _, c := range []struct {
		name  string
		edit  func(*notify.Notification)
		field string
	}{
		{"valid", func(*notify.Notification) {}, ""},
		{"no_id", func(n *notify.Notification) { n.ID = "" }, "id"},
		{"id_not_a_token", func(n *notify.Notification) { n.ID = "a.b" }, "id"},
		{"no_topic", func(n *notify.Notification) { n.Topic = 0 }, "topic"},
		{"no_title", func(n *notify.Notification) { n.Title = "" }, "title"},
		{"title_121_chars", func(n *notify.Notification) { n.Title = strings.Repeat("가", 121) }, "title"},
		{"title_120_chars", func(n *notify.Notification) { n.Title = strings.Repeat("가", 120) }, ""},
		{"body_too_long", func(n *notify.Notification) { n.Body = strings.Repeat("a", 1001) }, "body"},
		{"body_not_utf8", func(n *notify.Notification) { n.Body = "\xff" }, "body"},
		{"link_not_http", func(n *notify.Notification) { n.Link = "javascript:alert(1)" }, "link"},
		{"link_too_long", func(n *notify.Notification) { n.Link = "https://a.example/" + strings.Repeat("a", 2000) }, "link"},
		{"link_http", func(n *notify.Notification) { n.Link = "http://a.example/x" }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := ok
			c.edit(&n)
			err := notify.ValidateNotification(n)
			var e *es.Error
			switch {
			case c.field == "" && err != nil:
				t.Errorf("unexpected %v", err)
			case c.field != "" && (!asError(err, &e) || e.Kind != es.Invalid || e.Field != c.field):
				t.Errorf("err %v; want Invalid naming %s", err, c.field)
			}
		})
	}
}

func TestValidateSubscription(t *testing.T) {
	for _, c := range []struct {
		name  string
		s     notify.Subscription
		field string
	}{
		{"web_push", notify.Subscription{Kind: notify.WebPush, Endpoint: "https://p.example/x", P256dh: b64(65, 4), Auth: b64(16, 0)}, ""},
		{"web_push_padded", notify.Subscription{Kind: notify.WebPush, Endpoint: "https://p.example/x", P256dh: b64(65, 4) + "=", Auth: b64(16, 0) + "=="}, ""},
		{"http_endpoint", notify.Subscription{Kind: notify.WebPush, Endpoint: "http://p.example/x", P256dh: b64(65, 4), Auth: b64(16, 0)}, "web_push.endpoint"},
		{"compressed_key", notify.Subscription{Kind: notify.WebPush, Endpoint: "https://p.example/x", P256dh: b64(33, 2), Auth: b64(16, 0)}, "web_push.p256dh"},
		{"short_auth", notify.Subscription{Kind: notify.WebPush, Endpoint: "https://p.example/x", P256dh: b64(65, 4), Auth: b64(8, 0)}, "web_push.auth"},
		{"fcm", notify.Subscription{Kind: notify.FCM, Token: "dX1:APA91b-x_y"}, ""},
		{"fcm_space", notify.Subscription{Kind: notify.FCM, Token: "a b"}, "fcm_token"},
		{"nothing", notify.Subscription{}, "web_push"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := notify.ValidateSubscription(c.s)
			var e *es.Error
			switch {
			case c.field == "" && (err != nil || s.ID == ""):
				t.Errorf("unexpected %v, id %q", err, s.ID)
			case c.field != "" && (!asError(err, &e) || e.Field != c.field):
				t.Errorf("err %v; want Invalid naming %s", err, c.field)
			}
		})
	}
}
