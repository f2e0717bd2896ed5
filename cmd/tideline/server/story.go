package server

import (
	"context"

	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/story"
	"github.com/tideline/tideline/projections"
	storymodel "github.com/tideline/tideline/projections/story"
)

// storyModule wires storytime: page images uploaded through signed URLs,
// the stories list, and the pipeline's reactions (OCR, speech, the
// user's e-mail or Slack message); notification addresses are sealed
// with Host.PersonalKeys.
func storyModule(_ context.Context, h *Host) error {
	svc := story.NewService(h.Store, h.Blobs, h.PersonalKeys, nil)
	list := storymodel.New()
	h.React(reactions.StoryReactions(svc, reactions.StoryEngines{
		Blobs: h.Blobs, OCR: h.Engines.OCR, Speaker: h.Engines.Speaker, Links: h.Links,
		Email: h.Engines.Email, Slack: h.Engines.Slack, Logger: h.Logger,
	})...)
	feed := h.Runner(list)
	h.Past(feed, func() projections.Projection { return storymodel.New() }, nil)
	h.Serve(api.StoryServices(svc, list, feed, h.Links, api.StoryTTLs{})...)
	return nil
}
