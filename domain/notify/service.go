package notify

import (
	"context"
	"fmt"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
)

// Service runs the notifications context's commands against an event
// store. Safe for concurrent use.
type Service struct {
	users *es.Repository[User, Command]
	now   func() time.Time
}

// NewService returns a service over store. now is the clock; nil means
// time.Now.
func NewService(store es.Store, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{users: es.NewRepository(store, Decider, 0), now: now}
}

// ErrNotPerson is returned to principals that have no inbox: devices and
// services.
var ErrNotPerson = &es.Error{Kind: es.Forbidden, Message: "devices and services have no notifications"}

// MayUse returns ErrNotPerson unless p is a person (walker, rider,
// labeler, enterprise, admin).
func MayUse(p auth.Principal) error {
	if !p.Person() {
		return ErrNotPerson
	}
	return nil
}

// poster is the principal posts and deliveries are recorded as.
var poster = auth.Principal{Role: auth.Service, Subject: "notify"}

func meta(p auth.Principal, source string) es.AppendOptions {
	return es.AppendOptions{Meta: es.Metadata{Actor: p.String(), Source: source}}
}

// Post puts n in userID's inbox; the notify-push reaction then pushes it
// to their devices. Other contexts' reactions call it. It is idempotent
// by n.ID: an ID posted before (among the user's last MaxRemembered)
// posts nothing and returns the stream's version as the position. A
// topic the user turned off posts nothing and returns a zero result and
// no error. Errors: Invalid naming user_id or the Notification's field
// (id, topic, title, body, link); store errors.
func (s *Service) Post(ctx context.Context, userID string, n Notification) (es.AppendResult, error) {
	if err := es.ValidateToken("user_id", userID); err != nil {
		return es.AppendResult{}, err
	}
	if err := ValidateNotification(n); err != nil {
		return es.AppendResult{}, err
	}
	u, _, err := s.users.Get(ctx, Stream(userID))
	if err != nil {
		return es.AppendResult{}, err
	}
	if !u.Wants(n.Topic) {
		return es.AppendResult{}, nil
	}
	return s.users.Handle(ctx, Stream(userID), Post{UserID: userID, N: n, Now: s.now()}, meta(poster, "reaction"))
}

// Subscribe adds a device of p's (its Kind says which fields it has) and
// returns its id. The same device again appends nothing. Beyond
// MaxSubscriptions the oldest is replaced. Errors: Forbidden; Invalid
// naming web_push.endpoint, web_push.p256dh, web_push.auth or fcm_token.
func (s *Service) Subscribe(ctx context.Context, p auth.Principal, sub Subscription) (string, es.AppendResult, error) {
	if err := MayUse(p); err != nil {
		return "", es.AppendResult{}, err
	}
	sub, err := ValidateSubscription(sub)
	if err != nil {
		return "", es.AppendResult{}, err
	}
	res, err := s.users.Handle(ctx, Stream(p.Subject), Subscribe{UserID: p.Subject, Sub: sub, Now: s.now()}, meta(p, "api"))
	return sub.ID, res, err
}

// Unsubscribe removes p's subscription id. Errors: Forbidden; Invalid
// naming subscription_id; ErrSubscriptionNotFound.
func (s *Service) Unsubscribe(ctx context.Context, p auth.Principal, id string) (es.AppendResult, error) {
	if err := MayUse(p); err != nil {
		return es.AppendResult{}, err
	}
	if err := es.ValidateToken("subscription_id", id); err != nil {
		return es.AppendResult{}, err
	}
	return s.users.Handle(ctx, Stream(p.Subject), Unsubscribe{SubscriptionID: id,
		Reason: notifyv1.UnsubscribeReason_UNSUBSCRIBE_REASON_BY_USER}, meta(p, "api"))
}

// SetPreferences sets the topics p wants. Errors: Forbidden; Invalid
// naming enabled_topics[i].
func (s *Service) SetPreferences(ctx context.Context, p auth.Principal, topics []Topic) (es.AppendResult, error) {
	if err := MayUse(p); err != nil {
		return es.AppendResult{}, err
	}
	topics, err := ValidateTopics(topics)
	if err != nil {
		return es.AppendResult{}, err
	}
	return s.users.Handle(ctx, Stream(p.Subject), SetPreferences{UserID: p.Subject, Enabled: topics}, meta(p, "api"))
}

// Preferences returns the topics p has on.
func (s *Service) Preferences(ctx context.Context, p auth.Principal) ([]Topic, error) {
	if err := MayUse(p); err != nil {
		return nil, err
	}
	u, _, err := s.users.Get(ctx, Stream(p.Subject))
	return u.Topics(), err
}

// MarkRead marks p's notifications read: upTo and every older one, and
// ids (at most MaxReadIDs). Errors: Forbidden; Invalid naming
// up_to_notification_id or notification_ids[i]; NotFound naming them for
// an id p was not posted (or too long ago).
func (s *Service) MarkRead(ctx context.Context, p auth.Principal, upTo string, ids []string) (es.AppendResult, error) {
	if err := MayUse(p); err != nil {
		return es.AppendResult{}, err
	}
	if upTo == "" && len(ids) == 0 {
		return es.AppendResult{}, es.Invalidf("up_to_notification_id", "give it or notification_ids")
	}
	if upTo != "" {
		if err := es.ValidateToken("up_to_notification_id", upTo); err != nil {
			return es.AppendResult{}, err
		}
	}
	if len(ids) > MaxReadIDs {
		return es.AppendResult{}, es.Invalidf("notification_ids", "must be at most %d, got %d", MaxReadIDs, len(ids))
	}
	for i, id := range ids {
		if err := es.ValidateToken(fmt.Sprintf("notification_ids[%d]", i), id); err != nil {
			return es.AppendResult{}, err
		}
	}
	return s.users.Handle(ctx, Stream(p.Subject), MarkRead{UserID: p.Subject, UpTo: upTo, IDs: ids, Now: s.now()}, meta(p, "api"))
}

// User returns userID's state as the store has it at version at or
// later (es.Latest: now), for reactions: never older than a commit a
// reaction was handed.
func (s *Service) User(ctx context.Context, userID string, at uint64) (User, error) {
	if err := es.ValidateToken("user_id", userID); err != nil {
		return User{}, err
	}
	u, _, err := s.users.GetAt(ctx, Stream(userID), at)
	return u, err
}

// RecordDelivery records a delivery (or failure) of the notify-push
// reaction; one already recorded appends nothing.
func (s *Service) RecordDelivery(ctx context.Context, userID string, d RecordDelivery) error {
	_, err := s.users.Handle(ctx, Stream(userID), d, meta(poster, "reaction"))
	return err
}

// Gone removes userID's subscription id that its push service says no
// longer exists; one already removed appends nothing.
func (s *Service) Gone(ctx context.Context, userID, id string) error {
	_, err := s.users.Handle(ctx, Stream(userID), Unsubscribe{SubscriptionID: id,
		Reason: notifyv1.UnsubscribeReason_UNSUBSCRIBE_REASON_GONE}, meta(poster, "reaction"))
	return err
}
