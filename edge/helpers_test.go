package edge_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/devicegate"
	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/edge/edgetest"
	"github.com/tideline/tideline/internal/poll"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
	"github.com/tideline/tideline/wire"
)

// hub is a real embedded hub: EVENTS stream, JetStream domain "hub", a
// leaf listener authenticated by a device registry, and the device gate
// admitting devices' commits into EVENTS.
type hub struct {
	ns       *nserver.Server
	nc       *nats.Conn
	store    *jetstream.Store
	gate     *devicegate.Gate
	stopGate func()
	devDir   string
	devices  *natsserver.Devices
	leafURL  string
	dir      string
}

func testLogger(tb testing.TB) *slog.Logger {
	if os.Getenv("EDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", tb.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startHub starts a hub on dir (a fresh temp dir when empty) with the
// given duplicate window.
func startHub(tb testing.TB, dir string, dupWindow time.Duration) *hub {
	tb.Helper()
	return startHubGate(tb, dir, dupWindow, devicegate.Config{})
}

// startHubGate is startHub with the device gate configured by gate.
func startHubGate(tb testing.TB, dir string, dupWindow time.Duration, gate devicegate.Config) *hub {
	tb.Helper()
	if dir == "" {
		dir = tb.TempDir()
	}
	h := &hub{dir: dir, devDir: filepath.Join(dir, "devices")}
	var err error
	h.devices, err = natsserver.OpenDevices(h.devDir, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	h.ns, err = natsserver.Start(natsserver.Config{
		StoreDir: filepath.Join(dir, "jetstream"), Name: "hub", JetStreamDomain: "hub",
		LeafListen: "127.0.0.1:-1", Devices: h.devices,
	})
	if err != nil {
		tb.Fatal(err)
	}
	h.leafURL = natsserver.LeafURL(h.ns)
	h.nc, err = natsserver.Connect(h.ns, "hub-test")
	if err != nil {
		tb.Fatal(err)
	}
	h.store, err = jetstream.Open(context.Background(), h.nc, jetstream.Config{DuplicateWindow: dupWindow})
	if err != nil {
		tb.Fatal(err)
	}
	gate.Conn, gate.Registry, gate.Logger = h.nc, h.devices.Registered, testLogger(tb)
	h.gate, err = devicegate.Open(context.Background(), gate)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.gate.Run(ctx); close(done) }()
	h.stopGate = func() { cancel(); <-done }
	tb.Cleanup(h.stop)
	return h
}

func (h *hub) stop() {
	if h.ns == nil {
		return
	}
	h.stopGate()
	h.nc.Close()
	h.ns.Shutdown()
	h.ns.WaitForShutdown()
	h.ns = nil
}

// addDevice registers a device and returns its credentials.
func (h *hub) addDevice(tb testing.TB, id string) edge.Creds {
	tb.Helper()
	dev, seed, err := natsserver.AddDevice(h.devDir, id, "rider-"+id)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := h.devices.Reload(); err != nil {
		tb.Fatal(err)
	}
	return edge.Creds{Format: edge.CredsFormat, DeviceID: id, RiderID: dev.RiderID, LeafUser: dev.NKey, NKeySeed: string(seed), HubDomain: "hub"}
}

// Where the gate admits a device's lanes in EVENTS.
func eventsDanger(dev string) string    { return wire.EventsSubject(safety.LaneDanger, dev) }
func eventsTelemetry(dev string) string { return wire.EventsSubject(safety.LaneTelemetry, dev) }

// hubEvents returns every event the hub holds on subject, in order.
func (h *hub) hubEvents(tb testing.TB, subject string) []es.Event {
	tb.Helper()
	sid, err := es.ParseStreamID(subject)
	if err != nil {
		tb.Fatal(err)
	}
	commits, _, err := h.store.Load(context.Background(), sid, 0)
	if err != nil {
		tb.Fatal(err)
	}
	var evs []es.Event
	for _, c := range commits {
		evs = append(evs, c.Events...)
	}
	return evs
}

// agentOpts tune openAgent.
type agentOpts struct {
	maxDisk int64
	// production keeps the agent's default timings (leaf reconnect 1 s,
	// retry cap 2 s) instead of the tests' shorter ones.
	production bool
}

func openAgent(tb testing.TB, creds edge.Creds, hubURL, dir string, o agentOpts) *edge.Agent {
	tb.Helper()
	cfg := edge.Config{
		Creds: creds, Hub: hubURL, DataDir: dir, MaxDisk: o.maxDisk,
		LeafReconnect: 250 * time.Millisecond, RetryMax: 500 * time.Millisecond, HubTimeout: time.Second,
		Logger: testLogger(tb),
	}
	if o.production {
		cfg.LeafReconnect, cfg.RetryMax, cfg.HubTimeout = 0, 0, 0
	}
	a, err := edge.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open agent: %v", err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

// danger makes the i-th test danger event.
func danger(dev string, i int) *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: fmt.Sprintf("%s-d%07d", dev, i), DeviceId: dev, RiderId: "rider-" + dev,
		Kind: safetyv1.DangerKind_DANGER_KIND_CRASH, Severity: safetyv1.Severity_SEVERITY_HIGH, PeakAccelG: 5,
		DetectedAt: timestamppb.Now()}
}

// telemetry makes the i-th test telemetry window (i in offset_ms[0]).
func telemetry(dev string, i, samples int) *telemetryv1.SamplesRecorded {
	t := &telemetryv1.SamplesRecorded{DeviceId: dev, RiderId: "rider-" + dev}
	for s := 0; s < samples; s++ {
		t.OffsetMs = append(t.OffsetMs, uint32(i))
		t.AccelXMg = append(t.AccelXMg, int32(s))
		t.AccelYMg = append(t.AccelYMg, 0)
		t.AccelZMg = append(t.AccelZMg, 1000)
		t.GyroXDdps = append(t.GyroXDdps, 0)
		t.GyroYDdps = append(t.GyroYDdps, 0)
		t.GyroZDdps = append(t.GyroZDdps, 0)
	}
	return t
}

// dangerIndexes returns the i of each test danger event, in hub order.
func dangerIndexes(tb testing.TB, evs []es.Event) []int {
	tb.Helper()
	out := make([]int, len(evs))
	for k, e := range evs {
		d, ok := e.Data.(*safetyv1.DangerDetected)
		if !ok {
			tb.Fatalf("event %d: %T, want DangerDetected", k, e.Data)
		}
		i, err := strconv.Atoi(d.EventId[len(d.EventId)-7:])
		if err != nil {
			tb.Fatal(err)
		}
		out[k] = i
	}
	return out
}

func telemetryIndexes(tb testing.TB, evs []es.Event) []int {
	tb.Helper()
	out := make([]int, len(evs))
	for k, e := range evs {
		t, ok := e.Data.(*telemetryv1.SamplesRecorded)
		if !ok {
			tb.Fatalf("event %d: %T, want SamplesRecorded", k, e.Data)
		}
		out[k] = int(t.OffsetMs[0])
	}
	return out
}

// checkExact fails unless got is exactly 0..n-1 in order.
func checkExact(tb testing.TB, what string, got []int, n int) {
	tb.Helper()
	if len(got) != n {
		dups, seen := 0, map[int]bool{}
		for _, i := range got {
			if seen[i] {
				dups++
			}
			seen[i] = true
		}
		tb.Fatalf("%s: hub has %d events, want %d (%d duplicates, %d distinct)", what, len(got), n, dups, len(seen))
	}
	for k, i := range got {
		if i != k {
			tb.Fatalf("%s: event %d at hub is #%d: order or exactly-once broken", what, k, i)
		}
	}
}

// hubEdgeSeq is the local sequence named by the hub's last commit on
// subject of EVENTS (0 if none).
func (h *hub) hubEdgeSeq(tb testing.TB, subject string) uint64 {
	tb.Helper()
	m, err := h.nc.Request("$JS.API.DIRECT.GET.EVENTS."+subject, nil, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	if r, err := wire.ReadDirectGet(m); err != nil || !r.Found {
		return 0
	}
	n, _ := strconv.ParseUint(m.Header.Get(wire.HeaderEdgeSeq), 10, 64)
	return n
}

// waitSynced waits until the hub's last commit on subject names local
// sequence seq.
func waitSynced(tb testing.TB, h *hub, subject string, seq uint64, d time.Duration) {
	tb.Helper()
	poll.Until(tb, d, fmt.Sprintf("local seq %d on %s", seq, subject), func() bool {
		return h.hubEdgeSeq(tb, subject) >= seq
	})
}

var _ = edgetest.NewProxy

type telemetryT = telemetryv1.SamplesRecorded

func protoSize(m proto.Message) (int, error) { return proto.Size(m), nil }
