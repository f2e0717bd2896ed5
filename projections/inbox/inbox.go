// Package inbox is the notifications read model: each user's latest
// MaxPerUser notifications (newest first, read or not), their unread
// count among those, how many push subscriptions they have, and their
// topic preferences. Older notifications leave the model (they stay in
// the event store).
package inbox

import (
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/notify"
	"github.com/tideline/tideline/projections"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
)

// Name is the projection's stable name.
const Name = "inbox"

// MaxPerUser bounds the notifications kept per user.
const MaxPerUser = 100

// Model is users' inboxes. Safe for queries concurrent with Apply.
type Model struct {
	mu    sync.RWMutex
	users map[string]*notifyv1.Inbox
	pos   uint64
}

var (
	_ projections.Projection = (*Model)(nil)
	_ projections.Scoped     = (*Model)(nil)
	_ projections.Selective  = (*Model)(nil)
)

// New returns an empty model.
func New() *Model {
	m := &Model{}
	m.Reset()
	return m
}

func (m *Model) Name() string { return Name }
func (m *Model) Version() int { return 1 }

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.notify.user.>"} }

// EventTypes lists the events the model reads.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*notifyv1.PushSubscribed)(nil), (*notifyv1.PushUnsubscribed)(nil),
		(*notifyv1.PreferencesSet)(nil), (*notifyv1.NotificationPosted)(nil), (*notifyv1.NotificationsRead)(nil))
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users, m.pos = map[string]*notifyv1.Inbox{}, 0
}

// Position is the last applied position.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

func (m *Model) user(id string) *notifyv1.Inbox {
	u := m.users[id]
	if u == nil {
		u = &notifyv1.Inbox{UserId: id}
		m.users[id] = u
	}
	return u
}

// Apply folds e.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	var u *notifyv1.Inbox
	switch d := e.Data.(type) {
	case *notifyv1.PushSubscribed:
		u = m.user(d.UserId)
		if !slices.Contains(u.SubscriptionIds, d.SubscriptionId) {
			u.SubscriptionIds = append(u.SubscriptionIds, d.SubscriptionId)
		}
	case *notifyv1.PushUnsubscribed:
		u = m.user(d.UserId)
		u.SubscriptionIds = slices.DeleteFunc(u.SubscriptionIds, func(s string) bool { return s == d.SubscriptionId })
	case *notifyv1.PreferencesSet:
		u = m.user(d.UserId)
		u.PreferencesSet, u.EnabledTopics = true, d.EnabledTopics
	case *notifyv1.NotificationPosted:
		u = m.user(d.UserId)
		u.Notifications = append(u.Notifications, &notifyv1.Notification{NotificationId: d.NotificationId, Topic: d.Topic,
			Title: d.Title, Body: d.Body, Link: d.Link, PostedAt: d.PostedAt})
		if len(u.Notifications) > MaxPerUser {
			u.Notifications = slices.Delete(u.Notifications, 0, len(u.Notifications)-MaxPerUser)
		}
	case *notifyv1.NotificationsRead:
		u = m.user(d.UserId)
		upTo := slices.IndexFunc(u.Notifications, func(n *notifyv1.Notification) bool { return n.NotificationId == d.UpToNotificationId })
		for i, n := range u.Notifications {
			if i <= upTo || slices.Contains(d.NotificationIds, n.NotificationId) {
				n.Read = true
			}
		}
	default:
		return
	}
	u.Version = e.Position.Seq
}

// Inbox is a user's inbox.
type Inbox struct {
	Notifications []*notifyv1.Notification // newest first
	Unread        int
	Subscriptions int
	Topics        []notify.Topic // on
	Version       uint64         // the position of its last change; 0: none yet
}

// Get returns user's inbox with its latest limit notifications.
func (m *Model) Get(user string, limit int) Inbox {
	m.mu.RLock()
	defer m.mu.RUnlock()
	u := m.users[user]
	if u == nil {
		return Inbox{Topics: slices.Clone(notify.Topics)}
	}
	out := Inbox{Subscriptions: len(u.SubscriptionIds), Topics: slices.Clone(u.EnabledTopics), Version: u.Version}
	if !u.PreferencesSet {
		out.Topics = slices.Clone(notify.Topics)
	}
	for i := len(u.Notifications) - 1; i >= 0; i-- {
		n := u.Notifications[i]
		if !n.Read {
			out.Unread++
		}
		if len(out.Notifications) < limit {
			out.Notifications = append(out.Notifications, proto.CloneOf(n))
		}
	}
	return out
}

var framed = projections.Framed{Magic: "tlinbox1"}

// Snapshot serializes the model.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]string, 0, len(m.users))
	for id := range m.users {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	msgs := make([]proto.Message, len(ids))
	for i, id := range ids {
		msgs[i] = m.users[id]
	}
	return framed.Marshal(m.pos, msgs)
}

// Restore replaces the model with a snapshot's.
func (m *Model) Restore(data []byte) error {
	users := map[string]*notifyv1.Inbox{}
	pos, err := framed.Unmarshal(data, func() proto.Message { return new(notifyv1.Inbox) }, func(msg proto.Message) error {
		u := msg.(*notifyv1.Inbox)
		users[u.UserId] = u
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users, m.pos = users, pos
	return nil
}
