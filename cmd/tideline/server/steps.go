package server

import (
	"context"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/steps"
	stepsmodel "github.com/tideline/tideline/projections/steps"
)

// stepsModule wires the steps context: pedometer counts, daily rankings.
func stepsModule(_ context.Context, h *Host) error {
	var opts []stepsmodel.Option
	if w := h.Config.StepsWindow; w != 0 {
		opts = append(opts, stepsmodel.Window(w))
	}
	model := stepsmodel.New(opts...)
	h.Serve(api.StepsServices(&steps.Service{Store: h.Store}, model, h.Runner(model))...)
	return nil
}
