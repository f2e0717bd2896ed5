// Package delivery is the delivery context: an order's lifecycle from
// placement by the shop system through a rider's acceptance, pickup and
// delivery to the customer's rating, or its cancellation.
//
// An order is an event-sourced aggregate (stream ev.delivery.order.<id>).
// Decide enforces the lifecycle; the Repository's optimistic concurrency
// makes racing commands see each other, so of riders racing to accept an
// order exactly one wins and the others get ErrOrderAlreadyTaken.
//
// Retries are safe: a command that asks for what already happened, by the
// same actor, succeeds with no new event (placing the same order again,
// the holder re-accepting, re-picking-up or re-delivering, cancelling a
// cancelled order). Rating is not repeated: a second rating is
// ErrOrderAlreadyRated.
package delivery

import (
	"fmt"
	"math"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
)

// Limits of command input.
const (
	MaxAmount      = 100_000_000 // KRW per order
	MaxReasonBytes = 200
	MinStars       = 1
	MaxStars       = 5
)

// Stream returns the aggregate stream of an order.
func Stream(orderID string) es.StreamID {
	return es.StreamID{Context: "delivery", Type: "order", ID: orderID}
}

// Status is where an order is in its lifecycle.
type Status int

const (
	None Status = iota // no such order
	Placed
	Accepted
	PickedUp
	Delivered
	Cancelled
)

func (s Status) String() string {
	switch s {
	case Placed:
		return "placed"
	case Accepted:
		return "accepted"
	case PickedUp:
		return "picked up"
	case Delivered:
		return "delivered"
	case Cancelled:
		return "cancelled"
	}
	return "none"
}

// LatLng is a WGS84 point in degrees.
type LatLng struct{ Lat, Lng float64 }

// Order is an order's state, folded from its events.
type Order struct {
	ID       string
	Status   Status
	StoreID  string
	Pickup   LatLng
	Dropoff  LatLng
	Amount   int64
	Zone     string
	RiderID  string // the rider holding the order, once accepted
	Stars    int32  // 0 until rated
	Reason   string // why it was cancelled
	PlacedAt time.Time
	// UpdatedAt is when the last event occurred.
	UpdatedAt time.Time
}

// Command is one of PlaceOrder, AcceptOrder, PickUpOrder, DeliverOrder,
// CancelOrder, RateOrder.
type Command interface {
	// Order returns the id of the order the command acts on.
	Order() string
	// Validate checks the command's input alone, returning an Invalid
	// error naming the field.
	Validate() error
}

// PlaceOrder is the shop system placing an order. Pickup is the store's
// location; the order's zone is the pickup's.
type PlaceOrder struct {
	OrderID string
	StoreID string
	Pickup  LatLng
	Dropoff LatLng
	Amount  int64
}

// AcceptOrder is a rider taking an order.
type AcceptOrder struct{ OrderID, RiderID string }

// PickUpOrder is the holding rider collecting the order at the store.
type PickUpOrder struct{ OrderID, RiderID string }

// DeliverOrder is the holding rider handing the order over.
type DeliverOrder struct{ OrderID, RiderID string }

// CancelOrder cancels an order that was not delivered.
type CancelOrder struct{ OrderID, Reason string }

// RateOrder is the customer rating a delivered order, 1 to 5 stars.
type RateOrder struct {
	OrderID string
	Stars   int32
}

func (c PlaceOrder) Order() string   { return c.OrderID }
func (c AcceptOrder) Order() string  { return c.OrderID }
func (c PickUpOrder) Order() string  { return c.OrderID }
func (c DeliverOrder) Order() string { return c.OrderID }
func (c CancelOrder) Order() string  { return c.OrderID }
func (c RateOrder) Order() string    { return c.OrderID }

// ValidateLatLng checks a point's ranges, naming field.lat or field.lng
// (lat or lng when field is empty).
func ValidateLatLng(field string, p LatLng) error {
	name := func(part string) string {
		if field == "" {
			return part
		}
		return field + "." + part
	}
	if math.IsNaN(p.Lat) || p.Lat < -90 || p.Lat > 90 {
		return es.Invalidf(name("lat"), "must be between -90 and 90, got %v", p.Lat)
	}
	if math.IsNaN(p.Lng) || p.Lng < -180 || p.Lng > 180 {
		return es.Invalidf(name("lng"), "must be between -180 and 180, got %v", p.Lng)
	}
	return nil
}

func (c PlaceOrder) Validate() error {
	if err := es.ValidateToken("order_id", c.OrderID); err != nil {
		return err
	}
	if err := es.ValidateToken("store_id", c.StoreID); err != nil {
		return err
	}
	if err := ValidateLatLng("pickup", c.Pickup); err != nil {
		return err
	}
	if err := ValidateLatLng("dropoff", c.Dropoff); err != nil {
		return err
	}
	if c.Amount <= 0 || c.Amount > MaxAmount {
		return es.Invalidf("amount", "must be between 1 and %d, got %d", MaxAmount, c.Amount)
	}
	return nil
}

func validateRider(orderID, riderID string) error {
	if err := es.ValidateToken("order_id", orderID); err != nil {
		return err
	}
	return es.ValidateToken("rider_id", riderID)
}

func (c AcceptOrder) Validate() error  { return validateRider(c.OrderID, c.RiderID) }
func (c PickUpOrder) Validate() error  { return validateRider(c.OrderID, c.RiderID) }
func (c DeliverOrder) Validate() error { return validateRider(c.OrderID, c.RiderID) }

func (c CancelOrder) Validate() error {
	if err := es.ValidateToken("order_id", c.OrderID); err != nil {
		return err
	}
	if len(c.Reason) > MaxReasonBytes {
		return es.Invalidf("reason", "must be at most %d bytes, got %d", MaxReasonBytes, len(c.Reason))
	}
	if !utf8.ValidString(c.Reason) {
		return es.Invalidf("reason", "must be valid UTF-8")
	}
	for i, r := range c.Reason {
		if unicode.IsControl(r) {
			return es.Invalidf("reason", "has control character %U at byte %d", r, i)
		}
	}
	return nil
}

func (c RateOrder) Validate() error {
	if err := es.ValidateToken("order_id", c.OrderID); err != nil {
		return err
	}
	if c.Stars < MinStars || c.Stars > MaxStars {
		return es.Invalidf("stars", "must be between %d and %d, got %d", MinStars, MaxStars, c.Stars)
	}
	return nil
}

// Errors of the lifecycle. Each is returned by Decide for the rule its
// name states.
var (
	ErrOrderNotFound     = &es.Error{Kind: es.NotFound, Message: "no such order"}
	ErrOrderExists       = &es.Error{Kind: es.FailedPrecondition, Message: "an order with this id exists with other details"}
	ErrOrderAlreadyTaken = &es.Error{Kind: es.FailedPrecondition, Message: "order is already taken by another rider"}
	ErrNotOrderHolder    = &es.Error{Kind: es.FailedPrecondition, Message: "order is held by another rider"}
	ErrOrderNotAccepted  = &es.Error{Kind: es.FailedPrecondition, Message: "order has not been accepted by a rider"}
	ErrOrderNotPickedUp  = &es.Error{Kind: es.FailedPrecondition, Message: "order has not been picked up"}
	ErrOrderNotDelivered = &es.Error{Kind: es.FailedPrecondition, Message: "order has not been delivered"}
	ErrOrderDelivered    = &es.Error{Kind: es.FailedPrecondition, Message: "order is already delivered"}
	ErrOrderCancelled    = &es.Error{Kind: es.FailedPrecondition, Message: "order is cancelled"}
	ErrOrderAlreadyRated = &es.Error{Kind: es.FailedPrecondition, Message: "order is already rated"}

	// ErrNotYourself is returned when a rider acts as another rider.
	ErrNotYourself = &es.Error{Kind: es.Forbidden, Message: "a rider may act only as themself"}
)

// Request is a command with who issues it and when: the input of Decide.
type Request struct {
	By      auth.Principal
	Now     time.Time
	Command Command
}

// Decider is the order aggregate's behaviour for es.Repository.
var Decider = es.Decider[Order, Request]{
	Initial: func() Order { return Order{} },
	Decide:  Decide,
	Evolve:  Evolve,
}

// Decide validates, authorizes and decides r against the order's state o.
// It returns the events to append (none when the command asks for what
// already happened, see the package doc) or an error: Invalid naming the
// field, Forbidden (a role that may not issue the command, or
// ErrNotYourself), NotFound (ErrOrderNotFound) or FailedPrecondition
// (the Err* of the lifecycle).
func Decide(o Order, r Request) ([]proto.Message, error) {
	cmd := r.Command
	if cmd == nil {
		return nil, es.Invalidf("command", "is missing")
	}
	if err := cmd.Validate(); err != nil {
		return nil, err
	}
	if err := authorize(r.By, cmd); err != nil {
		return nil, err
	}
	at := timestamppb.New(r.Now)
	if c, ok := cmd.(PlaceOrder); ok {
		if o.Status != None {
			if o.StoreID == c.StoreID && o.Pickup == c.Pickup && o.Dropoff == c.Dropoff && o.Amount == c.Amount {
				return nil, nil
			}
			return nil, ErrOrderExists
		}
		return one(&deliveryv1.OrderPlaced{
			OrderId: c.OrderID, StoreId: c.StoreID,
			Pickup:  &deliveryv1.LatLng{Lat: c.Pickup.Lat, Lng: c.Pickup.Lng},
			Dropoff: &deliveryv1.LatLng{Lat: c.Dropoff.Lat, Lng: c.Dropoff.Lng},
			Amount:  c.Amount, Zone: Zone(c.Pickup.Lat, c.Pickup.Lng), PlacedAt: at,
		})
	}
	if o.Status == None {
		return nil, ErrOrderNotFound
	}
	switch c := cmd.(type) {
	case AcceptOrder:
		switch {
		case o.Status == Cancelled:
			return nil, ErrOrderCancelled
		case o.Status == Placed:
			return one(&deliveryv1.OrderAccepted{OrderId: o.ID, RiderId: c.RiderID, AcceptedAt: at})
		case o.RiderID == c.RiderID:
			return nil, nil
		}
		return nil, ErrOrderAlreadyTaken
	case PickUpOrder:
		if err := o.heldBy(c.RiderID); err != nil {
			return nil, err
		}
		if o.Status == Accepted {
			return one(&deliveryv1.OrderPickedUp{OrderId: o.ID, RiderId: c.RiderID, PickedUpAt: at})
		}
		return nil, nil // already picked up or delivered: a retry
	case DeliverOrder:
		if err := o.heldBy(c.RiderID); err != nil {
			return nil, err
		}
		switch o.Status {
		case Accepted:
			return nil, ErrOrderNotPickedUp
		case PickedUp:
			return one(&deliveryv1.OrderDelivered{OrderId: o.ID, RiderId: c.RiderID, DeliveredAt: at})
		}
		return nil, nil // already delivered: a retry
	case CancelOrder:
		switch o.Status {
		case Cancelled:
			return nil, nil
		case Delivered:
			return nil, ErrOrderDelivered
		}
		return one(&deliveryv1.OrderCancelled{OrderId: o.ID, Reason: c.Reason, CancelledBy: r.By.String(), CancelledAt: at})
	case RateOrder:
		switch {
		case o.Status == Cancelled:
			return nil, ErrOrderCancelled
		case o.Status != Delivered:
			return nil, ErrOrderNotDelivered
		case o.Stars == c.Stars:
			return nil, nil // the same rating again: a retry
		case o.Stars != 0:
			return nil, ErrOrderAlreadyRated
		}
		return one(&deliveryv1.OrderRated{OrderId: o.ID, RiderId: o.RiderID, Stars: c.Stars, RatedAt: at})
	}
	return nil, es.Errorf(es.Internal, "unknown command %T", cmd)
}

// heldBy checks that rider holds the order and that it is under way or
// delivered.
func (o Order) heldBy(rider string) error {
	switch {
	case o.Status == Cancelled:
		return ErrOrderCancelled
	case o.Status == Placed:
		return ErrOrderNotAccepted
	case o.RiderID != rider:
		return ErrNotOrderHolder
	}
	return nil
}

// authorize: only admin or service (the shop system, customers through
// it) place, cancel and rate; a rider accepts, picks up and delivers only
// as themself, admin and service on any rider's behalf.
func authorize(p auth.Principal, cmd Command) error {
	if p.Privileged() {
		return nil
	}
	var rider string
	switch c := cmd.(type) {
	case AcceptOrder:
		rider = c.RiderID
	case PickUpOrder:
		rider = c.RiderID
	case DeliverOrder:
		rider = c.RiderID
	default:
		return es.Errorf(es.Forbidden, "role %q may not %s", p.Role, verb(cmd))
	}
	if p.Role != auth.Rider {
		return es.Errorf(es.Forbidden, "role %q may not %s", p.Role, verb(cmd))
	}
	if p.Subject != rider {
		return ErrNotYourself
	}
	return nil
}

func verb(cmd Command) string {
	switch cmd.(type) {
	case PlaceOrder:
		return "place orders"
	case AcceptOrder:
		return "accept orders"
	case PickUpOrder:
		return "pick up orders"
	case DeliverOrder:
		return "deliver orders"
	case CancelOrder:
		return "cancel orders"
	case RateOrder:
		return "rate orders"
	}
	return fmt.Sprintf("issue %T", cmd)
}

func one(e proto.Message) ([]proto.Message, error) { return []proto.Message{e}, nil }

// Evolve folds one event into the order's state.
func Evolve(o Order, e proto.Message) Order {
	switch e := e.(type) {
	case *deliveryv1.OrderPlaced:
		o = Order{
			ID: e.OrderId, Status: Placed, StoreID: e.StoreId,
			Pickup:  LatLng{e.GetPickup().GetLat(), e.GetPickup().GetLng()},
			Dropoff: LatLng{e.GetDropoff().GetLat(), e.GetDropoff().GetLng()},
			Amount:  e.Amount, Zone: e.Zone, PlacedAt: e.PlacedAt.AsTime(),
			UpdatedAt: e.PlacedAt.AsTime(),
		}
	case *deliveryv1.OrderAccepted:
		o.Status, o.RiderID, o.UpdatedAt = Accepted, e.RiderId, e.AcceptedAt.AsTime()
	case *deliveryv1.OrderPickedUp:
		o.Status, o.UpdatedAt = PickedUp, e.PickedUpAt.AsTime()
	case *deliveryv1.OrderDelivered:
		o.Status, o.UpdatedAt = Delivered, e.DeliveredAt.AsTime()
	case *deliveryv1.OrderCancelled:
		o.Status, o.Reason, o.UpdatedAt = Cancelled, e.Reason, e.CancelledAt.AsTime()
	case *deliveryv1.OrderRated:
		o.Stars, o.UpdatedAt = e.Stars, e.RatedAt.AsTime()
	}
	return o
}

// Open reports whether riders may still accept the order.
func (o Order) Open() bool { return o.Status == Placed }
