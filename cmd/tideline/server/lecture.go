package server

import (
	"context"

	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/transcription"
	"github.com/tideline/tideline/projections"
	lecturemodel "github.com/tideline/tideline/projections/lecture"
)

// lectureModule wires lecture transcription: live streams transcribed
// as they come, uploaded recordings and restructuring by reactions, and
// the lectures list.
func lectureModule(_ context.Context, h *Host) error {
	svc := transcription.NewService(h.Store, h.Blobs, nil)
	list := lecturemodel.New()
	h.React(reactions.LectureReactions(svc, reactions.LectureEngines{
		Blobs: h.Blobs, Transcriber: h.Engines.Transcriber, Decoder: h.Engines.Decoder, Restructurer: h.Engines.Restructurer,
		Fallback: h.Engines.Fallback, Logger: h.Logger,
	})...)
	feed := h.Runner(list)
	h.Past(feed, func() projections.Projection { return lecturemodel.New() }, nil)
	h.Serve(api.TranscriptionServices(svc, api.Lectures{List: list, Feed: feed,
		Transcriber: h.Engines.Transcriber, Decoder: h.Engines.Decoder, Engine: h.Engines.RestructurerName, Links: h.Links})...)
	return nil
}
