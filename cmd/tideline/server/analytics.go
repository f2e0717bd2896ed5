package server

import (
	"context"

	"github.com/tideline/tideline/api"
)

// analyticsModule serves the event log itself to admins: exports of a
// range of events (tideline export) and catch-up subscriptions.
func analyticsModule(_ context.Context, h *Host) error {
	h.Serve(api.AnalyticsServices(h.Store)...)
	return nil
}
