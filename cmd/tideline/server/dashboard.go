package server

import (
	"context"
	"encoding/json"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/projections"
	dashboardmodel "github.com/tideline/tideline/projections/dashboard"
)

// dashboardModule wires the admin dashboard, a read model over delivery
// and safety events.
func dashboardModule(_ context.Context, h *Host) error {
	model := dashboardmodel.New()
	r := h.Runner(model)
	past := h.Past(r, func() projections.Projection { return dashboardmodel.New() }, func(p projections.Projection, at time.Time) any {
		b, _ := protojson.Marshal(p.(*dashboardmodel.Model).Dashboard(dashboardmodel.Query{Now: at}))
		return json.RawMessage(b)
	})
	h.Serve(api.DashboardServices(model, r, past)...)
	return nil
}
