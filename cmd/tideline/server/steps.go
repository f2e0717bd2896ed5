package server

import (
	"context"
	"time"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/steps"
	"github.com/tideline/tideline/projections"
	stepsmodel "github.com/tideline/tideline/projections/steps"
)

// stepsModule wires the steps context: pedometer counts, daily rankings.
func stepsModule(_ context.Context, h *Host) error {
	var opts []stepsmodel.Option
	if w := h.Config.StepsWindow; w != 0 {
		opts = append(opts, stepsmodel.Window(w))
	}
	model := stepsmodel.New(opts...)
	r := h.Runner(model)
	// The summary is the leaderboard of the position's (Asia/Seoul) day.
	seoul := time.FixedZone("KST", 9*3600)
	past := h.Past(r, func() projections.Projection { return stepsmodel.New(opts...) }, func(p projections.Projection, at time.Time) any {
		m, date := p.(*stepsmodel.Model), at.In(seoul).Format(time.DateOnly)
		return map[string]any{"date": date, "total": m.Total(date), "top": m.Top(date, 10)}
	})
	h.Serve(api.StepsServices(&steps.Service{Store: h.Store}, model, r, past)...)
	return nil
}
