package server

import (
	"context"
	"time"

	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/notify"
	"github.com/tideline/tideline/domain/rewards"
	"github.com/tideline/tideline/projections"
	labelingmodel "github.com/tideline/tideline/projections/labeling"
)

// labelingModule wires data labeling: datasets uploaded through signed
// URLs, their preprocessing into tasks (a reaction), wake-up missions,
// and the periodic jobs: the verification batch (Config.VerifyEvery) and
// the sweeper that records missions past their deadline expired and
// sends the reminders of alarms that ring. Enterprises are told of their
// datasets' review and preprocessing in their inbox; labelers' completed
// missions and accepted labels are credited on the rewards ledger.
func labelingModule(_ context.Context, h *Host) error {
	model := labelingmodel.New()
	svc := labeling.NewService(h.Store, h.Blobs, model.Pick, nil)
	feed := h.Runner(model)
	h.Past(feed, func() projections.Projection { return labelingmodel.New() }, nil)
	h.React(reactions.LabelingReactions(svc, reactions.LabelingEngines{
		Blobs: h.Blobs, OCR: h.Engines.OCR, Decoder: h.Engines.Decoder, Logger: h.Logger,
	})...)
	inbox := notify.NewService(h.Store, nil)
	post := func(ctx context.Context, user string, n notify.Notification) error {
		_, err := inbox.Post(ctx, user, n)
		return err
	}
	h.React(reactions.LabelingNotifications(svc, post),
		reactions.LabelingPoints(rewards.NewService(h.Store, nil, nil), reactions.Points{}))
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
		rang := time.Now().Add(-time.Minute) // alarms that rang while the server was down stay quiet
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
				for _, r := range model.Rings(rang, now) {
					if err := post(ctx, r.Labeler, reactions.AlarmReminder(r.Labeler, r.Alarm, r.At)); err != nil {
						h.Logger.Error("alarm reminder", "labeler", r.Labeler, "err", err)
					}
				}
				rang = now
			}
		}
	})
	return nil
}
