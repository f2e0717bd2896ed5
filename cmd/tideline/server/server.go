// Package server assembles a Tideline server: the embedded NATS server,
// the event store, the projection runners, the reactions and the Connect
// API. `tideline serve` runs it; end-to-end and API tests start the same
// assembly (see servertest).
package server

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/tideline/tideline/adapters/argon2id"
	"github.com/tideline/tideline/adapters/fcm"
	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/opentelemetry"
	"github.com/tideline/tideline/adapters/prometheus"
	"github.com/tideline/tideline/adapters/s3"
	"github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/adapters/webpush"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/internal/dirlock"
	"github.com/tideline/tideline/projections"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/wire"
)

// Config is everything `tideline serve` takes.
type Config struct {
	DataDir         string
	Listen          string // HTTP address of the Connect API
	NATSListen      string // optional TCP listener for NATS clients, registered with `tideline nats-user add`
	LeafListen      string // optional listener for edge devices (NATS leaf nodes), registered with `tideline device add`
	SyncAlways      bool
	DuplicateWindow time.Duration
	CORSOrigins     []string
	AlertWebhook    string // optional URL each safety alert is POSTed to
	// MaxConns caps the API's open connections (0: api.DefaultMaxConns);
	// more are reset at once.
	MaxConns int
	// IdleTimeout closes API connections without a call for this long
	// (0: api.DefaultIdleTimeout).
	IdleTimeout time.Duration
	// Reflection is who may use gRPC reflection: auto (default: anyone
	// when the API listens on loopback only, else callers with a token),
	// on, token or off.
	Reflection string
	Logger     *slog.Logger
	// DiskReserve is the free space on the data disk under which writes
	// are refused (natsserver.DiskGuardConfig.Reserve); 0: 64 MiB, at
	// most a tenth of the disk; negative: none.
	DiskReserve int64
	// DeviceRate and DeviceBurst are each edge device lane's quota at the
	// device gate: commits per second and bucket size (see devicegate).
	DeviceRate  float64
	DeviceBurst int
	// EventsStream names the events stream (jetstream.Config.Stream;
	// default wire.EventsStream). The store, the device gate, the
	// reactions and the NATS readers' guard all take it from here.
	EventsStream string
	// PublicURL is the server's address as clients reach it, which blob
	// links start with; default http://<the address it listens on>.
	PublicURL string
	// S3, when its Endpoint is set, keeps blobs in an S3-compatible store;
	// else they are in JetStream object stores under DataDir.
	S3 s3.Config
	// SMTP, when its Host is set, sends e-mail notifications (storytime's
	// "your story is ready").
	SMTP smtp.Config
	// OpenAI, when its URLs are set, transcribes and restructures through
	// OpenAI-compatible servers instead of the local engines.
	OpenAI OpenAI
	// Tracing, when its Endpoint or the standard OTLP environment is set
	// (opentelemetry.Configured), exports OpenTelemetry traces: each RPC
	// through its commits' appends into the projection applies, the
	// reactions and the notifications they send. Otherwise nothing is
	// traced.
	Tracing opentelemetry.Config
	// EgressAllowPrivate lets the URLs users give (Slack webhooks, Web
	// Push endpoints) reach loopback, private and link-local addresses,
	// which are refused by default (egress.Config.AllowPrivate): for a
	// push service or Slack proxy inside the network.
	EgressAllowPrivate bool
	// VAPIDKeyFile holds the Web Push key pair, created on first start;
	// default vapid.json in DataDir. WebPush tunes the notifier (its
	// Keys are the file's, its AllowPrivate is EgressAllowPrivate).
	VAPIDKeyFile string
	WebPush      webpush.Config
	// FCM, when its Project or CredentialsFile is set, sends push
	// notifications to apps through Firebase Cloud Messaging.
	FCM fcm.Config
	// StepsWindow is how many dates the steps read model holds in full
	// (0: its default); a change rebuilds the model at start.
	StepsWindow int
	// VerifyEvery is how often the labeling verification batch runs
	// (0: every minute).
	VerifyEvery time.Duration
	// RaffleTick is how often raffles whose draw time has come are drawn
	// (0: DefaultRaffleTick).
	RaffleTick time.Duration
	// OIDC, when its Issuer or JWKSURL is set, also accepts an external
	// identity provider's access tokens (api.IdP).
	OIDC api.IdPConfig
	// MapTiles is the web console's map tile URL template (empty: the
	// danger map is drawn without tiles), MapAttribution its credit line.
	MapTiles       string
	MapAttribution string
	// NoMetrics turns the Prometheus metrics off: nothing is counted and
	// /metrics is not served.
	NoMetrics bool
	// MetricsListen, when set, also serves /metrics on this address: to
	// anyone when it is a loopback address, else to admin and metrics
	// tokens (the API's port always wants one).
	MetricsListen string
	// ReactionMaxAge is how long after it was recorded a commit still
	// makes the notifying reactions tell people (reactions.Config.MaxAge);
	// older ones are skipped as history. 0: no bound.
	ReactionMaxAge time.Duration
	// PasswordHashing is argon2id's cost for new password hashes; zero
	// values are its defaults (64 MiB, two passes). Not a flag: the API's
	// tests lower it (servertest), since they hash by the dozen under -race.
	PasswordHashing argon2id.Hasher
	// SeparateReplays gives each projection's replay a consumer of its
	// own, as before the shared pass (jetstream.Replay). Not a flag: a
	// benchmark compares the two.
	SeparateReplays bool
	// ReadyLag is how many events a projection may lag while /readyz
	// says ready (0: api.DefaultReadyLag).
	ReadyLag uint64
	// Cluster, when enabled, makes the embedded NATS server one node of a
	// NATS cluster with JetStream; default: a server alone.
	Cluster natsserver.Cluster
	// ServerName is the embedded NATS server's name, unique in a cluster;
	// default "tideline" alone, else ClusterServerName.
	ServerName string
	// Replicas of the events stream and of every stream and bucket beside
	// it; 0: Replicas(Cluster).
	Replicas int
	// FailoverWait bounds how long an append waits for the events stream
	// to have a leader (jetstream.Config.FailoverWait); 0: its default.
	FailoverWait time.Duration
	// NATSURL, when set, is an existing NATS server or cluster with
	// JetStream to use instead of the embedded server (NATSCreds: its
	// credentials file). NATSListen, LeafListen and Cluster then do not
	// apply, nor does the disk guard: the data is on the NATS servers.
	NATSURL   string
	NATSCreds string
	// AwaitImport makes a cluster node wait, its NATS server up and in
	// the cluster, until 'tideline cluster-import' has copied a store
	// into the cluster, before it opens the event store (which would
	// create the streams the import refuses to overwrite). Meanwhile the
	// API's port serves only the probes, not ready. Once the cluster has
	// the store, it waits no more: keeping it set is harmless. It needs
	// Cluster.
	AwaitImport bool
}

// Replicas returns the replica count a server with cluster c gives its
// streams and buckets by default: 3 in a cluster of at least three nodes,
// else 1.
func Replicas(c natsserver.Cluster) int {
	if c.Enabled() && c.Size() >= 3 {
		return 3
	}
	return 1
}

// ClusterServerName is a cluster node's default server name: the host's
// name and a digest of the data dir's absolute path, the same at every
// start and different for two nodes on one host.
func ClusterServerName(dataDir string) (string, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("server name: %w", err)
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("server name: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	host = strings.Map(func(r rune) rune {
		if r == '.' || r == ' ' || r == '*' || r == '>' {
			return '-'
		}
		return r
	}, host)
	return host + "-" + hex.EncodeToString(sum[:4]), nil
}

// Main is a running server: embedded NATS, the event store, and what
// every context's Module provides (read models and their runners,
// reactions, Connect services) behind the shared API. End-to-end and API
// tests reuse it on port 0 and a temp dir (servertest).
type Main struct {
	Config Config
	// TuneAPI, when set, adjusts the API's configuration before the API
	// is built (tests: limits, reflection).
	TuneAPI func(*api.Config)

	ns      *nserver.Server
	nc      *nats.Conn
	Store   *jetstream.Store
	Tokens  *api.Tokens
	Blobs   media.Blobs // Config.S3's store, or JetStream object stores
	Links   *api.Links  // signs the URLs the API's BlobService serves
	Engines Engines     // media engines and notifiers
	api     *api.API
	http    *http.Server
	ln      net.Listener
	cancel  context.CancelFunc
	failed  chan error // the HTTP server stopped on its own
	// endRequests ends the contexts of the API's calls in flight.
	endRequests context.CancelFunc
	wg          sync.WaitGroup
	runners     []*jetstream.Runner
	// history answers ProjectionAt (Host.Past); asOf bounds every
	// runner's as-of replays together.
	history map[string]api.Past
	asOf    *jetstream.AsOfLimits
	// replay is the pass the runners share at the start (nil: none).
	replay *jetstream.Replay
	// reactionsDone is set once the reactions' router has returned.
	reactionsDone atomic.Bool
	// caughtUp holds the runners that have been within Config.ReadyLag of
	// the stream since they last started running (see Health).
	caughtUp sync.Map // *jetstream.Runner → struct{}
	// checks are the Modules' own health checks (Host.Check).
	checks []func(ctx context.Context) error
	// closers run once everything started has stopped (Host.Connect).
	closers []func()
	// Devices is the edge device registry (DATA/devices), with LeafListen.
	Devices *natsserver.Devices
	// disk guards the data disk. diskStop stops it once the runners have
	// written their final snapshots, which it may have to cut short.
	disk     *natsserver.DiskGuard
	diskStop func()
	// Users is the NATS client registry (DATA/nats-users), with NATSListen.
	Users *natsserver.Users
	lock  *dirlock.Lock // DATA/LOCK: one server per data dir
	// tracer is Config.Tracing's provider, nil when tracing is off;
	// stopTracing sends the spans still buffered.
	tracer      trace.TracerProvider
	stopTracing func(context.Context) error
	// Metrics are the server's Prometheus metrics; nil with
	// Config.NoMetrics.
	Metrics *prometheus.Metrics
	// metricsHTTP serves them on Config.MetricsListen (metricsLn).
	metricsHTTP *http.Server
	metricsLn   net.Listener
	// handler is what m.http serves: the probes alone while awaiting an
	// import (Config.AwaitImport), then the API.
	handler atomic.Pointer[http.Handler]
	// awaitMu guards awaitStop, set while Run awaits an import, and
	// awaitEnded, set once Close has ended that wait: Run closes it as it
	// returns, and Close then cleans up.
	awaitMu    sync.Mutex
	awaitStop  context.CancelFunc
	awaitEnded chan struct{}
}

// MetricsAddr returns the address of the metrics listener
// (Config.MetricsListen) once Run has returned, or "" without one.
func (m *Main) MetricsAddr() string {
	if m.metricsLn == nil {
		return ""
	}
	return m.metricsLn.Addr().String()
}

// Addr returns the API's listening address once Run has returned.
func (m *Main) Addr() string { return m.ln.Addr().String() }

// API returns the Connect API once Run has returned.
func (m *Main) API() *api.API { return m.api }

// Runners returns the projections' runners once Run has returned.
func (m *Main) Runners() []*jetstream.Runner { return m.runners }

// Runner returns the named projection's runner, or nil.
func (m *Main) Runner(name string) *jetstream.Runner {
	for _, r := range m.runners {
		if r.Name() == name {
			return r
		}
	}
	return nil
}

// NATS returns the embedded NATS server once Run has returned.
func (m *Main) NATS() *nserver.Server { return m.ns }

// Failed delivers the error that stopped the HTTP server on its own; the
// caller should then Close.
func (m *Main) Failed() <-chan error { return m.failed }

// DeviceDir is where a data dir keeps its edge device registry: one
// <id>.json per device (rider, public nkey, revoked), and the <id>.creds
// written for it.
func DeviceDir(dataDir string) string { return filepath.Join(dataDir, "devices") }

// NATSUserDir is where a data dir keeps its NATS client users: one
// <name>.json per user (role, public nkey, revoked) and the <name>.creds
// written for it.
func NATSUserDir(dataDir string) string { return filepath.Join(dataDir, "nats-users") }

// ImportedFile, in a data dir, says that 'tideline cluster-import' copied
// its store into a cluster: what a server alone on it wrote afterwards
// would be acknowledged and never reach the cluster, so serve refuses it
// (with --nats-url, the store is elsewhere and the dir only lends keys).
const ImportedFile = "IMPORTED"

func checkNotImported(dataDir string) error {
	path := filepath.Join(dataDir, ImportedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return fmt.Errorf("data dir %s was copied into a cluster (%s): a server alone here would take writes the cluster never sees. Serve the cluster with --nats-url, or remove %s to serve this copy anyway", dataDir, strings.TrimSpace(string(b)), path)
}

// Run starts everything and returns once the API accepts requests. The
// caller must call Close.
func (m *Main) Run(ctx context.Context) (err error) {
	c := &m.Config
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	log := c.Logger
	defer func() {
		m.awaitMu.Lock()
		ended := m.awaitEnded
		m.awaitMu.Unlock()
		if ended != nil { // Close ended the wait for an import: it cleans up
			close(ended)
			return
		}
		if err != nil {
			m.Close()
		}
	}()
	if c.AwaitImport && (!c.Cluster.Enabled() || c.NATSURL != "") {
		return errors.New("--await-import needs a cluster node (--cluster-name, --routes): it waits for 'tideline cluster-import' to copy a store in through the cluster's routes, which a server alone or --nats-url has none of")
	}
	m.failed = make(chan error, 2) // the API's and the metrics' servers
	m.lock, err = dirlock.Acquire(c.DataDir, dirlock.Holder{Program: "tideline serve", Addr: c.Listen})
	if err != nil {
		return err
	}
	if c.NATSURL == "" {
		if err := checkNotImported(c.DataDir); err != nil {
			return err
		}
	}
	m.Tokens, err = api.LoadOrCreateTokens(c.DataDir)
	if err != nil {
		return err
	}
	if opentelemetry.Configured(c.Tracing.Endpoint) {
		tp, err := opentelemetry.NewTracerProvider(ctx, c.Tracing)
		if err != nil {
			return fmt.Errorf("tracing: %w", err)
		}
		m.tracer, m.stopTracing = tp, tp.Shutdown
		log.Info("tracing", "otlp_endpoint", cmp.Or(c.Tracing.Endpoint, "from the environment"), "sample", c.Tracing.SampleRatio)
	}
	replicas, shared := c.Replicas, c.Cluster.Enabled()
	var writable func() error // the disk guard's, with an embedded server
	if c.NATSURL != "" {
		if replicas, err = m.connectExternal(); err != nil {
			return err
		}
		shared = true // other tideline servers may write to it too
	} else {
		if replicas, err = m.startEmbedded(); err != nil {
			return err
		}
		writable = m.disk.Err
		if c.AwaitImport {
			if err := m.awaitImport(ctx); err != nil {
				return err
			}
		}
	}
	storeCfg := jetstream.Config{Stream: c.EventsStream, DuplicateWindow: c.DuplicateWindow,
		Writable: writable, Replicas: replicas, FailoverWait: c.FailoverWait, Shared: shared, TracerProvider: m.tracer}
	if m.ns != nil && !c.Cluster.Enabled() {
		// One embedded node: replays read history from the stream's files.
		storeCfg.BlockDir = natsserver.StreamDir(m.ns, cmp.Or(c.EventsStream, wire.EventsStream))
	}
	if !c.NoMetrics {
		m.Metrics = prometheus.New()
		storeCfg.OnAppend = m.Metrics.ObserveAppend
		storeCfg.OnRetry = m.Metrics.ObserveRetry
	}
	m.Store, err = jetstream.Open(ctx, m.nc, storeCfg)
	if err != nil {
		return err
	}
	if m.disk != nil {
		diskCtx, diskCancel := context.WithCancel(context.Background())
		diskDone := make(chan struct{})
		go func() {
			defer close(diskDone)
			m.disk.Run(diskCtx)
		}()
		m.diskStop = func() { diskCancel(); <-diskDone }
	}

	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if m.Devices != nil { // added and revoked devices apply without a restart
		m.goRun(runCtx, func(ctx context.Context) { m.Devices.Watch(ctx, 500*time.Millisecond) })
	}
	if m.Users != nil { // added and revoked users apply without a restart
		m.goRun(runCtx, func(ctx context.Context) { m.Users.Watch(ctx, 500*time.Millisecond) })
	}
	// Listening before the Modules run gives the blob links their
	// address; requests wait until the API serves.
	if err := m.listen(); err != nil {
		return err
	}
	if err := m.openEngines(); err != nil {
		return err
	}
	if err := m.openBlobs(); err != nil {
		return err
	}
	h := &Host{Config: c, Logger: log, Store: m.Store, Conn: m.nc, Devices: m.Devices, Blobs: m.Blobs, Links: m.Links, Engines: m.Engines, Metrics: m.Metrics, m: m, ctx: runCtx}
	h.Serve(api.BlobService(m.Links, m.Blobs))
	err = h.Provision(ctx, func(ctx context.Context) (err error) {
		h.PersonalKeys, err = jetstream.OpenAccountKeys(ctx, m.Store.JetStream(), m.Store.Replicas())
		return err
	})
	if err != nil {
		return err
	}
	// The runners the contexts start replay the stream in one pass.
	if !c.SeparateReplays {
		m.replay = jetstream.NewReplay(m.Store, log)
	}
	for _, wire := range contexts {
		if err := wire(ctx, h); err != nil {
			return err
		}
	}
	if m.replay != nil {
		m.replay.Gathered()
	}
	if len(h.reactions) > 0 {
		if err := m.startReactions(ctx, runCtx, h.reactions); err != nil {
			return err
		}
	}
	controls := map[string]api.ProjectionControl{}
	for _, r := range m.runners {
		controls[r.Name()] = runnerControl{r}
	}

	reflection, err := api.ParseReflection(cmp.Or(c.Reflection, "auto"), m.ln.Addr())
	if err != nil {
		return fmt.Errorf("--reflection: %w", err)
	}
	cfg := h.API
	cfg.Tokens = m.Tokens
	if c.OIDC.Issuer != "" || c.OIDC.JWKSURL != "" {
		if cfg.IdP, err = api.NewIdP(ctx, c.OIDC); err != nil {
			return err
		}
		log.Info("also accepting an identity provider's tokens", "issuer", c.OIDC.Issuer, "jwks", c.OIDC.JWKSURL, "audience", c.OIDC.Audience)
	}
	cfg.Projections = controls
	cfg.History = m.history
	cfg.LastPosition = m.Store.LastPosition
	cfg.CORSOrigins = c.CORSOrigins
	cfg.Reflection = reflection
	cfg.Health = m.Health
	if m.tracer != nil {
		cfg.Interceptors = append(cfg.Interceptors, opentelemetry.Interceptor(m.tracer))
	}
	cfg.ReadyLag = c.ReadyLag
	if m.Metrics != nil {
		cfg.Metrics = m.Metrics.Handler()
		cfg.ObserveCall = m.Metrics.ObserveCall
	}
	if m.TuneAPI != nil {
		m.TuneAPI(&cfg)
	}
	full, err := api.New(cfg, h.services...)
	if err != nil {
		return err
	}
	probes := m.api // the probes' own while awaiting an import, else nil
	m.api = full
	if m.Metrics != nil {
		m.collect()
		if c.MetricsListen != "" {
			if err := m.serveMetrics(cfg); err != nil {
				return err
			}
		}
	} else if c.MetricsListen != "" {
		return errors.New("--metrics-listen: metrics are off")
	}
	m.serve(m.api.Handler())
	if probes != nil {
		probes.Close()
	}
	log.Info("tideline serving Connect, gRPC and gRPC-Web", "url", "http://"+m.Addr(), "data", c.DataDir, "reflection", reflection)
	log.Info("get a token: tideline token --data " + c.DataDir + " --sub alice --role walker")
	return nil
}

// startEmbedded starts the embedded NATS server (alone, or a node of
// Config.Cluster), connects in-process and guards the data disk. It
// returns the replica count of the streams and buckets.
func (m *Main) startEmbedded() (replicas int, err error) {
	c, log := &m.Config, m.Config.Logger
	nsCfg := natsserver.Config{
		StoreDir:     filepath.Join(c.DataDir, "jetstream"),
		ClientListen: c.NATSListen,
		SyncAlways:   c.SyncAlways,
		EventsStream: c.EventsStream,
		Name:         c.ServerName,
		Cluster:      c.Cluster,
	}
	replicas = c.Replicas
	if replicas == 0 {
		replicas = Replicas(c.Cluster)
	}
	if c.Cluster.Enabled() && nsCfg.Name == "" {
		if nsCfg.Name, err = ClusterServerName(c.DataDir); err != nil {
			return 0, err
		}
	}
	if c.NATSListen != "" {
		if m.Users, err = natsserver.OpenUsers(NATSUserDir(c.DataDir), log); err != nil {
			return 0, err
		}
		nsCfg.Users = m.Users
	}
	if c.LeafListen != "" {
		if m.Devices, err = natsserver.OpenDevices(DeviceDir(c.DataDir), log); err != nil {
			return 0, err
		}
		nsCfg.LeafListen, nsCfg.Devices, nsCfg.JetStreamDomain = c.LeafListen, m.Devices, natsserver.HubDomain
	}
	m.ns, err = natsserver.Start(nsCfg)
	if err != nil {
		return 0, err
	}
	if c.Cluster.Enabled() {
		log.Info("nats cluster node; waiting for the cluster to form", "cluster", c.Cluster.Name, "server_name", nsCfg.Name,
			"route_listen", c.Cluster.Listen, "routes", strings.Join(c.Cluster.Routes, ","), "replicas", replicas)
	}
	if c.NATSListen != "" {
		log.Info("nats listening (credentials required)", "url", m.ns.ClientURL(), "registry", NATSUserDir(c.DataDir))
	}
	if c.LeafListen != "" {
		log.Info("edge devices accepted", "leaf_url", natsserver.LeafURL(m.ns), "registry", DeviceDir(c.DataDir))
	}
	m.nc, err = m.connect("tideline")
	if err != nil {
		return 0, err
	}
	m.disk, err = natsserver.NewDiskGuard(m.ns, natsserver.DiskGuardConfig{Reserve: c.DiskReserve, Logger: log})
	if err != nil {
		return 0, err
	}
	return replicas, nil
}

// connectExternal connects to the NATS server or cluster at Config.NATSURL
// (with Config.NATSCreds) instead of starting one. It returns the replica
// count of the streams and buckets: Config.Replicas, or 3 when the server
// is in a cluster, else 1.
func (m *Main) connectExternal() (replicas int, err error) {
	c, log := &m.Config, m.Config.Logger
	if c.NATSListen != "" || c.LeafListen != "" || c.Cluster.Enabled() {
		return 0, errors.New("--nats-url: the NATS server is not ours: --nats-listen, --leaf-listen and the cluster flags configure the embedded one")
	}
	if m.nc, err = m.dialExternal("tideline"); err != nil {
		return 0, err
	}
	replicas = c.Replicas
	if replicas == 0 {
		replicas = 1
		if m.nc.ConnectedClusterName() != "" {
			replicas = 3
		}
	}
	log.Info("using an external NATS server", "url", m.nc.ConnectedUrlRedacted(), "cluster", m.nc.ConnectedClusterName(), "replicas", replicas)
	return replicas, nil
}

// dialExternal opens a connection named name to Config.NATSURL.
func (m *Main) dialExternal(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1), natsserver.LogAsyncErrors(m.Config.Logger)}
	if m.Config.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(m.Config.NATSCreds))
	}
	nc, err := nats.Connect(m.Config.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", m.Config.NATSURL, err)
	}
	return nc, nil
}

// connect opens a connection of a Module's own: in-process to the
// embedded server, else to the external one.
func (m *Main) connect(name string) (*nats.Conn, error) {
	if m.ns == nil {
		return m.dialExternal(name)
	}
	return natsserver.Connect(m.ns, name, natsserver.LogAsyncErrors(m.Config.Logger))
}

// Health returns why the server cannot serve: the event store refuses
// writes or cannot be reached, a projection is stopped or not running or
// still catching up, the reactions have stopped, or a Module's own check
// fails (the device gate is not serving). The health service and /readyz
// answer with it.
//
// A projection catches up when it starts (restoring its snapshot, or
// replaying the whole stream without one): until its lag has once been
// within Config.ReadyLag it would answer queries from a model behind the
// stream, so the server is not ready. Once caught up, a passing lag (a
// burst of writes) no longer makes the server unhealthy here; /readyz
// still lists every lagging projection.
func (m *Main) Health(ctx context.Context) error {
	last, err := m.Store.HealthyAt(ctx) // the stream's end, for every runner not known to be caught up
	if err != nil {
		return err
	}
	readyLag := cmp.Or(m.Config.ReadyLag, api.DefaultReadyLag)
	for _, r := range m.runners {
		st := r.State()
		switch st.State {
		case jetstream.Stopped:
			return fmt.Errorf("projection %s stopped at %d: %s", st.Name, st.StoppedAt, st.Reason)
		case jetstream.NotRunning:
			m.caughtUp.Delete(r) // a restart restores and catches up again
			return fmt.Errorf("projection %s not running: %s", st.Name, cmp.Or(st.Reason, "starting"))
		}
		if _, ok := m.caughtUp.Load(r); ok {
			continue
		}
		lag, err := r.LagAt(ctx, last)
		if err != nil {
			return fmt.Errorf("projection %s catching up: lag unknown: %w", st.Name, err)
		}
		if lag > readyLag {
			return fmt.Errorf("projection %s catching up: at %d, %d events behind (ready within %d)", st.Name, r.Position(), lag, readyLag)
		}
		m.caughtUp.Store(r, struct{}{})
	}
	if m.reactionsDone.Load() {
		return errors.New("reactions stopped")
	}
	for _, check := range m.checks {
		if err := check(ctx); err != nil {
			return err
		}
	}
	return nil
}

// goRun runs f(ctx) until it returns; Close waits for it (stopWait at
// most).
func (m *Main) goRun(ctx context.Context, f func(ctx context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f(ctx)
	}()
}

// ReplayStats counts the replays of the runners Run started that joined
// the shared pass, and those that read on consumers of their own (zero
// with SeparateReplays).
func (m *Main) ReplayStats() jetstream.ReplayStats {
	if m.replay == nil {
		return jetstream.ReplayStats{}
	}
	return m.replay.Stats()
}

// startRunner runs a runner for p until ctx ends, restarting it when it
// fails.
func (m *Main) startRunner(ctx context.Context, p projections.Projection) *jetstream.Runner {
	if m.asOf == nil {
		m.asOf = jetstream.NewAsOfLimits(0, 0, 0)
	}
	r := jetstream.NewRunner(m.Store, p, jetstream.RunnerOptions{Logger: m.Config.Logger, AsOf: m.asOf, Replay: m.replay})
	m.runners = append(m.runners, r)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// A runner that fails (its consumer or snapshot bucket lost while
		// the store was out of space or restarting) starts again from its
		// last snapshot.
		const maxBackoff = 30 * time.Second
		backoff := time.Second
		for {
			start := time.Now()
			err := r.Run(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			if time.Since(start) > maxBackoff {
				backoff = time.Second
			}
			m.Config.Logger.Error("projection stopped; restarting", "projection", p.Name(), "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}()
	return r
}

// Shutdown bounds: Close gives the API's calls in flight requestGrace
// to finish, the runners, the reactions and every goRun stopWait to
// return (longer while a runner's final snapshot upload still makes
// progress: see jetstream.Runner.Run, which cuts an upload idle for 4 s
// and any after a minute), and the connection's drain drainWait.
const (
	requestGrace = 4 * time.Second
	stopWait     = 5 * time.Second
	drainWait    = 2 * time.Second
	// stepDownWait bounds the wait for the others to elect new leaders
	// for what a cluster node led: about a second when they are there.
	stepDownWait = 2 * time.Second
)

// Close shuts down in order: stop accepting requests and end live
// streams, let in-flight requests finish (bounded), stop runners (each
// writes a final snapshot, bounded), flush the connection, stop NATS.
// Called while Run awaits an import (Config.AwaitImport), it ends the
// wait, and Run returns an error.
// It returns within seconds even on a cluster node whose peers are gone.
func (m *Main) Close() error {
	log := m.Config.Logger
	if log == nil {
		log = slog.Default()
	}
	began, last := time.Now(), time.Now()
	step := func(name string) { // a slow one is worth an operator's eye
		level, took := slog.LevelDebug, time.Since(last)
		if took >= time.Second {
			level = slog.LevelInfo
		}
		log.Log(context.Background(), level, "shutdown step", "step", name, "took", took.Round(time.Millisecond))
		last = time.Now()
	}
	if ended := m.endAwait(); ended != nil { // Run awaits an import: end it
		<-ended
	}
	if m.ns != nil && m.Config.Cluster.Enabled() {
		// Leaving on purpose: hand this node's leaderships to the others
		// first, so that writes through every node go on (NATS's lame duck
		// mode does the same).
		if moved, pending := natsserver.StepDown(m.ns, stepDownWait); moved > 0 {
			log.Info("shutdown: stepped down as leader", "groups", moved, "without_a_new_leader", pending)
		}
		step("step down")
	}
	if m.http == nil && m.ln != nil { // Run failed between listening and serving
		m.ln.Close()
	}
	if m.api != nil {
		m.api.Close()
	}
	if m.http != nil {
		// Calls in flight get requestGrace to finish. Then their contexts
		// end: a write still waiting for a leader fails (Unavailable,
		// outcome unknown; its client retries with the same key through
		// another node), and what is left is closed.
		ctx, cancel := context.WithTimeout(context.Background(), requestGrace)
		err := m.http.Shutdown(ctx)
		cancel()
		if err != nil {
			m.endRequests()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := m.http.Shutdown(ctx); err != nil {
				m.http.Close()
			}
			cancel()
		}
	}
	step("http")
	if m.metricsHTTP != nil {
		m.metricsHTTP.Close() // scrapes are short; none is worth waiting for
	} else if m.metricsLn != nil {
		m.metricsLn.Close()
	}
	if m.cancel != nil {
		m.cancel()
	}
	if !waitWhileUploading(&m.wg, m.runners, stopWait) {
		// Stuck on a cluster without a majority (creating a consumer
		// retries for as long as it has none): the NATS shutdown below
		// fails what they wait for. Nothing they hold is acknowledged.
		var busy []string
		stateOnly, cancel := context.WithCancel(context.Background())
		cancel() // Status then reads no lag from the store
		for _, r := range m.runners {
			if r.Status(stateOnly).State != jetstream.NotRunning {
				busy = append(busy, r.Name())
			}
		}
		log.Warn("shutdown: still busy; stopping NATS under them", "waited", stopWait,
			"projections", strings.Join(busy, ","), "reactions_done", m.reactionsDone.Load())
	}
	step("runners and reactions")
	for _, close := range m.closers {
		close()
	}
	if m.diskStop != nil {
		m.diskStop()
	}
	if m.nc != nil {
		closed := make(chan struct{})
		m.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := m.nc.Drain(); err == nil {
			select {
			case <-closed:
			case <-time.After(drainWait):
				m.nc.Close()
			}
		}
	}
	step("nats connection")
	if m.ns != nil {
		m.ns.Shutdown()
		m.ns.WaitForShutdown()
	}
	step("nats server")
	if m.stopTracing != nil {
		// A collector that is down loses the last spans, not the
		// shutdown: that is no failure of the server.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.stopTracing(ctx); err != nil {
			m.Config.Logger.Warn("tracing: the last spans were not sent", "err", err)
		}
		cancel()
		m.stopTracing = nil
	}
	log.Info("shut down", "took", time.Since(began).Round(time.Millisecond))
	return m.lock.Release()
}

// waitWhileUploading waits for wg, and reports whether it is done: d at
// most, or until d has passed since any of runners' snapshot uploads
// last progressed.
func waitWhileUploading(wg *sync.WaitGroup, runners []*jetstream.Runner, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	began := time.Now()
	t := time.NewTicker(d / 20)
	defer t.Stop()
	for {
		select {
		case <-done:
			return true
		case now := <-t.C:
			last := began
			for _, r := range runners {
				if at := r.UploadedAt(); at.After(last) {
					last = at
				}
			}
			if now.Sub(last) >= d {
				return false
			}
		}
	}
}

// runnerControl adapts a runner to the admin API.
type runnerControl struct{ r *jetstream.Runner }

func (c runnerControl) Status(ctx context.Context) api.ProjectionStatus {
	s := c.r.Status(ctx)
	return api.ProjectionStatus{Name: s.Name, Version: s.Version, Position: s.Position, Lag: s.Lag,
		State: projectionStates[s.State], StoppedAt: s.StoppedAt, Reason: s.Reason}
}

var projectionStates = map[jetstream.RunnerState]adminv1.ProjectionState{
	jetstream.NotRunning: adminv1.ProjectionState_PROJECTION_STATE_NOT_RUNNING,
	jetstream.Running:    adminv1.ProjectionState_PROJECTION_STATE_RUNNING,
	jetstream.Rebuilding: adminv1.ProjectionState_PROJECTION_STATE_REBUILDING,
	jetstream.Stopped:    adminv1.ProjectionState_PROJECTION_STATE_STOPPED,
}

func (c runnerControl) Rebuild(ctx context.Context) error { return c.r.Rebuild(ctx) }

func (c runnerControl) Resume(ctx context.Context) error { return c.r.Resume(ctx) }

func (c runnerControl) Skip(ctx context.Context, position uint64, reason string, meta es.Metadata) (uint64, error) {
	decision, err := c.r.Skip(ctx, position, reason, meta)
	return decision.Seq, err
}
