package server

import (
	"context"
	"time"

	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/labeling"
	labelingmodel "github.com/tideline/tideline/projections/labeling"
)

// labelingModule wires data labeling: datasets uploaded through signed
// URLs, their preprocessing into tasks (a reaction), wake-up missions,
// and the periodic jobs: the verification batch (Config.VerifyEvery) and
// the sweeper that records missions past their deadline expired.
func labelingModule(_ context.Context, h *Host) error {
	model := labelingmodel.New()
	svc := labeling.NewService(h.Store, h.Blobs, model.Pick, nil)
	feed := h.Runner(model)
	h.React(reactions.LabelingReactions(svc, reactions.LabelingEngines{
		Blobs: h.Blobs, OCR: h.Engines.OCR, Decoder: h.Engines.Decoder, Logger: h.Logger,
	})...)
	h.Serve(api.LabelingServices(svc, model, feed, h.Links, api.LabelingTTLs{})...)
	every := h.Config.VerifyEvery
	if every <= 0 {
		every = time.Minute
	}
	h.Go(func(ctx context.Context) {
		verify := time.NewTicker(every)
		defer verify.Stop()
		sweep := time.NewTicker(min(every, 15*time.Second))
		defer sweep.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-verify.C:
				n, err := svc.Verify(ctx, model.DueForVerification(), labeling.DefaultAgreement, now.UTC().Format(time.RFC3339))
				if err != nil {
					h.Logger.Error("labeling verification batch", "err", err)
				} else if n > 0 {
					h.Logger.Info("labeling verification batch", "decided", n)
				}
			case now := <-sweep.C:
				for _, m := range model.Overdue(now) {
					if _, err := svc.ExpireMission(ctx, m.Labeler, m.Mission); err != nil {
						h.Logger.Error("expire mission", "mission", m.Mission, "err", err)
					}
				}
			}
		}
	})
	return nil
}
