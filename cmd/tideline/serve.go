package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/internal/memlimit"
	"github.com/tideline/tideline/cmd/tideline/server"
	stepsmodel "github.com/tideline/tideline/projections/steps"
)

const serveUsage = `usage: tideline serve [--data DIR] [--listen ADDR] [flags]

Runs the server: an embedded NATS JetStream store under DIR (created on
first start, with the token signing key DIR/keys/token-ed25519.pem) and the
Connect, gRPC and gRPC-Web API on ADDR, with the web console at
http://ADDR/ (/console/). Logs where it listens; Ctrl-C
(SIGINT) or SIGTERM shuts it down cleanly, keeping all data.

Blobs (images, audio) are kept in JetStream object stores under DIR, or
with --s3-endpoint and --s3-bucket in an S3-compatible store, with the
credentials in the environment: TIDELINE_S3_ACCESS_KEY and
TIDELINE_S3_SECRET_KEY. Clients upload and download them through signed,
expiring URLs on ADDR under /blobs/ (key: DIR/keys/blob-links.key), which
start with --public-url.

Callers present a bearer token from 'tideline token', or with --oidc-issuer
(or --jwks-url), --oidc-audience and --oidc-roles an access token of an
OpenID Connect identity provider (Cognito, Keycloak, Auth0), its groups
(--oidc-role-claim) mapped to roles.

Probes: GET /healthz (live) and /readyz (ready: store reachable, every
projection running and within --ready-lag events; 503 with a JSON body
otherwise) on ADDR, without a token. The gRPC health service says
NOT_SERVING while a projection is stopped, or catching up after a start
(until it is first within --ready-lag): use it or /readyz for readiness,
/healthz for liveness (a long replay must not get the server killed). Prometheus metrics: /metrics on ADDR
(admin or metrics token) and, with --metrics-listen, on a listener of
their own.`

func serveCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", serveUsage, stderr)
	var c server.Config
	var sync, cors string
	fs.StringVar(&c.DataDir, "data", "./data", "data directory (JetStream store, signing key)")
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address of the Connect/gRPC/gRPC-Web API")
	fs.StringVar(&c.NATSListen, "nats-listen", "", "also accept NATS clients (registered with 'tideline nats-user add') on this address, e.g. 127.0.0.1:4222; default in-process only")
	fs.StringVar(&c.LeafListen, "leaf-listen", "", "accept edge devices (NATS leaf nodes, registered with 'tideline device add') on this address, e.g. 0.0.0.0:7422")
	fs.StringVar(&sync, "sync", "default", "fsync policy: 'default' (periodic; survives kill -9) or 'always' (also survives power loss, much slower)")
	fs.DurationVar(&c.DuplicateWindow, "dup-window", 2*time.Minute, "idempotency-key window of the EVENTS stream")
	fs.StringVar(&c.AlertWebhook, "alert-webhook", "", "POST each safety alert (JSON) to this URL; alerts are always logged")
	fs.Float64Var(&c.DeviceRate, "device-rate", 100, "edge devices: commits per second each device lane may have admitted, sustained (beyond it they wait, first at the hub, then on the device)")
	fs.IntVar(&c.DeviceBurst, "device-burst", 2000, "edge devices: commits each device lane may have admitted at once (the token bucket's size)")
	fs.StringVar(&cors, "cors-origins", "", "comma-separated browser origins allowed (default: any)")
	reserveMiB := fs.Int64("disk-reserve-mb", 0, "refuse writes (ResourceExhausted) while less than this many MiB are free on the data disk, and resume above it; 0: 64, at most a tenth of the disk; -1: only once the disk is full")
	fs.IntVar(&c.MaxConns, "max-conns", api.DefaultMaxConns, "most API connections open at once; more are reset at once")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", api.DefaultIdleTimeout, "close API connections without a call for this long")
	fs.IntVar(&c.StepsWindow, "steps-window", stepsmodel.DefaultWindow, fmt.Sprintf("dates the steps read model holds in full, back from the newest date recorded (1 to %d); counts of older dates are read from the event store, their leaderboards keep their top %d. A change rebuilds the model at start", stepsmodel.MaxWindow, stepsmodel.SummaryTop))
	fs.DurationVar(&c.ReactionMaxAge, "reaction-max-age", reactions.DefaultMaxAge, "notify (push, e-mail, Slack, safety alerts) only of events recorded at most this long ago; older ones are skipped as history (counted in tideline_reactions_skipped_history_total), as when a new server replays an old stream; 0: no bound")
	fs.DurationVar(&c.RaffleTick, "raffle-tick", server.DefaultRaffleTick, "how often raffles whose draw time has come are drawn")
	fs.StringVar(&c.Reflection, "reflection", "auto", "gRPC reflection: 'auto' (open when --listen is loopback, else token required), 'on' (open), 'token' or 'off'")
	fs.StringVar(&c.PublicURL, "public-url", "", "the server's URL as clients reach it, which blob upload and download links start with, e.g. https://tideline.example (default http://<--listen address>)")
	fs.StringVar(&c.S3.Endpoint, "s3-endpoint", "", "keep blobs in this S3-compatible store, e.g. https://s3.eu-west-1.amazonaws.com, with --s3-bucket and credentials in TIDELINE_S3_ACCESS_KEY and TIDELINE_S3_SECRET_KEY (default: JetStream object stores under --data)")
	fs.StringVar(&c.S3.Bucket, "s3-bucket", "", "the S3 bucket that holds the blobs (with --s3-endpoint); it must exist")
	fs.StringVar(&c.SMTP.Host, "smtp-host", "", "send e-mail notifications through this SMTP server (password, if any, in TIDELINE_SMTP_PASSWORD); default: no e-mail")
	fs.IntVar(&c.SMTP.Port, "smtp-port", 587, "the SMTP server's port (submission, STARTTLS)")
	fs.StringVar(&c.SMTP.Username, "smtp-user", "", "the SMTP user name, if the server wants one")
	fs.StringVar(&c.SMTP.From, "smtp-from", "", "the sender of e-mail notifications, e.g. 'Tideline <noreply@tideline.example>' (required with --smtp-host)")
	smtpTLS := fs.String("smtp-tls", "mandatory", "STARTTLS: 'mandatory' (refuse to send in clear), 'opportunistic' or 'none'")
	fs.StringVar(&c.OpenAI.STTURL, "stt-url", "", "transcribe lectures through this OpenAI-compatible server (base URL with /v1, e.g. a whisper server; key in TIDELINE_OPENAI_API_KEY); default: pocketsphinx, English only")
	fs.StringVar(&c.OpenAI.STTModel, "stt-model", "whisper-1", "the speech-to-text model (with --stt-url)")
	fs.StringVar(&c.OpenAI.LLMURL, "llm-url", "", "restructure lecture transcripts through this OpenAI-compatible chat server (base URL with /v1: vLLM, llama.cpp, Ollama); default: TextRank, offline")
	fs.StringVar(&c.OpenAI.LLMModel, "llm-model", "gpt-4o-mini", "the chat model (with --llm-url)")
	fs.StringVar(&c.Tracing.Endpoint, "otlp-endpoint", "", "export OpenTelemetry traces over OTLP/HTTP to this collector, e.g. http://localhost:4318 (spans go to /v1/traces unless the URL has a path); default: the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else no tracing")
	fs.Float64Var(&c.Tracing.SampleRatio, "trace-sample", 1, "with tracing on, the share of new traces recorded, 0 to 1 (a trace stays sampled or not through its commits, reactions and notifications)")
	fs.DurationVar(&c.VerifyEvery, "verify-every", time.Minute, "how often the labeling verification batch decides the tasks that have their labels (idempotent; each run's decisions are events)")
	fs.StringVar(&c.VAPIDKeyFile, "vapid-key-file", "", "the Web Push (VAPID) key pair, JSON, created on first start; browsers' push subscriptions are bound to it (default: vapid.json in --data)")
	fs.StringVar(&c.WebPush.Subject, "vapid-subject", "mailto:admin@localhost", "how push services reach the operator: a mailto: or https: URL, sent in every Web Push")
	fs.BoolVar(&c.EgressAllowPrivate, "egress-allow-private", false, "let users' Slack webhooks and Web Push endpoints reach loopback, private (RFC 1918, fc00::/7), link-local (cloud metadata) and CGNAT addresses, for a push service or Slack proxy inside the network; default: refused, the delivery fails as unusable")
	fs.StringVar(&c.FCM.Project, "fcm-project", "", "send push notifications to apps through this Firebase project (with --fcm-credentials; default: the credentials' project_id)")
	fs.StringVar(&c.FCM.CredentialsFile, "fcm-credentials", "", "the Firebase service account's JSON key file; default: no FCM (app subscriptions' deliveries fail)")
	fs.StringVar(&c.OIDC.Issuer, "oidc-issuer", "", "also accept access tokens of this OpenID Connect identity provider (Cognito, Keycloak, Auth0), e.g. https://sso.example/realms/tideline: its keys come from <issuer>/.well-known/openid-configuration and tokens' iss must equal it (with --oidc-audience and --oidc-roles)")
	fs.StringVar(&c.OIDC.JWKSURL, "jwks-url", "", "the identity provider's keys (JWKS) at this URL, instead of discovering them with --oidc-issuer (without --oidc-issuer, iss is not checked)")
	fs.StringVar(&c.OIDC.Audience, "oidc-audience", "", "identity provider tokens must have this audience (aud; or client_id in a token without aud, as Cognito's access tokens), the client id Tideline is registered with; required with --oidc-issuer or --jwks-url")
	fs.StringVar(&c.OIDC.RoleClaim, "oidc-role-claim", api.DefaultRoleClaim, "the identity provider token's claim holding the caller's groups, a string or array; unless a claim has that very name, a dotted path reaches into objects: cognito:groups (Cognito), realm_access.roles (Keycloak)")
	oidcRoles := fs.String("oidc-roles", "", "map identity provider groups to Tideline roles, e.g. 'admins=admin,riders=rider'; the first role in the order admin, walker, rider, labeler, enterprise wins; device, service and metrics cannot be granted; a token with no mapped group is PermissionDenied")
	metrics := fs.Bool("metrics", true, "count Prometheus metrics and serve them at /metrics on --listen to admin and metrics tokens ('tideline token --role metrics'); --metrics=false counts nothing")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "also serve /metrics on this address, e.g. 127.0.0.1:9464: open when it is a loopback address, else an admin or metrics token is required; default: none")
	fs.Uint64Var(&c.ReadyLag, "ready-lag", api.DefaultReadyLag, "/readyz answers 503 while a projection lags more than this many events behind the stream; gRPC health says NOT_SERVING until every projection has been within it once since start")
	fs.StringVar(&c.MapTiles, "map-tiles", "", "the web console's map tiles, a URL template such as https://tile.openstreetmap.org/{z}/{x}/{y}.png; default: the danger map's cells on a plain canvas with a scale (for offline machines)")
	fs.StringVar(&c.MapAttribution, "map-attribution", "", "the credit line the tiles' licence asks for, shown on the map with --map-tiles, e.g. '© OpenStreetMap contributors'")
	memLimit := fs.String("memory-limit", memlimit.Auto, "soft limit of the Go heap, e.g. 3GiB: the collector works harder rather than let garbage pass it (a start without snapshots makes much); 'auto': GOMEMLIMIT if set, else 90% of the container's (cgroup) memory limit if it has one; 'off': none")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.Cluster.Name, "cluster-name", "", "join a NATS cluster of this name (the same on every node), with --cluster-listen, --routes and --cluster-secret-file; default: a server alone")
	fs.StringVar(&c.Cluster.Listen, "cluster-listen", "", "accept the other cluster nodes' routes on this address, e.g. 0.0.0.0:6222")
	fs.StringVar(&c.Cluster.Advertise, "cluster-advertise", "", "the host:port the other nodes reach this node's routes at, when not --cluster-listen's (0.0.0.0, NAT)")
	routes := fs.String("routes", "", "the cluster nodes' route URLs, comma-separated, this node's own may be among them: nats-route://a:6222,nats-route://b:6222,nats-route://c:6222")
	secretFile := fs.String("cluster-secret-file", "", "a file holding the cluster's shared secret (the same on every node): routes present it and accept only it; required with --cluster-name")
	fs.StringVar(&c.ServerName, "server-name", "", "this node's NATS server name, unique in the cluster (default: the host name and a digest of --data)")
	fs.IntVar(&c.Replicas, "replicas", 0, "replicas of the EVENTS stream and of every stream and bucket beside it; 0: 3 in a cluster of at least three nodes (counted from --routes), else 1. Raising it on an existing data dir updates the streams")
	fs.DurationVar(&c.FailoverWait, "failover-wait", 15*time.Second, "how long a write waits for the EVENTS stream to have a leader (a cluster electing one, a node cut off from the majority) before failing with Unavailable")
	fs.BoolVar(&c.AwaitImport, "await-import", false, "a new cluster node: join the cluster, then wait (not ready, /readyz 503) until 'tideline cluster-import --routes ...' has copied a server alone's store into it, before opening the store; harmless once the cluster has it")
	fs.StringVar(&c.NATSURL, "nats-url", "", "use this existing NATS server or cluster with JetStream (e.g. nats://a:4222,nats://b:4222) instead of the embedded server; the events stay on it (replicas: --replicas, or 3 when it is a cluster)")
	fs.StringVar(&c.NATSCreds, "nats-creds", "", "the credentials file (.creds) to connect to --nats-url with")
	configFile := fs.String(configFlag, "", "read flags from this YAML (or JSON) file: keys are flag names (cluster-listen: ..., or nested cluster: {listen: ...}); flags on the command line win")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			return err
		}
	}
	if err := clusterFlags(&c, *routes, *secretFile); err != nil {
		return err
	}
	c.NoMetrics = !*metrics
	if c.NoMetrics && c.MetricsListen != "" {
		return errors.New("--metrics-listen needs --metrics")
	}
	if c.ReadyLag < 1 {
		return fmt.Errorf("--ready-lag: want at least 1 event, got %d", c.ReadyLag)
	}
	if c.ReactionMaxAge < 0 {
		return fmt.Errorf("--reaction-max-age: want 0 (no bound) or more, got %v", c.ReactionMaxAge)
	}
	if c.MaxConns < 1 {
		return fmt.Errorf("--max-conns: want at least 1, got %d", c.MaxConns)
	}
	if _, err := api.ParseReflection(c.Reflection, nil); err != nil {
		return fmt.Errorf("--reflection: %w", err)
	}
	if c.StepsWindow < 1 || c.StepsWindow > stepsmodel.MaxWindow {
		return fmt.Errorf("--steps-window: want 1 to %d dates, got %d", stepsmodel.MaxWindow, c.StepsWindow)
	}
	if c.VerifyEvery < time.Second {
		return fmt.Errorf("--verify-every: want at least 1s, got %s", c.VerifyEvery)
	}
	if c.OIDC.Issuer != "" || c.OIDC.JWKSURL != "" {
		if c.OIDC.Audience == "" {
			return errors.New("--oidc-issuer and --jwks-url need --oidc-audience: without it, tokens the identity provider issued to other applications would be accepted")
		}
		var err error
		if c.OIDC.Roles, err = api.ParseIdPRoles(*oidcRoles); err != nil {
			return fmt.Errorf("--oidc-roles: %w", err)
		}
		if len(c.OIDC.Roles) == 0 {
			return errors.New("--oidc-issuer and --jwks-url need --oidc-roles, e.g. 'admins=admin,riders=rider'")
		}
	} else if c.OIDC.Audience != "" || *oidcRoles != "" {
		return errors.New("--oidc-audience and --oidc-roles go with --oidc-issuer or --jwks-url")
	}
	if c.RaffleTick <= 0 {
		return fmt.Errorf("--raffle-tick: want a positive duration, got %s", c.RaffleTick)
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("--idle-timeout: want a positive duration, got %s", c.IdleTimeout)
	}
	if c.Tracing.SampleRatio < 0 || c.Tracing.SampleRatio > 1 {
		return fmt.Errorf("--trace-sample: want 0 to 1, got %v", c.Tracing.SampleRatio)
	}
	switch sync {
	case "default":
	case "always":
		c.SyncAlways = true
	default:
		return fmt.Errorf("--sync: want 'default' or 'always', got %q", sync)
	}
	if (c.S3.Endpoint == "") != (c.S3.Bucket == "") {
		return errors.New("--s3-endpoint and --s3-bucket go together")
	}
	if c.S3.Endpoint != "" {
		c.S3.AccessKey, c.S3.SecretKey = os.Getenv("TIDELINE_S3_ACCESS_KEY"), os.Getenv("TIDELINE_S3_SECRET_KEY")
		if c.S3.AccessKey == "" || c.S3.SecretKey == "" {
			return errors.New("--s3-endpoint: set TIDELINE_S3_ACCESS_KEY and TIDELINE_S3_SECRET_KEY in the environment")
		}
	}
	if c.SMTP.Host != "" {
		var err error
		if c.SMTP.TLS, err = smtp.ParseTLS(*smtpTLS); err != nil {
			return fmt.Errorf("--smtp-tls: %w", err)
		}
		if c.SMTP.From == "" {
			return errors.New("--smtp-host needs --smtp-from, the sender's address")
		}
		c.SMTP.Password = os.Getenv("TIDELINE_SMTP_PASSWORD")
	}
	c.OpenAI.APIKey = os.Getenv("TIDELINE_OPENAI_API_KEY")
	if cors != "" {
		c.CORSOrigins = strings.Split(cors, ",")
	}
	c.DiskReserve = *reserveMiB << 20
	selfCgroup, _ := os.ReadFile("/proc/self/cgroup") // none off Linux: no container limit
	mem, err := memlimit.Choose(*memLimit, os.Getenv("GOMEMLIMIT"), "/sys/fs/cgroup", string(selfCgroup))
	if err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	c.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	slog.SetDefault(c.Logger)
	if mem.Bytes > 0 {
		debug.SetMemoryLimit(mem.Bytes)
		c.Logger.Info("memory limit", "bytes", mem.Bytes, "from", mem.Source)
	} else {
		debug.SetMemoryLimit(math.MaxInt64) // none, not even the runtime's from GOMEMLIMIT under --memory-limit off
	}
	// Spans the collector did not take are reported here (dropped, never retried).
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { c.Logger.Warn("tracing", "err", err) }))
	m := &server.Main{Config: c}
	if err = m.Run(ctx); err != nil {
		if c.AwaitImport && ctx.Err() != nil { // stopped while awaiting the import
			c.Logger.Info("shut down while awaiting the import")
			return nil
		}
		return err
	}
	select {
	case <-ctx.Done():
		c.Logger.Info("shutting down")
	case err = <-m.Failed():
		c.Logger.Error("stopping", "err", err)
	}
	return errors.Join(err, m.Close())
}

// clusterFlags checks the cluster flags and sets c.Cluster's routes and
// secret: a cluster needs a name, a route listener and a secret.
func clusterFlags(c *server.Config, routes, secretFile string) error {
	var err error
	if c.Cluster.Routes, err = natsserver.ParseRoutes(routes); err != nil {
		return fmt.Errorf("--routes: %w", err)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("--replicas: want 0 (automatic) to 5, got %d", c.Replicas)
	}
	if c.FailoverWait <= 0 {
		return fmt.Errorf("--failover-wait: want a positive duration, got %s", c.FailoverWait)
	}
	if c.NATSCreds != "" && c.NATSURL == "" {
		return errors.New("--nats-creds goes with --nats-url")
	}
	if c.AwaitImport && (c.NATSURL != "" || !c.Cluster.Enabled()) {
		return errors.New("--await-import goes with --cluster-name and --routes: it waits for 'tideline cluster-import' to copy a store in through the cluster's routes, which a server alone or --nats-url has none of (it would wait forever)")
	}
	if c.NATSURL != "" {
		if c.Cluster.Enabled() || secretFile != "" || c.NATSListen != "" || c.LeafListen != "" {
			return errors.New("--nats-url uses a NATS server that is not ours: the cluster flags, --nats-listen and --leaf-listen configure the embedded one")
		}
		return nil
	}
	if !c.Cluster.Enabled() {
		if secretFile != "" || c.Cluster.Advertise != "" {
			return errors.New("--cluster-secret-file and --cluster-advertise go with --cluster-name")
		}
		if c.Replicas > 1 {
			return fmt.Errorf("--replicas %d needs a cluster (--cluster-name): a server alone holds one replica", c.Replicas)
		}
		return nil
	}
	if c.Cluster.Name == "" || c.Cluster.Listen == "" {
		return errors.New("a cluster node needs --cluster-name and --cluster-listen (and --routes to the other nodes)")
	}
	if secretFile == "" {
		return errors.New("--cluster-name needs --cluster-secret-file: routes must authenticate, or anyone reaching the route port could join and read every event")
	}
	c.Cluster.Secret, err = readClusterSecret(secretFile)
	return err
}

// readClusterSecret reads the cluster's shared secret from
// --cluster-secret-file: at least 16 characters, spaces around trimmed.
func readClusterSecret(secretFile string) (string, error) {
	b, err := os.ReadFile(secretFile)
	if err != nil {
		return "", fmt.Errorf("--cluster-secret-file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < 16 {
		return "", fmt.Errorf("--cluster-secret-file %s: want a secret of at least 16 characters, e.g. from 'openssl rand -hex 32'", secretFile)
	}
	return secret, nil
}
