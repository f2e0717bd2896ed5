package api_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/delivery"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
)

var (
	cityHall = &deliveryv1.LatLng{Lat: 37.5663, Lng: 126.9779}
	gangnam  = &deliveryv1.LatLng{Lat: 37.4979, Lng: 127.0276}
)

func placeRequest(id string) *deliveryv1.PlaceOrderRequest {
	return &deliveryv1.PlaceOrderRequest{OrderId: id, StoreId: "store-1", Pickup: cityHall, Dropoff: gangnam, Amount: 18000}
}

func TestDeliveryLifecycleOverEveryProtocol(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := deliveryv1connect.NewDeliveryServiceClient(h2c, f.URL, p.opts...)
			shop := f.Token(t, "shop", auth.Service)
			rider := "rider-" + p.name
			rtok := f.Token(t, rider, auth.Rider)
			id := "order-" + p.name
			// Nearby a bit north of the pickup, another order 300 m farther.
			far := placeRequest(id + "-far")
			far.Pickup = &deliveryv1.LatLng{Lat: cityHall.Lat + 0.0027, Lng: cityHall.Lng}
			if _, err := c.PlaceOrder(ctx, withToken(far, shop)); err != nil {
				t.Fatalf("place far: %v", err)
			}
			placed, err := c.PlaceOrder(ctx, withToken(placeRequest(id), shop))
			if err != nil {
				t.Fatalf("place: %v", err)
			}
			if placed.Msg.Position == 0 || placed.Msg.Zone != "wydm9q" {
				t.Fatalf("placed = %v", placed.Msg)
			}
			q := &deliveryv1.SearchNearbyOrdersRequest{Lat: cityHall.Lat + 0.001, Lng: cityHall.Lng, MinPosition: placed.Msg.Position}
			found, err := c.SearchNearbyOrders(ctx, withToken(q, rtok))
			if err != nil {
				t.Fatalf("search: %v", err)
			}
			got := found.Msg.Orders
			if len(got) < 2 || got[0].OrderId != id || got[1].OrderId != id+"-far" || got[0].DistanceM < 100 || got[0].DistanceM > 120 ||
				got[0].Amount != 18000 || got[0].Zone != "wydm9q" || found.Msg.Position < placed.Msg.Position {
				t.Fatalf("search = %v", found.Msg)
			}

			accepted, err := c.AcceptOrder(ctx, withToken(&deliveryv1.AcceptOrderRequest{OrderId: id, RiderId: rider}, rtok))
			if err != nil {
				t.Fatalf("accept: %v", err)
			}
			// A retry by the holder succeeds and appends nothing.
			before := f.Last(t)
			if _, err := c.AcceptOrder(ctx, withToken(&deliveryv1.AcceptOrderRequest{OrderId: id, RiderId: rider}, rtok)); err != nil {
				t.Fatalf("accept retry: %v", err)
			}
			if f.Last(t) != before {
				t.Fatal("accept retry appended")
			}
			q.MinPosition = accepted.Msg.Position
			found, err = c.SearchNearbyOrders(ctx, withToken(q, rtok))
			if err != nil {
				t.Fatalf("search: %v", err)
			}
			for _, o := range found.Msg.Orders {
				if o.OrderId == id {
					t.Fatalf("accepted order still open: %v", found.Msg)
				}
			}
			for _, step := range []func() error{
				func() error {
					_, err := c.PickUpOrder(ctx, withToken(&deliveryv1.PickUpOrderRequest{OrderId: id, RiderId: rider}, rtok))
					return err
				},
				func() error {
					_, err := c.DeliverOrder(ctx, withToken(&deliveryv1.DeliverOrderRequest{OrderId: id, RiderId: rider}, rtok))
					return err
				},
				func() error {
					_, err := c.RateOrder(ctx, withToken(&deliveryv1.RateOrderRequest{OrderId: id, Stars: 4}, shop))
					return err
				},
			} {
				if err := step(); err != nil {
					t.Fatalf("lifecycle: %v", err)
				}
			}
			o, err := c.GetOrder(ctx, withToken(&deliveryv1.GetOrderRequest{OrderId: id}, rtok))
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if m := o.Msg.Order; m.Status != deliveryv1.OrderStatus_ORDER_STATUS_DELIVERED || m.RiderId != rider || m.Stars != 4 ||
				m.Amount != 18000 || m.Zone != "wydm9q" || m.Version == 0 {
				t.Fatalf("order = %v", m)
			}
			cancelled, err := c.CancelOrder(ctx, withToken(&deliveryv1.CancelOrderRequest{OrderId: id + "-far", Reason: "store closed"}, shop))
			if err != nil {
				t.Fatalf("cancel: %v", err)
			}
			q.MinPosition = cancelled.Msg.Position
			if found, err = c.SearchNearbyOrders(ctx, withToken(q, rtok)); err != nil || len(found.Msg.Orders) != 0 {
				t.Fatalf("search after cancel = %v, %v", found, err)
			}
		})
	}
}

func TestDeliveryRejects(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := deliveryv1connect.NewDeliveryServiceClient(h2c, f.URL)
	g := deliveryv1connect.NewDeliveryServiceClient(h2c, f.URL, connect.WithGRPC())
	shop := f.Token(t, "shop", auth.Service)
	kim := f.Token(t, "kim", auth.Rider)
	lee := f.Token(t, "lee", auth.Rider)
	walker := f.Token(t, "kim", auth.Walker)
	// o-placed is open; o-taken is accepted by kim; o-done is delivered and rated.
	for _, id := range []string{"o-placed", "o-taken", "o-done"} {
		if _, err := c.PlaceOrder(ctx, withToken(placeRequest(id), shop)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"o-taken", "o-done"} {
		if _, err := c.AcceptOrder(ctx, withToken(&deliveryv1.AcceptOrderRequest{OrderId: id, RiderId: "kim"}, kim)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PickUpOrder(ctx, withToken(&deliveryv1.PickUpOrderRequest{OrderId: "o-done", RiderId: "kim"}, kim)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeliverOrder(ctx, withToken(&deliveryv1.DeliverOrderRequest{OrderId: "o-done", RiderId: "kim"}, kim)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RateOrder(ctx, withToken(&deliveryv1.RateOrderRequest{OrderId: "o-done", Stars: 5}, shop)); err != nil {
		t.Fatal(err)
	}
	place := func(mut func(*deliveryv1.PlaceOrderRequest)) *deliveryv1.PlaceOrderRequest {
		r := placeRequest("o-new")
		mut(r)
		return r
	}
	type call func(c deliveryv1connect.DeliveryServiceClient) error
	placeAs := func(tok string, r *deliveryv1.PlaceOrderRequest) call {
		return func(c deliveryv1connect.DeliveryServiceClient) error {
			_, err := c.PlaceOrder(ctx, withToken(r, tok))
			return err
		}
	}
	accept := func(tok, id, rider string) call {
		return func(c deliveryv1connect.DeliveryServiceClient) error {
			_, err := c.AcceptOrder(ctx, withToken(&deliveryv1.AcceptOrderRequest{OrderId: id, RiderId: rider}, tok))
			return err
		}
	}
	deliver := func(tok, id, rider string) call {
		return func(c deliveryv1connect.DeliveryServiceClient) error {
			_, err := c.DeliverOrder(ctx, withToken(&deliveryv1.DeliverOrderRequest{OrderId: id, RiderId: rider}, tok))
			return err
		}
	}
	rate := func(tok, id string, stars int32) call {
		return func(c deliveryv1connect.DeliveryServiceClient) error {
			_, err := c.RateOrder(ctx, withToken(&deliveryv1.RateOrderRequest{OrderId: id, Stars: stars}, tok))
			return err
		}
	}
	search := func(tok string, r *deliveryv1.SearchNearbyOrdersRequest) call {
		return func(c deliveryv1connect.DeliveryServiceClient) error {
			_, err := c.SearchNearbyOrders(ctx, withToken(r, tok))
			return err
		}
	}
	cases := []struct {
		name  string
		call  call
		code  connect.Code
		field string
	}{
		{"no_token", placeAs("", placeRequest("o-new")), connect.CodeUnauthenticated, ""},
		{"rider_cannot_place_order", placeAs(kim, placeRequest("o-new")), connect.CodePermissionDenied, ""},
		{"walker_cannot_place_order", placeAs(walker, placeRequest("o-new")), connect.CodePermissionDenied, ""},
		{"rider_cannot_accept_as_someone_else", accept(kim, "o-placed", "lee"), connect.CodePermissionDenied, ""},
		{"walker_cannot_accept", accept(walker, "o-placed", "kim"), connect.CodePermissionDenied, ""},
		{"rider_cannot_rate", rate(kim, "o-done", 5), connect.CodePermissionDenied, ""},
		{"walker_cannot_search", search(walker, &deliveryv1.SearchNearbyOrdersRequest{Lat: 37.5, Lng: 127}), connect.CodePermissionDenied, ""},
		{"bad_order_id", placeAs(shop, place(func(r *deliveryv1.PlaceOrderRequest) { r.OrderId = "a.b" })), connect.CodeInvalidArgument, "order_id"},
		{"missing_store", placeAs(shop, place(func(r *deliveryv1.PlaceOrderRequest) { r.StoreId = "" })), connect.CodeInvalidArgument, "store_id"},
		{"missing_pickup", placeAs(shop, place(func(r *deliveryv1.PlaceOrderRequest) { r.Pickup = nil })), connect.CodeInvalidArgument, "pickup"},
		{"pickup_lat_out_of_range", placeAs(shop, place(func(r *deliveryv1.PlaceOrderRequest) { r.Pickup = &deliveryv1.LatLng{Lat: 91} })), connect.CodeInvalidArgument, "pickup.lat"},
		{"dropoff_lng_out_of_range", placeAs(shop, place(func(r *deliveryv1.PlaceOrderRequest) { r.Dropoff = &deliveryv1.LatLng{Lng: 181} })), connect.CodeInvalidArgument, "dropoff.lng"},
		{"zero_amount", placeAs(shop, place(func(r *deliveryv1.PlaceOrderRequest) { r.Amount = 0 })), connect.CodeInvalidArgument, "amount"},
		{"huge_amount", placeAs(shop, place(func(r *deliveryv1.PlaceOrderRequest) { r.Amount = delivery.MaxAmount + 1 })), connect.CodeInvalidArgument, "amount"},
		{"bad_rider_id", accept(shop, "o-placed", "r/1"), connect.CodeInvalidArgument, "rider_id"},
		{"stars_too_high", rate(shop, "o-done", 6), connect.CodeInvalidArgument, "stars"},
		{"reason_too_long", func(c deliveryv1connect.DeliveryServiceClient) error {
			_, err := c.CancelOrder(ctx, withToken(&deliveryv1.CancelOrderRequest{OrderId: "o-placed", Reason: strings.Repeat("x", 201)}, shop))
			return err
		}, connect.CodeInvalidArgument, "reason"},
		{"search_lat_out_of_range", search(kim, &deliveryv1.SearchNearbyOrdersRequest{Lat: -91, Lng: 127}), connect.CodeInvalidArgument, "lat"},
		{"search_radius_too_big", search(kim, &deliveryv1.SearchNearbyOrdersRequest{Lat: 37.5, Lng: 127, RadiusM: 5001}), connect.CodeInvalidArgument, "radius_m"},
		{"search_limit_too_big", search(kim, &deliveryv1.SearchNearbyOrdersRequest{Lat: 37.5, Lng: 127, Limit: 101}), connect.CodeInvalidArgument, "limit"},
		{"unknown_order", accept(kim, "o-none", "kim"), connect.CodeNotFound, ""},
		{"rider_cannot_accept_taken_order", accept(lee, "o-taken", "lee"), connect.CodeFailedPrecondition, ""},
		{"cannot_deliver_before_pickup", deliver(kim, "o-taken", "kim"), connect.CodeFailedPrecondition, ""},
		{"cannot_deliver_before_accept", deliver(kim, "o-placed", "kim"), connect.CodeFailedPrecondition, ""},
		{"rating_needs_delivery", rate(shop, "o-taken", 5), connect.CodeFailedPrecondition, ""},
		{"cannot_rate_twice", rate(shop, "o-done", 3), connect.CodeFailedPrecondition, ""},
		{"cannot_place_other_order_with_same_id", placeAs(shop, func() *deliveryv1.PlaceOrderRequest {
			r := placeRequest("o-placed")
			r.Amount++
			return r
		}()), connect.CodeFailedPrecondition, ""},
	}
	before := f.Last(t)
	for _, tc := range cases {
		for proto, client := range map[string]deliveryv1connect.DeliveryServiceClient{"connect": c, "grpc": g} {
			t.Run(tc.name+"/"+proto, func(t *testing.T) {
				err := tc.call(client)
				if connect.CodeOf(err) != tc.code {
					t.Fatalf("code = %v (%v), want %v", connect.CodeOf(err), err, tc.code)
				}
				var ce *connect.Error
				if tc.field != "" && (!errors.As(err, &ce) || !strings.HasPrefix(ce.Message(), tc.field+":")) {
					t.Fatalf("error %q does not name field %q", err, tc.field)
				}
			})
		}
	}
	if after := f.Last(t); after != before {
		t.Fatalf("rejected requests appended %d commits", after-before)
	}
}

// BenchmarkDeliveryLifecycle runs whole orders (place → accept → pick up
// → deliver, four commands) over Connect from concurrent clients against
// an embedded JetStream, and reports orders/s and commands/s.
func BenchmarkDeliveryLifecycle(b *testing.B) {
	f := start(b)
	ctx := context.Background()
	c := deliveryv1connect.NewDeliveryServiceClient(h2c, f.URL)
	shop := f.Token(b, "shop", auth.Service)
	var n atomic.Int64
	b.SetParallelism(8) // 8 × GOMAXPROCS clients
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			id, rider := fmt.Sprintf("bench-%d", i), fmt.Sprintf("rider-%d", i%64)
			if _, err := c.PlaceOrder(ctx, withToken(placeRequest(id), shop)); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.AcceptOrder(ctx, withToken(&deliveryv1.AcceptOrderRequest{OrderId: id, RiderId: rider}, shop)); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.PickUpOrder(ctx, withToken(&deliveryv1.PickUpOrderRequest{OrderId: id, RiderId: rider}, shop)); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.DeliverOrder(ctx, withToken(&deliveryv1.DeliverOrderRequest{OrderId: id, RiderId: rider}, shop)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	secs := time.Since(start).Seconds()
	b.ReportMetric(float64(n.Load())/secs, "orders/s")
	b.ReportMetric(4*float64(n.Load())/secs, "commands/s")
}
