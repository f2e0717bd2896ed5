package inbox_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/notify"
	"github.com/tideline/tideline/projections/inbox"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
)

var t0 = time.Date(2026, 12, 2, 6, 30, 0, 0, time.UTC)

func apply(m *inbox.Model, seq uint64, d proto.Message) {
	m.Apply(es.Event{Data: d, Position: es.Position{Seq: seq}, OccurredAt: t0})
}

func posted(user, id string) *notifyv1.NotificationPosted {
	return &notifyv1.NotificationPosted{UserId: user, NotificationId: id, Topic: notify.TopicPoints, Title: "title " + id, PostedAt: timestamppb.New(t0)}
}

func TestInbox(t *testing.T) {
	m := inbox.New()
	apply(m, 1, &notifyv1.PushSubscribed{UserId: "kim", SubscriptionId: "w1"})
	apply(m, 2, &notifyv1.PushSubscribed{UserId: "kim", SubscriptionId: "w2"})
	apply(m, 3, &notifyv1.PushUnsubscribed{UserId: "kim", SubscriptionId: "w1"})
	for i := range 5 {
		apply(m, uint64(10+i), posted("kim", fmt.Sprintf("n%d", i)))
	}
	apply(m, 20, posted("lee", "n0"))
	apply(m, 21, &notifyv1.NotificationsRead{UserId: "kim", UpToNotificationId: "n1", NotificationIds: []string{"n3"}})
	apply(m, 22, &notifyv1.PreferencesSet{UserId: "kim", EnabledTopics: []notify.Topic{notify.TopicPoints}})
	got := m.Get("kim", 3)
	if got.Unread != 2 || got.Subscriptions != 1 || got.Version != 22 || len(got.Topics) != 1 || len(got.Notifications) != 3 {
		t.Fatalf("inbox %+v", got)
	}
	if got.Notifications[0].NotificationId != "n4" || got.Notifications[0].Read || !got.Notifications[1].Read {
		t.Errorf("newest first, n3 read: %v", got.Notifications)
	}
	if lee := m.Get("lee", 10); lee.Unread != 1 || len(lee.Topics) != len(notify.Topics) {
		t.Errorf("lee's inbox %+v", lee)
	}
	if none := m.Get("nobody", 10); none.Version != 0 || len(none.Notifications) != 0 {
		t.Errorf("an unknown user's inbox %+v", none)
	}

	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := inbox.New()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if r.Position() != 22 || fmt.Sprint(r.Get("kim", 10)) != fmt.Sprint(m.Get("kim", 10)) {
		t.Errorf("restored %+v\nwant %+v", r.Get("kim", 10), m.Get("kim", 10))
	}
}

func TestInboxIsBounded(t *testing.T) {
	m := inbox.New()
	for i := range inbox.MaxPerUser + 20 {
		apply(m, uint64(i+1), posted("kim", fmt.Sprintf("n%d", i)))
	}
	got := m.Get("kim", 1000)
	if len(got.Notifications) != inbox.MaxPerUser || got.Unread != inbox.MaxPerUser || got.Notifications[inbox.MaxPerUser-1].NotificationId != "n20" {
		t.Errorf("%d kept, %d unread, oldest %s", len(got.Notifications), got.Unread, got.Notifications[len(got.Notifications)-1].NotificationId)
	}
}
