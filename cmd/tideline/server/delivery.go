package server

import (
	"context"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/projections"
	nearbymodel "github.com/tideline/tideline/projections/nearby"
)

// deliveryModule wires the delivery context: orders, their lifecycle,
// and the open-orders index riders search.
func deliveryModule(_ context.Context, h *Host) error {
	nearby := nearbymodel.New()
	feed := h.Runner(nearby)
	h.Past(feed, func() projections.Projection { return nearbymodel.New() }, nil)
	h.Serve(api.DeliveryServices(delivery.NewService(h.Store, 0, nil), nearby, feed, h.Engines.Commands)...)
	return nil
}
