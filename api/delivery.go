package api

import (
	"context"
	"errors"
	"math"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	nearbymodel "github.com/tideline/tideline/projections/nearby"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
)

// SearchNearbyOrders limits.
const (
	defaultNearbyRadiusM = 1000
	maxNearbyRadiusM     = 5000
	defaultNearbyLimit   = 20
	maxNearbyLimit       = 100
)

// DeliveryServices serves the delivery context:
// tideline.delivery.v1.DeliveryService over svc (order commands), the
// open-orders index and its runner, and voice, the recogniser of riders'
// spoken commands (nil: VoiceCommand is Unavailable).
func DeliveryServices(svc *delivery.Service, nearby *nearbymodel.Model, nearbyFeed ReadModel, voice media.CommandRecognizer) []Service {
	return []Service{{Name: deliveryv1connect.DeliveryServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return deliveryv1connect.NewDeliveryServiceHandler(&deliveryHandler{rt: rt, svc: svc, nearby: nearby, nearbyFeed: nearbyFeed, voice: voice}, opts)
	}}}
}

// deliveryHandler serves tideline.delivery.v1.DeliveryService.
type deliveryHandler struct {
	rt         *runtime
	svc        *delivery.Service
	nearby     *nearbymodel.Model
	nearbyFeed ReadModel
	voice      media.CommandRecognizer
}

func latLng(p *deliveryv1.LatLng) delivery.LatLng {
	return delivery.LatLng{Lat: p.GetLat(), Lng: p.GetLng()}
}

func (h *deliveryHandler) exec(ctx context.Context, cmd delivery.Command) (uint64, error) {
	res, err := h.svc.Execute(ctx, caller(ctx), cmd)
	return res.Position.Seq, err
}

func (h *deliveryHandler) PlaceOrder(ctx context.Context, req *connect.Request[deliveryv1.PlaceOrderRequest]) (*connect.Response[deliveryv1.PlaceOrderResponse], error) {
	m := req.Msg
	if m.Pickup == nil {
		return nil, es.Invalidf("pickup", "is required")
	}
	if m.Dropoff == nil {
		return nil, es.Invalidf("dropoff", "is required")
	}
	cmd := delivery.PlaceOrder{OrderID: m.OrderId, StoreID: m.StoreId, Pickup: latLng(m.Pickup), Dropoff: latLng(m.Dropoff), Amount: m.Amount}
	pos, err := h.exec(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&deliveryv1.PlaceOrderResponse{Position: pos, Zone: delivery.Zone(cmd.Pickup.Lat, cmd.Pickup.Lng)}), nil
}

func (h *deliveryHandler) AcceptOrder(ctx context.Context, req *connect.Request[deliveryv1.AcceptOrderRequest]) (*connect.Response[deliveryv1.AcceptOrderResponse], error) {
	pos, err := h.exec(ctx, delivery.AcceptOrder{OrderID: req.Msg.OrderId, RiderID: req.Msg.RiderId})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&deliveryv1.AcceptOrderResponse{Position: pos}), nil
}

func (h *deliveryHandler) PickUpOrder(ctx context.Context, req *connect.Request[deliveryv1.PickUpOrderRequest]) (*connect.Response[deliveryv1.PickUpOrderResponse], error) {
	pos, err := h.exec(ctx, delivery.PickUpOrder{OrderID: req.Msg.OrderId, RiderID: req.Msg.RiderId})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&deliveryv1.PickUpOrderResponse{Position: pos}), nil
}

func (h *deliveryHandler) DeliverOrder(ctx context.Context, req *connect.Request[deliveryv1.DeliverOrderRequest]) (*connect.Response[deliveryv1.DeliverOrderResponse], error) {
	pos, err := h.exec(ctx, delivery.DeliverOrder{OrderID: req.Msg.OrderId, RiderID: req.Msg.RiderId})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&deliveryv1.DeliverOrderResponse{Position: pos}), nil
}

func (h *deliveryHandler) CancelOrder(ctx context.Context, req *connect.Request[deliveryv1.CancelOrderRequest]) (*connect.Response[deliveryv1.CancelOrderResponse], error) {
	pos, err := h.exec(ctx, delivery.CancelOrder{OrderID: req.Msg.OrderId, Reason: req.Msg.Reason})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&deliveryv1.CancelOrderResponse{Position: pos}), nil
}

func (h *deliveryHandler) RateOrder(ctx context.Context, req *connect.Request[deliveryv1.RateOrderRequest]) (*connect.Response[deliveryv1.RateOrderResponse], error) {
	pos, err := h.exec(ctx, delivery.RateOrder{OrderID: req.Msg.OrderId, Stars: req.Msg.Stars})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&deliveryv1.RateOrderResponse{Position: pos}), nil
}

var orderStatuses = map[delivery.Status]deliveryv1.OrderStatus{
	delivery.Placed:    deliveryv1.OrderStatus_ORDER_STATUS_PLACED,
	delivery.Accepted:  deliveryv1.OrderStatus_ORDER_STATUS_ACCEPTED,
	delivery.PickedUp:  deliveryv1.OrderStatus_ORDER_STATUS_PICKED_UP,
	delivery.Delivered: deliveryv1.OrderStatus_ORDER_STATUS_DELIVERED,
	delivery.Cancelled: deliveryv1.OrderStatus_ORDER_STATUS_CANCELLED,
}

// GetOrder reads the aggregate itself, so min_position needs no wait;
// one past the stream's end is still refused.
func (h *deliveryHandler) GetOrder(ctx context.Context, req *connect.Request[deliveryv1.GetOrderRequest]) (*connect.Response[deliveryv1.GetOrderResponse], error) {
	if err := h.rt.checkPosition(ctx, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	o, version, err := h.svc.Get(ctx, caller(ctx), req.Msg.OrderId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&deliveryv1.GetOrderResponse{Order: orderProto(o, version)}), nil
}

func orderProto(o delivery.Order, version uint64) *deliveryv1.Order {
	return &deliveryv1.Order{
		OrderId: o.ID, StoreId: o.StoreID,
		Pickup:  &deliveryv1.LatLng{Lat: o.Pickup.Lat, Lng: o.Pickup.Lng},
		Dropoff: &deliveryv1.LatLng{Lat: o.Dropoff.Lat, Lng: o.Dropoff.Lng},
		Amount:  o.Amount, Zone: o.Zone, Status: orderStatuses[o.Status],
		RiderId: o.RiderID, Stars: o.Stars, CancelReason: o.Reason,
		PlacedAt: timestamppb.New(o.PlacedAt), UpdatedAt: timestamppb.New(o.UpdatedAt),
		Version: version,
	}
}

func (h *deliveryHandler) SearchNearbyOrders(ctx context.Context, req *connect.Request[deliveryv1.SearchNearbyOrdersRequest]) (*connect.Response[deliveryv1.SearchNearbyOrdersResponse], error) {
	if err := requireRole(ctx, auth.Rider, auth.Admin, auth.Service); err != nil {
		return nil, err
	}
	m := req.Msg
	if err := delivery.ValidateLatLng("", delivery.LatLng{Lat: m.Lat, Lng: m.Lng}); err != nil {
		return nil, err
	}
	radius := m.RadiusM
	if radius == 0 {
		radius = defaultNearbyRadiusM
	}
	if math.IsNaN(radius) || radius < 1 || radius > maxNearbyRadiusM {
		return nil, es.Invalidf("radius_m", "must be between 1 and %d, got %v", maxNearbyRadiusM, m.RadiusM)
	}
	limit := int(m.Limit)
	if limit == 0 {
		limit = defaultNearbyLimit
	}
	if limit < 1 || limit > maxNearbyLimit {
		return nil, es.Invalidf("limit", "must be between 1 and %d, got %d", maxNearbyLimit, m.Limit)
	}
	if err := h.rt.waitFor(ctx, h.nearbyFeed, m.MinPosition); err != nil {
		return nil, err
	}
	pos := h.nearbyFeed.Position()
	hits := h.nearby.Nearby(m.Lat, m.Lng, radius, limit)
	out := &deliveryv1.SearchNearbyOrdersResponse{Orders: make([]*deliveryv1.NearbyOrder, len(hits)), Position: pos}
	for i, hit := range hits {
		o := hit.Order
		out.Orders[i] = &deliveryv1.NearbyOrder{
			OrderId: o.OrderId, StoreId: o.StoreId,
			Pickup:  &deliveryv1.LatLng{Lat: o.GetPickup().GetLat(), Lng: o.GetPickup().GetLng()},
			Dropoff: &deliveryv1.LatLng{Lat: o.GetDropoff().GetLat(), Lng: o.GetDropoff().GetLng()},
			Amount:  o.Amount, Zone: o.Zone, PlacedAt: o.PlacedAt, DistanceM: hit.DistanceM,
		}
	}
	return connect.NewResponse(out), nil
}

// VoiceCommand recognises a rider's spoken command and runs it as its
// button would (see the proto).
func (h *deliveryHandler) VoiceCommand(ctx context.Context, req *connect.Request[deliveryv1.VoiceCommandRequest]) (*connect.Response[deliveryv1.VoiceCommandResponse], error) {
	if err := requireRole(ctx, auth.Rider, auth.Admin, auth.Service); err != nil {
		return nil, err
	}
	m, p := req.Msg, caller(ctx)
	rider := m.RiderId
	if rider == "" && p.Role == auth.Rider {
		rider = p.Subject
	}
	if err := es.ValidateToken("order_id", m.OrderId); err != nil {
		return nil, err
	}
	if err := es.ValidateToken("rider_id", rider); err != nil {
		return nil, err
	}
	if p.Role == auth.Rider && rider != p.Subject {
		return nil, delivery.ErrNotYourself
	}
	langs := delivery.VoiceLangs
	if m.Lang != "" {
		langs = []string{m.Lang}
	}
	grammars := make([]media.Grammar, len(langs))
	for i, l := range langs {
		g, err := delivery.VoiceGrammar("lang", l)
		if err != nil {
			return nil, err
		}
		grammars[i] = g
	}
	if len(m.Audio) == 0 {
		return nil, es.Invalidf("audio", "is required: a WAV recording of the command")
	}
	pcm, err := media.PCMFromWAV(m.Audio)
	if err != nil {
		return nil, es.Invalidf("audio", "%v", err)
	}
	if h.voice == nil {
		return nil, es.Errorf(es.Unavailable, "voice commands are off: this server has no speech engine (install pocketsphinx)")
	}
	var best media.Command
	for _, g := range grammars {
		c, err := h.voice.Recognize(ctx, pcm, g)
		switch {
		case errors.Is(err, media.ErrUnavailable):
			return nil, es.Wrap(es.Unavailable, "speech engine", err)
		case errors.Is(err, media.ErrUnusable):
			return nil, es.Invalidf("audio", "%v", err)
		case err != nil:
			return nil, err
		}
		if surer(c, best) {
			best = c
		}
	}
	cmd, err := delivery.VoiceCommand(best.Intent, m.OrderId, rider, best.Heard)
	if err != nil {
		return nil, err
	}
	res, err := h.svc.Execute(ctx, p, cmd)
	if err != nil {
		return nil, err
	}
	o, version, err := h.svc.Get(ctx, p, m.OrderId)
	if err != nil {
		return nil, err
	}
	return withPosition(&deliveryv1.VoiceCommandResponse{Intent: best.Intent, Heard: best.Heard, Confidence: best.Confidence,
		Position: res.Position.Seq, Order: orderProto(o, version)}, res.Position.Seq), nil
}

// surer reports whether c is a better reading than best: a command over
// a rejection, else the higher confidence.
func surer(c, best media.Command) bool {
	if (c.Intent != "") != (best.Intent != "") {
		return c.Intent != ""
	}
	return c.Confidence > best.Confidence
}
