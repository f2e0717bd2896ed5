package server

import (
	"context"

	"github.com/tideline/tideline/api/web"
	"github.com/tideline/tideline/internal/version"
)

// consoleModule serves the web console (api/web) at /console/ on the API's
// port; / redirects to it.
func consoleModule(_ context.Context, h *Host) error {
	c := h.Config
	console, err := web.Handler(web.Config{MapTiles: c.MapTiles, MapAttribution: c.MapAttribution, Version: version.String("tideline"), BlobOrigin: h.m.Links.Base()})
	if err != nil {
		return err
	}
	h.API.Console = console
	return nil
}
