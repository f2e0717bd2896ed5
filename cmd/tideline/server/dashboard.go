package server

import (
	"context"

	"github.com/tideline/tideline/api"
	dashboardmodel "github.com/tideline/tideline/projections/dashboard"
)

// dashboardModule wires the admin dashboard, a read model over delivery
// and safety events.
func dashboardModule(_ context.Context, h *Host) error {
	model := dashboardmodel.New()
	h.Serve(api.DashboardServices(model, h.Runner(model))...)
	return nil
}
