package server

import (
	"context"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/delivery"
	nearbymodel "github.com/tideline/tideline/projections/nearby"
)

// deliveryModule wires the delivery context: orders, their lifecycle,
// and the open-orders index riders search.
func deliveryModule(_ context.Context, h *Host) error {
	nearby := nearbymodel.New()
	h.Serve(api.DeliveryServices(delivery.NewService(h.Store, 0, nil), nearby, h.Runner(nearby), h.Engines.Commands)...)
	return nil
}
