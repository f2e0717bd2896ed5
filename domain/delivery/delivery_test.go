package delivery_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
)

var (
	now   = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	shop  = auth.Principal{Subject: "shop", Role: auth.Service}
	admin = auth.Principal{Subject: "ops", Role: auth.Admin}
	kim   = auth.Principal{Subject: "kim", Role: auth.Rider}
	lee   = auth.Principal{Subject: "lee", Role: auth.Rider}
	walk  = auth.Principal{Subject: "kim", Role: auth.Walker}

	cityHall = delivery.LatLng{Lat: 37.5663, Lng: 126.9779}
	gangnam  = delivery.LatLng{Lat: 37.4979, Lng: 127.0276}
	place    = delivery.PlaceOrder{OrderID: "o1", StoreID: "s1", Pickup: cityHall, Dropoff: gangnam, Amount: 15000}
)

// step is a command by a principal, in a history.
type step struct {
	by  auth.Principal
	cmd delivery.Command
}

// fold decides and evolves a history into a state, failing if any step
// is refused.
func fold(t *testing.T, steps ...step) delivery.Order {
	t.Helper()
	o := delivery.Decider.Initial()
	for _, s := range steps {
		evs, err := delivery.Decide(o, delivery.Request{By: s.by, Now: now, Command: s.cmd})
		if err != nil {
			t.Fatalf("history %T: %v", s.cmd, err)
		}
		for _, e := range evs {
			o = delivery.Evolve(o, e)
		}
	}
	return o
}

var (
	placed    = []step{{shop, place}}
	accepted  = append(placed[:1:1], step{kim, delivery.AcceptOrder{OrderID: "o1", RiderID: "kim"}})
	pickedUp  = append(accepted[:2:2], step{kim, delivery.PickUpOrder{OrderID: "o1", RiderID: "kim"}})
	delivered = append(pickedUp[:3:3], step{kim, delivery.DeliverOrder{OrderID: "o1", RiderID: "kim"}})
	rated     = append(delivered[:4:4], step{shop, delivery.RateOrder{OrderID: "o1", Stars: 5}})
	cancelled = append(placed[:1:1], step{shop, delivery.CancelOrder{OrderID: "o1", Reason: "out of stock"}})
)

func TestDecide(t *testing.T) {
	accept := func(r string) delivery.AcceptOrder { return delivery.AcceptOrder{OrderID: "o1", RiderID: r} }
	pickUp := func(r string) delivery.PickUpOrder { return delivery.PickUpOrder{OrderID: "o1", RiderID: r} }
	deliver := func(r string) delivery.DeliverOrder { return delivery.DeliverOrder{OrderID: "o1", RiderID: r} }
	rate := func(n int32) delivery.RateOrder { return delivery.RateOrder{OrderID: "o1", Stars: n} }
	cancel := delivery.CancelOrder{OrderID: "o1", Reason: "customer changed mind"}
	withPlace := func(f func(*delivery.PlaceOrder)) delivery.PlaceOrder { c := place; f(&c); return c }

	cases := []struct {
		name    string
		history []step
		by      auth.Principal
		cmd     delivery.Command
		want    proto.Message // nil: no event
		err     error         // a sentinel, or nil
		kind    es.Kind       // when err is nil and an error is expected
		field   string
	}{
		// placing
		{"service_places_order", nil, shop, place, &deliveryv1.OrderPlaced{}, nil, 0, ""},
		{"admin_places_order", nil, admin, place, &deliveryv1.OrderPlaced{}, nil, 0, ""},
		{"rider_cannot_place_order", nil, kim, place, nil, nil, es.Forbidden, ""},
		{"walker_cannot_place_order", nil, walk, place, nil, nil, es.Forbidden, ""},
		{"placing_same_order_again_is_a_retry", placed, shop, place, nil, nil, 0, ""},
		{"placing_other_order_with_same_id_fails", placed, shop, withPlace(func(c *delivery.PlaceOrder) { c.Amount++ }), nil, delivery.ErrOrderExists, 0, ""},
		{"order_id_must_be_a_token", nil, shop, withPlace(func(c *delivery.PlaceOrder) { c.OrderID = "a.b" }), nil, nil, es.Invalid, "order_id"},
		{"store_id_is_required", nil, shop, withPlace(func(c *delivery.PlaceOrder) { c.StoreID = "" }), nil, nil, es.Invalid, "store_id"},
		{"pickup_lat_in_range", nil, shop, withPlace(func(c *delivery.PlaceOrder) { c.Pickup.Lat = 91 }), nil, nil, es.Invalid, "pickup.lat"},
		{"dropoff_lng_in_range", nil, shop, withPlace(func(c *delivery.PlaceOrder) { c.Dropoff.Lng = -180.5 }), nil, nil, es.Invalid, "dropoff.lng"},
		{"amount_must_be_positive", nil, shop, withPlace(func(c *delivery.PlaceOrder) { c.Amount = 0 }), nil, nil, es.Invalid, "amount"},
		{"amount_is_bounded", nil, shop, withPlace(func(c *delivery.PlaceOrder) { c.Amount = delivery.MaxAmount + 1 }), nil, nil, es.Invalid, "amount"},
		// accepting
		{"rider_accepts_open_order", placed, kim, accept("kim"), &deliveryv1.OrderAccepted{}, nil, 0, ""},
		{"admin_assigns_a_rider", placed, admin, accept("lee"), &deliveryv1.OrderAccepted{}, nil, 0, ""},
		{"rider_cannot_accept_as_someone_else", placed, kim, accept("lee"), nil, delivery.ErrNotYourself, 0, ""},
		{"walker_cannot_accept", placed, walk, accept("kim"), nil, nil, es.Forbidden, ""},
		{"rider_cannot_accept_taken_order", accepted, lee, accept("lee"), nil, delivery.ErrOrderAlreadyTaken, 0, ""},
		{"holder_reaccepting_is_a_retry", accepted, kim, accept("kim"), nil, nil, 0, ""},
		{"holder_reaccepting_after_pickup_is_a_retry", pickedUp, kim, accept("kim"), nil, nil, 0, ""},
		{"cannot_accept_cancelled_order", cancelled, kim, accept("kim"), nil, delivery.ErrOrderCancelled, 0, ""},
		{"cannot_accept_unknown_order", nil, kim, accept("kim"), nil, delivery.ErrOrderNotFound, 0, ""},
		{"rider_id_must_be_a_token", placed, admin, accept("k m"), nil, nil, es.Invalid, "rider_id"},
		// picking up and delivering
		{"holder_picks_up", accepted, kim, pickUp("kim"), &deliveryv1.OrderPickedUp{}, nil, 0, ""},
		{"cannot_pick_up_before_accept", placed, kim, pickUp("kim"), nil, delivery.ErrOrderNotAccepted, 0, ""},
		{"other_rider_cannot_pick_up", accepted, lee, pickUp("lee"), nil, delivery.ErrNotOrderHolder, 0, ""},
		{"repeated_pickup_is_a_retry", pickedUp, kim, pickUp("kim"), nil, nil, 0, ""},
		{"holder_delivers", pickedUp, kim, deliver("kim"), &deliveryv1.OrderDelivered{}, nil, 0, ""},
		{"cannot_deliver_before_pickup", accepted, kim, deliver("kim"), nil, delivery.ErrOrderNotPickedUp, 0, ""},
		{"cannot_deliver_before_accept", placed, kim, deliver("kim"), nil, delivery.ErrOrderNotAccepted, 0, ""},
		{"other_rider_cannot_deliver", pickedUp, lee, deliver("lee"), nil, delivery.ErrNotOrderHolder, 0, ""},
		{"repeated_delivery_is_a_retry", delivered, kim, deliver("kim"), nil, nil, 0, ""},
		{"cannot_pick_up_cancelled_order", cancelled, kim, pickUp("kim"), nil, delivery.ErrOrderCancelled, 0, ""},
		// cancelling
		{"service_cancels_open_order", placed, shop, cancel, &deliveryv1.OrderCancelled{}, nil, 0, ""},
		{"service_cancels_order_under_way", pickedUp, shop, cancel, &deliveryv1.OrderCancelled{}, nil, 0, ""},
		{"rider_cannot_cancel", accepted, kim, cancel, nil, nil, es.Forbidden, ""},
		{"cannot_cancel_delivered_order", delivered, shop, cancel, nil, delivery.ErrOrderDelivered, 0, ""},
		{"repeated_cancel_is_a_retry", cancelled, shop, cancel, nil, nil, 0, ""},
		{"reason_is_bounded", placed, shop, delivery.CancelOrder{OrderID: "o1", Reason: strings.Repeat("x", 201)}, nil, nil, es.Invalid, "reason"},
		{"reason_has_no_control_characters", placed, shop, delivery.CancelOrder{OrderID: "o1", Reason: "out\nof stock"}, nil, nil, es.Invalid, "reason"},
		// rating
		{"customer_rates_through_service", delivered, shop, rate(4), &deliveryv1.OrderRated{}, nil, 0, ""},
		{"rider_cannot_rate", delivered, kim, rate(5), nil, nil, es.Forbidden, ""},
		{"rating_needs_delivery", pickedUp, shop, rate(5), nil, delivery.ErrOrderNotDelivered, 0, ""},
		{"cannot_rate_cancelled_order", cancelled, shop, rate(5), nil, delivery.ErrOrderCancelled, 0, ""},
		{"cannot_rate_twice", rated, shop, rate(4), nil, delivery.ErrOrderAlreadyRated, 0, ""},
		{"same_rating_again_is_a_retry", rated, shop, rate(5), nil, nil, 0, ""},
		{"stars_at_least_one", delivered, shop, rate(0), nil, nil, es.Invalid, "stars"},
		{"stars_at_most_five", delivered, shop, rate(6), nil, nil, es.Invalid, "stars"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := fold(t, tc.history...)
			evs, err := delivery.Decide(o, delivery.Request{By: tc.by, Now: now, Command: tc.cmd})
			wantErr := tc.err != nil || tc.kind != 0
			switch {
			case !wantErr && err != nil:
				t.Fatalf("refused: %v", err)
			case wantErr && err == nil:
				t.Fatalf("accepted with %v, want an error", evs)
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("err = %v, want %v", err, tc.err)
			case tc.kind != 0 && es.KindOf(err) != tc.kind:
				t.Fatalf("kind = %v (%v), want %v", es.KindOf(err), err, tc.kind)
			}
			if tc.field != "" {
				var e *es.Error
				if !errors.As(err, &e) || e.Field != tc.field {
					t.Fatalf("err %v does not name field %q", err, tc.field)
				}
			}
			if wantErr || tc.want == nil {
				if len(evs) != 0 {
					t.Fatalf("events = %v, want none", evs)
				}
				return
			}
			if len(evs) != 1 || evs[0].ProtoReflect().Descriptor() != tc.want.ProtoReflect().Descriptor() {
				t.Fatalf("events = %v, want one %T", evs, tc.want)
			}
		})
	}
}

func TestLifecycleState(t *testing.T) {
	o := fold(t, rated...)
	if o.Status != delivery.Delivered || o.RiderID != "kim" || o.Stars != 5 || o.Amount != 15000 ||
		o.Zone != delivery.Zone(cityHall.Lat, cityHall.Lng) || !o.PlacedAt.Equal(now) {
		t.Fatalf("state after lifecycle = %+v", o)
	}
	if c := fold(t, cancelled...); c.Status != delivery.Cancelled || c.Reason != "out of stock" || c.Open() {
		t.Fatalf("cancelled state = %+v", c)
	}
}

func TestPlacedEventCarriesZoneAndTime(t *testing.T) {
	evs, err := delivery.Decide(delivery.Order{}, delivery.Request{By: shop, Now: now, Command: place})
	if err != nil {
		t.Fatal(err)
	}
	p := evs[0].(*deliveryv1.OrderPlaced)
	if p.Zone != "wydm9q" || !p.PlacedAt.AsTime().Equal(now) || p.Pickup.Lat != cityHall.Lat {
		t.Fatalf("placed = %v", p)
	}
}

func TestZone(t *testing.T) {
	cases := []struct {
		name     string
		lat, lng float64
		want     string
	}{
		{"wikipedia_example", 57.64911, 10.40744, "u4pruy"},
		{"seoul_city_hall", 37.5663, 126.9779, "wydm9q"},
		{"origin", 0, 0, "s00000"},
		{"south_west_corner", -90, -180, "000000"},
		{"north_east_corner", 90, 180, "zzzzzz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := delivery.Zone(tc.lat, tc.lng); got != tc.want {
				t.Fatalf("Zone(%v, %v) = %q, want %q", tc.lat, tc.lng, got, tc.want)
			}
			if err := es.ValidateToken("zone", delivery.Zone(tc.lat, tc.lng)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDistance(t *testing.T) {
	// Seoul City Hall to Gangnam station: about 8.8 km.
	if d := delivery.DistanceM(cityHall.Lat, cityHall.Lng, gangnam.Lat, gangnam.Lng); d < 8700 || d > 8900 {
		t.Fatalf("distance = %.0f m", d)
	}
	// One degree of latitude is about 111.2 km.
	if d := delivery.DistanceM(0, 0, 1, 0); d < 111100 || d > 111300 {
		t.Fatalf("1° = %.0f m", d)
	}
}
