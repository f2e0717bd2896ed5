package delivery

import (
	"context"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
)

// Service runs order commands against an event store. Safe for
// concurrent use.
type Service struct {
	repo *es.Repository[Order, Request]
	now  func() time.Time
}

// NewService returns a service over store keeping up to cacheSize recent
// orders in memory (0: the repository's default). now is the clock; nil
// means time.Now.
func NewService(store es.Store, cacheSize int, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{repo: es.NewRepository(store, Decider, cacheSize), now: now}
}

// Execute decides cmd for principal p and appends its events with
// optimistic concurrency. It returns the commit's position, or the
// order's current version when the command changed nothing (a retry).
// Errors are Decide's, Conflict (Aborted) when concurrent writers kept
// winning, or store errors. Nothing is appended on error.
func (s *Service) Execute(ctx context.Context, p auth.Principal, cmd Command) (es.AppendResult, error) {
	if cmd == nil {
		return es.AppendResult{}, es.Invalidf("command", "is missing")
	}
	if err := cmd.Validate(); err != nil { // before the stream id is built from it
		return es.AppendResult{}, err
	}
	return s.repo.Handle(ctx, Stream(cmd.Order()), Request{By: p, Now: s.now(), Command: cmd},
		es.AppendOptions{Meta: es.Metadata{Actor: p.String(), Source: "api"}})
}

// Get returns an order and its version (the position of its last commit).
// Admin and service read any order; a rider reads open orders and those
// they hold. It returns ErrOrderNotFound, Forbidden, or store errors.
func (s *Service) Get(ctx context.Context, p auth.Principal, orderID string) (Order, uint64, error) {
	if err := es.ValidateToken("order_id", orderID); err != nil {
		return Order{}, 0, err
	}
	if !p.Privileged() && p.Role != auth.Rider {
		return Order{}, 0, es.Errorf(es.Forbidden, "role %q may not read orders", p.Role)
	}
	o, version, err := s.repo.Get(ctx, Stream(orderID))
	if err != nil {
		return Order{}, 0, err
	}
	if o.Status == None {
		return Order{}, 0, ErrOrderNotFound
	}
	if !p.Privileged() && !o.Open() && o.RiderID != p.Subject {
		return Order{}, 0, es.Errorf(es.Forbidden, "a rider may read only open orders and their own")
	}
	return o, version, nil
}
