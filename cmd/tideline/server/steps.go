package server

import (
	"context"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/steps"
	stepsmodel "github.com/tideline/tideline/projections/steps"
)

// stepsModule wires the steps context: pedometer counts, daily rankings.
func stepsModule(_ context.Context, h *Host) error {
	model := stepsmodel.New()
	h.Serve(api.StepsServices(&steps.Service{Store: h.Store}, model, h.Runner(model))...)
	return nil
}
