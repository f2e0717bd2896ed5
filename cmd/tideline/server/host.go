package server

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/prometheus"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/personal"
	"github.com/tideline/tideline/projections"
)

// Module wires one context into the server, in one place: from what the
// Host offers it builds the context's domain service and read models, and
// hands the host their runners, its reactions and its Connect services.
// ctx bounds what it does while the server starts. Each context has its
// file here (steps.go, safety.go, ...).
type Module func(ctx context.Context, h *Host) error

// contexts are what the server serves, wired in this order. Adding a
// context is its Module and one entry here.
var contexts = []Module{stepsModule, safetyModule, deliveryModule, dashboardModule, devicesModule, storyModule, lectureModule, notifyModule, rewardsModule, labelingModule, analyticsModule, accountsModule, consoleModule}

// Host is what a Module gets from the server. Its fields are set before
// the first Module runs; its methods take what the context provides:
// runners start at once, the reactions and the API once every Module is
// wired. Modules run one at a time.
type Host struct {
	Config *Config // what `tideline serve` was given
	Logger *slog.Logger
	Store  *jetstream.Store
	Conn   *nats.Conn // the server's own in-process NATS connection
	// Devices is the edge device registry; nil unless Config.LeafListen.
	Devices *natsserver.Devices
	// Blobs stores the blobs (images, audio) that events refer to by
	// media.BlobRef: JetStream object stores, or an S3-compatible store
	// (Config.S3).
	Blobs media.Blobs
	// Links signs the URLs through which clients upload and download
	// blobs straight to and from Blobs: the API serves them under
	// api.BlobPath, on its own port, starting with Config.PublicURL.
	Links media.Links
	// Engines are the media engines and notifiers (see Engines).
	Engines Engines
	// PersonalKeys keep users' personal data keys (the ACCOUNT_KEYS
	// bucket), with which every context seals the personal data it
	// writes into events (domain/personal); deleting one forgets a user.
	PersonalKeys personal.Keys
	// API is the API's shared configuration. A Module may set what the
	// server does not: it sets Tokens, Projections, LastPosition,
	// CORSOrigins, Reflection and Health.
	API api.Config
	// Metrics are the server's Prometheus metrics, to which a Module may
	// add what it knows; nil when they are off.
	Metrics *prometheus.Metrics

	m         *Main
	ctx       context.Context // the server's life
	reactions []reactions.Reaction
	services  []api.Service
}

// Runner returns a runner for p, which the server runs for its whole life
// (restarting it from its last snapshot when it fails), reports in health
// and lets the admin service operate.
func (h *Host) Runner(p projections.Projection) *jetstream.Runner {
	return h.m.startRunner(h.ctx, p)
}

// React adds reactions to the server's reactions engine (one watermill
// router, each reaction a durable consumer).
func (h *Host) React(rs ...reactions.Reaction) { h.reactions = append(h.reactions, rs...) }

// Serve adds Connect services to the API.
func (h *Host) Serve(ss ...api.Service) { h.services = append(h.services, ss...) }

// Check adds a health check: while it fails the server is NOT_SERVING.
func (h *Host) Check(check func(ctx context.Context) error) { h.m.checks = append(h.m.checks, check) }

// Connect opens a NATS connection of the Module's own (its traffic apart
// from the store's): in-process to the embedded server, else to
// Config.NATSURL; it is closed when the server closes.
func (h *Host) Connect(name string) (*nats.Conn, error) {
	nc, err := h.m.connect(name)
	if err != nil {
		return nil, err
	}
	h.m.closers = append(h.m.closers, nc.Close)
	return nc, nil
}

// Provision runs provision (creating a stream or bucket) until it
// succeeds; in a cluster it tries again while JetStream answers that the
// cluster is not ready or does not answer in time (replicated streams
// take long to create on a loaded machine), as long as ctx allows.
func (h *Host) Provision(ctx context.Context, provision func(ctx context.Context) error) error {
	return jetstream.WhileClusterForms(ctx, h.Store.Shared(), provision)
}

// Go runs f until the server closes: f's ctx ends when Close begins, and
// Close waits for f to return.
func (h *Host) Go(f func(ctx context.Context)) { h.m.goRun(h.ctx, f) }
