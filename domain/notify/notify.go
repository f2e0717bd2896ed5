// Package notify is the notifications context: each person's in-app
// inbox and the devices their notifications are pushed to (browsers
// through Web Push, apps through Firebase Cloud Messaging). Other
// contexts' reactions post notifications with Service.Post; a reaction
// of this context pushes each to the user's subscriptions.
//
// A user's notifications, subscriptions and topic preferences are one
// aggregate, on the stream ev.notify.user.<user_id>. Posting is
// idempotent by the notification's id (the user's state remembers the
// last MaxRemembered ids), so a poster's reaction that runs twice posts
// once; a notification of a topic the user turned off is not posted.
package notify

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
)

// Limits of input and of a user's state.
const (
	MaxTitle         = 120  // characters
	MaxBody          = 1000 // characters
	MaxLink          = 2000 // bytes
	MaxEndpoint      = 2000 // bytes of a Web Push endpoint URL
	MaxToken         = 4096 // bytes of an FCM registration token
	MaxSubscriptions = 20   // per user; a new one beyond replaces the oldest
	MaxRemembered    = 1000 // posted ids a user's state remembers, for idempotency
	MaxTracked       = 100  // latest notifications whose deliveries the state tracks
	MaxReadIDs       = 100  // ids in one MarkRead
)

// Topic is what a notification is about.
type Topic = notifyv1.Topic

// The topics.
const (
	TopicAlarmReminder = notifyv1.Topic_TOPIC_ALARM_REMINDER
	TopicPoints        = notifyv1.Topic_TOPIC_POINTS
	TopicRaffleResult  = notifyv1.Topic_TOPIC_RAFFLE_RESULT
	TopicDataset       = notifyv1.Topic_TOPIC_DATASET
)

// Topics are every topic, in order; a user has all of them on until they
// set preferences.
var Topics = []Topic{TopicAlarmReminder, TopicPoints, TopicRaffleResult, TopicDataset}

// Kind is a subscription's push channel.
type Kind = notifyv1.PushKind

// The push channels.
const (
	WebPush = notifyv1.PushKind_PUSH_KIND_WEB_PUSH
	FCM     = notifyv1.PushKind_PUSH_KIND_FCM
)

// Stream returns the stream of a user's notifications.
func Stream(userID string) es.StreamID {
	return es.StreamID{Context: "notify", Type: "user", ID: userID}
}

// Notification is what a poster sends a user. ID is the poster's, unique
// per user (e.g. derived with es.DigestID from what the notification is
// about): posting an ID again posts nothing. Link is an http(s) URL or
// empty.
type Notification struct {
	ID, Title, Body, Link string
	Topic                 Topic
}

// Subscription is a device notifications are pushed to.
type Subscription struct {
	ID   string
	Kind Kind
	// Endpoint, P256dh and Auth are a browser's PushSubscription (WebPush).
	Endpoint, P256dh, Auth string
	// Token is an FCM registration token (FCM).
	Token string
}

// SubscriptionID is the id of a subscription: derived from its endpoint
// or token, so the same device subscribed again is the same one.
func SubscriptionID(kind Kind, endpointOrToken string) string {
	if kind == FCM {
		return es.DigestID("f", endpointOrToken)
	}
	return es.DigestID("w", endpointOrToken)
}

// Posted is a recent notification and the subscriptions it was delivered
// to, or failed to be delivered to.
type Posted struct {
	ID   string
	Done []string // subscription ids
}

// User is a user's notification state, folded from their stream.
type User struct {
	ID            string
	Subscriptions []Subscription // oldest first
	// PrefsSet is false until the user sets preferences: every topic is on.
	PrefsSet bool
	Enabled  []Topic // sorted
	// Remembered are the last MaxRemembered posted ids, oldest first.
	Remembered []string
	// Recent are the last MaxTracked posted notifications, oldest first.
	Recent []Posted
}

// Wants reports whether u has topic on.
func (u User) Wants(t Topic) bool { return !u.PrefsSet || slices.Contains(u.Enabled, t) }

// Topics returns the topics u has on.
func (u User) Topics() []Topic {
	if !u.PrefsSet {
		return slices.Clone(Topics)
	}
	return slices.Clone(u.Enabled)
}

// Subscription returns u's subscription id.
func (u User) Subscription(id string) (Subscription, bool) {
	i := slices.IndexFunc(u.Subscriptions, func(s Subscription) bool { return s.ID == id })
	if i < 0 {
		return Subscription{}, false
	}
	return u.Subscriptions[i], true
}

// Delivered reports whether notification id was already delivered (or
// failed for good) to subscription sub, or is too old to be tracked.
func (u User) Delivered(id, sub string) bool {
	i := slices.IndexFunc(u.Recent, func(p Posted) bool { return p.ID == id })
	return i < 0 || slices.Contains(u.Recent[i].Done, sub)
}

// Command is one of Subscribe, Unsubscribe, SetPreferences, Post,
// RecordDelivery, MarkRead.
type Command interface{ isCommand() }

// Subscribe adds a subscription (validated by ValidateSubscription).
type Subscribe struct {
	UserID string
	Sub    Subscription
	Now    time.Time
}

// Unsubscribe removes a subscription.
type Unsubscribe struct {
	SubscriptionID string
	Reason         notifyv1.UnsubscribeReason
}

// SetPreferences sets the topics on (validated by ValidateTopics).
type SetPreferences struct {
	UserID  string
	Enabled []Topic
}

// Post posts a notification (validated by ValidateNotification).
type Post struct {
	UserID string
	N      Notification
	Now    time.Time
}

// RecordDelivery records that a notification was delivered to a
// subscription, or, with a Failure, was not and will not be.
type RecordDelivery struct {
	NotificationID, SubscriptionID string
	Failure                        string
}

// MarkRead marks notifications read: UpTo and every older one, and IDs.
type MarkRead struct {
	UserID string
	UpTo   string
	IDs    []string
	Now    time.Time
}

func (Subscribe) isCommand()      {}
func (Unsubscribe) isCommand()    {}
func (SetPreferences) isCommand() {}
func (Post) isCommand()           {}
func (RecordDelivery) isCommand() {}
func (MarkRead) isCommand()       {}

// Decider is the user aggregate.
var Decider = es.Decider[User, Command]{
	Initial: func() User { return User{} },
	Decide:  decide,
	Evolve:  evolve,
}

// ErrSubscriptionNotFound is returned for a subscription the user does
// not have.
var ErrSubscriptionNotFound = &es.Error{Kind: es.NotFound, Message: "no such subscription"}

func notificationNotFound(field string) error {
	return &es.Error{Kind: es.NotFound, Field: field, Message: "no such notification (or too old to mark)"}
}

func decide(u User, cmd Command) ([]proto.Message, error) {
	switch c := cmd.(type) {
	case Subscribe:
		if _, ok := u.Subscription(c.Sub.ID); ok {
			return nil, nil
		}
		var evs []proto.Message
		if len(u.Subscriptions) >= MaxSubscriptions {
			evs = append(evs, &notifyv1.PushUnsubscribed{UserId: c.UserID, SubscriptionId: u.Subscriptions[0].ID,
				Reason: notifyv1.UnsubscribeReason_UNSUBSCRIBE_REASON_REPLACED})
		}
		s := c.Sub
		return append(evs, &notifyv1.PushSubscribed{UserId: c.UserID, SubscriptionId: s.ID, Kind: s.Kind,
			Endpoint: s.Endpoint, P256Dh: s.P256dh, Auth: s.Auth, Token: s.Token, SubscribedAt: timestamppb.New(c.Now)}), nil
	case Unsubscribe:
		if _, ok := u.Subscription(c.SubscriptionID); !ok {
			if c.Reason == notifyv1.UnsubscribeReason_UNSUBSCRIBE_REASON_BY_USER {
				return nil, ErrSubscriptionNotFound
			}
			return nil, nil
		}
		return []proto.Message{&notifyv1.PushUnsubscribed{UserId: u.ID, SubscriptionId: c.SubscriptionID, Reason: c.Reason}}, nil
	case SetPreferences:
		if slices.Equal(u.Topics(), c.Enabled) {
			return nil, nil
		}
		return []proto.Message{&notifyv1.PreferencesSet{UserId: c.UserID, EnabledTopics: c.Enabled}}, nil
	case Post:
		if slices.Contains(u.Remembered, c.N.ID) || !u.Wants(c.N.Topic) {
			return nil, nil
		}
		n := c.N
		return []proto.Message{&notifyv1.NotificationPosted{UserId: c.UserID, NotificationId: n.ID, Topic: n.Topic,
			Title: n.Title, Body: n.Body, Link: n.Link, PostedAt: timestamppb.New(c.Now)}}, nil
	case RecordDelivery:
		if u.Delivered(c.NotificationID, c.SubscriptionID) {
			return nil, nil
		}
		if c.Failure != "" {
			return []proto.Message{&notifyv1.NotificationDeliveryFailed{UserId: u.ID, NotificationId: c.NotificationID,
				SubscriptionId: c.SubscriptionID, Reason: es.Truncate(c.Failure, 500)}}, nil
		}
		return []proto.Message{&notifyv1.NotificationDelivered{UserId: u.ID, NotificationId: c.NotificationID, SubscriptionId: c.SubscriptionID}}, nil
	case MarkRead:
		if c.UpTo != "" && !slices.Contains(u.Remembered, c.UpTo) {
			return nil, notificationNotFound("up_to_notification_id")
		}
		for i, id := range c.IDs {
			if !slices.Contains(u.Remembered, id) {
				return nil, notificationNotFound(fmt.Sprintf("notification_ids[%d]", i))
			}
		}
		return []proto.Message{&notifyv1.NotificationsRead{UserId: c.UserID, UpToNotificationId: c.UpTo,
			NotificationIds: c.IDs, ReadAt: timestamppb.New(c.Now)}}, nil
	}
	return nil, fmt.Errorf("notify: unknown command %T", cmd)
}

// evolve never changes a slice it was given (states are shared by
// readers of the repository's cache): it builds new ones.
func evolve(u User, ev proto.Message) User {
	switch e := ev.(type) {
	case *notifyv1.PushSubscribed:
		u.ID = e.UserId
		u.Subscriptions = append(slices.Clip(u.Subscriptions), Subscription{ID: e.SubscriptionId, Kind: e.Kind,
			Endpoint: e.Endpoint, P256dh: e.P256Dh, Auth: e.Auth, Token: e.Token})
	case *notifyv1.PushUnsubscribed:
		u.Subscriptions = slices.DeleteFunc(slices.Clone(u.Subscriptions), func(s Subscription) bool { return s.ID == e.SubscriptionId })
	case *notifyv1.PreferencesSet:
		u.ID, u.PrefsSet, u.Enabled = e.UserId, true, e.EnabledTopics
	case *notifyv1.NotificationPosted:
		u.ID = e.UserId
		u.Remembered = appendBounded(u.Remembered, e.NotificationId, MaxRemembered)
		u.Recent = appendBounded(u.Recent, Posted{ID: e.NotificationId}, MaxTracked)
	case *notifyv1.NotificationDelivered:
		u.Recent = done(u.Recent, e.NotificationId, e.SubscriptionId)
	case *notifyv1.NotificationDeliveryFailed:
		u.Recent = done(u.Recent, e.NotificationId, e.SubscriptionId)
	}
	return u
}

// appendBounded returns a new slice of s's last max-1 elements and v.
func appendBounded[T any](s []T, v T, max int) []T {
	s = s[len(s)-min(len(s), max-1):]
	out := make([]T, len(s), len(s)+1)
	copy(out, s)
	return append(out, v)
}

func done(recent []Posted, id, sub string) []Posted {
	i := slices.IndexFunc(recent, func(p Posted) bool { return p.ID == id })
	if i < 0 {
		return recent
	}
	out := slices.Clone(recent)
	out[i].Done = append(slices.Clip(out[i].Done), sub)
	return out
}

// ValidateNotification checks a notification: a token id, a known topic,
// a title of 1..MaxTitle characters, a body of at most MaxBody, and a
// link that is empty or an http(s) URL of at most MaxLink bytes. Field
// names are the Notification's, lower-case.
func ValidateNotification(n Notification) error {
	if err := es.ValidateToken("id", n.ID); err != nil {
		return err
	}
	if !slices.Contains(Topics, n.Topic) {
		return es.Invalidf("topic", "must be one of %v, got %v", Topics, n.Topic)
	}
	if err := validText("title", n.Title, 1, MaxTitle); err != nil {
		return err
	}
	if err := validText("body", n.Body, 0, MaxBody); err != nil {
		return err
	}
	if n.Link != "" {
		if len(n.Link) > MaxLink {
			return es.Invalidf("link", "must be at most %d bytes, got %d", MaxLink, len(n.Link))
		}
		if err := validURL("link", n.Link, "http", "https"); err != nil {
			return err
		}
	}
	return nil
}

func validText(field, s string, minLen, maxLen int) error {
	if !utf8.ValidString(s) {
		return es.Invalidf(field, "must be UTF-8")
	}
	if n := utf8.RuneCountInString(s); n < minLen || n > maxLen {
		return es.Invalidf(field, "must be %d to %d characters, got %d", minLen, maxLen, n)
	}
	return nil
}

func validURL(field, s string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" || u.User != nil {
		return es.Invalidf(field, "must be an %s URL like %s://example.com/...", strings.Join(schemes, " or "), schemes[len(schemes)-1])
	}
	return nil
}

// ValidateSubscription checks a subscription of its Kind and sets its ID.
// A Web Push one has an https endpoint of at most MaxEndpoint bytes, a
// p256dh that is an uncompressed P-256 point and an auth secret of 16
// bytes, both base64url; an FCM one a token of 1..MaxToken printable
// ASCII characters. Field names are the API's: web_push.endpoint,
// web_push.p256dh, web_push.auth, fcm_token.
func ValidateSubscription(s Subscription) (Subscription, error) {
	switch s.Kind {
	case WebPush:
		if s.Endpoint == "" || len(s.Endpoint) > MaxEndpoint {
			return s, es.Invalidf("web_push.endpoint", "must be 1 to %d bytes, got %d", MaxEndpoint, len(s.Endpoint))
		}
		if err := validURL("web_push.endpoint", s.Endpoint, "https"); err != nil {
			return s, err
		}
		if k, err := unbase64(s.P256dh); err != nil || len(k) != 65 || k[0] != 4 {
			return s, es.Invalidf("web_push.p256dh", "must be an uncompressed P-256 public key (65 bytes), base64url")
		}
		if a, err := unbase64(s.Auth); err != nil || len(a) != 16 {
			return s, es.Invalidf("web_push.auth", "must be a 16-byte secret, base64url")
		}
		s.Token = ""
		s.ID = SubscriptionID(WebPush, s.Endpoint)
	case FCM:
		if s.Token == "" || len(s.Token) > MaxToken {
			return s, es.Invalidf("fcm_token", "must be 1 to %d bytes, got %d", MaxToken, len(s.Token))
		}
		for i := 0; i < len(s.Token); i++ {
			if c := s.Token[i]; c <= ' ' || c > '~' {
				return s, es.Invalidf("fcm_token", "has character %q at byte %d; want printable ASCII", c, i)
			}
		}
		s.Endpoint, s.P256dh, s.Auth = "", "", ""
		s.ID = SubscriptionID(FCM, s.Token)
	default:
		return s, es.Invalidf("web_push", "give a web push subscription or an fcm_token")
	}
	return s, nil
}

// unbase64 decodes base64url with or without padding (browsers give it
// without).
func unbase64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// ValidateTopics checks topics and returns them sorted, without repeats.
func ValidateTopics(topics []Topic) ([]Topic, error) {
	out := make([]Topic, 0, len(topics))
	for i, t := range topics {
		if !slices.Contains(Topics, t) {
			return nil, es.Invalidf(fmt.Sprintf("enabled_topics[%d]", i), "must be one of %v, got %v", Topics, t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}
