package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/internal/poll"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
	"github.com/tideline/tideline/wire"
)

// deviceHub is `tideline serve --leaf-listen` in process, with clients.
type deviceHub struct {
	m        *server.Main
	url      string
	admin    string
	safety   safetyv1connect.SafetyServiceClient
	delivery deliveryv1connect.DeliveryServiceClient
	board    dashboardv1connect.DashboardServiceClient
}

func startDeviceHub(t *testing.T) *deviceHub {
	t.Helper()
	m := &server.Main{Config: server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:-1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	h := &deviceHub{m: m, url: "http://" + m.Addr(), admin: mainToken(t, m, "root", auth.Admin)}
	h.safety = safetyv1connect.NewSafetyServiceClient(http.DefaultClient, h.url)
	h.delivery = deliveryv1connect.NewDeliveryServiceClient(http.DefaultClient, h.url)
	h.board = dashboardv1connect.NewDashboardServiceClient(http.DefaultClient, h.url)
	waitHealth(t, h.url, healthv1.HealthCheckResponse_SERVING) // the device gate among the rest
	return h
}

// addDevice registers a device for rider and returns its credentials.
func (h *deviceHub) addDevice(t *testing.T, id, rider string) edge.Creds {
	t.Helper()
	dev, seed, err := natsserver.AddDevice(server.DeviceDir(h.m.Config.DataDir), id, rider)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Devices.Reload(); err != nil {
		t.Fatal(err)
	}
	return edge.Creds{Format: edge.CredsFormat, DeviceID: id, RiderID: rider, LeafUser: dev.NKey, NKeySeed: string(seed), HubDomain: natsserver.HubDomain}
}

// rogueDevice is a registered device's key in a hostile program: a bare
// leaf node that publishes whatever it likes, wherever it is let.
func (h *deviceHub) rogueDevice(t *testing.T, c edge.Creds) *nats.Conn {
	t.Helper()
	u, _ := url.Parse(natsserver.LeafURL(h.m.NATS()))
	ns, err := nserver.NewServer(&nserver.Options{ServerName: "rogue-" + c.DeviceID, DontListen: true, NoSigs: true, MaxPayload: 8 << 20,
		LeafNode: nserver.LeafNodeOpts{ReconnectInterval: 100 * time.Millisecond,
			Remotes: []*nserver.RemoteLeafOpts{{URLs: []*url.URL{u}, Nkey: c.NKeySeed}}}})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("rogue leaf not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.CustomInboxPrefix(wire.DeviceInboxPrefix(c.DeviceID)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() })
	poll.Until(t, 10*time.Second, "rogue device linked", func() bool { return ns.NumLeafNodes() == 1 })
	// Interest in the hub's subjects crosses the link a moment later.
	// (Asked as the device gate's clients do, or as devices did before it,
	// so that the test can be run against the layouts before.)
	poll.Until(t, 10*time.Second, "hub interest", func() bool {
		for _, s := range []string{"in.danger.device." + c.DeviceID + ".last",
			"$JS.hub.API.DIRECT.GET.EVENTS.ev.safety.device." + c.DeviceID, "$JS.hub.API.DIRECT.GET.DEVICE_INGRESS.in.danger.device." + c.DeviceID} {
			if _, err := nc.Request(s, nil, 200*time.Millisecond); err == nil {
				return true
			}
		}
		return false
	})
	return nc
}

// devCommit encodes events as one tideline.es.v1.Commit, as a device does.
func devCommit(t *testing.T, events ...proto.Message) []byte {
	t.Helper()
	c := &esv1.Commit{}
	for _, e := range events {
		b, _ := proto.Marshal(e)
		c.Events = append(c.Events, &esv1.Event{Id: ulid.Make().String(), Type: string(e.ProtoReflect().Descriptor().FullName()),
			OccurredAt: timestamppb.Now(), Data: b})
	}
	b, _ := proto.Marshal(c)
	return b
}

func dangerEv(id, rider, device string, sev safetyv1.Severity) *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: id, RiderId: rider, DeviceId: device, Kind: safetyv1.DangerKind_DANGER_KIND_CRASH,
		Severity: sev, PeakAccelG: 6, DetectedAt: timestamppb.New(time.Now().Add(-time.Second))}
}

// spray publishes data on every subject a device might write, the old
// layout's and the new's, its own and others': whatever the hub lets
// through is stored. It returns how many the hub acknowledged as stored.
func spray(t *testing.T, nc *nats.Conn, data []byte, hdr nats.Header, subjects ...string) int {
	t.Helper()
	var wg sync.WaitGroup
	var stored atomic.Int32
	for _, s := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Denied subjects get no answer: the wait is bounded.
			r, err := nc.RequestMsg(&nats.Msg{Subject: s, Data: data, Header: hdr}, time.Second)
			if err == nil && !strings.Contains(string(r.Data), `"error"`) {
				stored.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(stored.Load())
}

func ownSubjects(dev string) []string {
	return []string{"ev.safety.device." + dev, "in.danger.device." + dev, "ev.telemetry.device." + dev, "in.telemetry.device." + dev}
}

func (h *deviceHub) dangerList(t *testing.T, rider string, minPos uint64) *safetyv1.ListDangerEventsResponse {
	t.Helper()
	res, err := h.safety.ListDangerEvents(context.Background(), authed(&safetyv1.ListDangerEventsRequest{RiderId: rider, Limit: 100, MinPosition: minPos}, h.admin))
	if err != nil {
		t.Fatal(err)
	}
	return res.Msg
}

// A registered device, however it is programmed, cannot write danger
// events for another rider or device, hide an alert, invent orders or
// ratings, pre-empt another rider's report with a message id, or store a
// huge message: every read model stays as if it had sent nothing, and
// the hub keeps serving honest devices. Its own valid events arrive,
// bound to its registered rider.
func TestRogueDeviceCannotForge(t *testing.T) {
	t.Parallel()
	h := startDeviceHub(t)
	ctx := context.Background()
	rogue := h.rogueDevice(t, h.addDevice(t, "bike-a", "alice"))
	bikeB := h.addDevice(t, "bike-b", "bob") // bob's own device, offline for now
	bob := mainToken(t, h.m, "bob", auth.Rider)

	// bob has an open alert (a severe report from his phone).
	if _, err := h.safety.ReportDanger(ctx, authed(&safetyv1.ReportDangerRequest{Event: dangerEv("bob-1", "bob", "phone-bob", safetyv1.Severity_SEVERITY_HIGH)}, bob)); err != nil {
		t.Fatal(err)
	}
	var alertID string
	poll.Until(t, 10*time.Second, "bob's alert", func() bool {
		res, err := h.safety.ListAlerts(ctx, authed(&safetyv1.ListAlertsRequest{RiderId: "bob", OpenOnly: true}, h.admin))
		if err == nil && len(res.Msg.Alerts) == 1 {
			alertID = res.Msg.Alerts[0].RaisedV2.GetAlertId()
		}
		return alertID != ""
	})

	everywhere := append(ownSubjects("bike-a"), "ev.safety.device.bike-b", "in.danger.device.bike-b", "ev.safety.rider.bob",
		"ev.safety.alert."+alertID, "ev.delivery.order.fake-1")
	// Danger events for bob, in bob's device's name or in its own.
	spray(t, rogue, devCommit(t, dangerEv("forged-1", "bob", "bike-b", safetyv1.Severity_SEVERITY_CRITICAL)), nil, everywhere...)
	spray(t, rogue, devCommit(t, dangerEv("forged-2", "bob", "bike-a", safetyv1.Severity_SEVERITY_CRITICAL)), nil, everywhere...)
	// bob's alert acknowledged, so nobody comes.
	spray(t, rogue, devCommit(t, &safetyv1.AlertAcknowledged{AlertId: alertID, By: "admin:root", At: timestamppb.Now()}), nil, everywhere...)
	// An order and a one-star rating for bob.
	spray(t, rogue, devCommit(t,
		&deliveryv1.OrderPlaced{OrderId: "fake-1", StoreId: "s", Pickup: &deliveryv1.LatLng{Lat: 37.5, Lng: 127}, Dropoff: &deliveryv1.LatLng{Lat: 37.5, Lng: 127}, Amount: 1, Zone: "wydm9q", PlacedAt: timestamppb.Now()},
		&deliveryv1.OrderRated{OrderId: "fake-1", RiderId: "bob", Stars: 1, RatedAt: timestamppb.Now()}), nil, everywhere...)
	// The message id bob's next report will be stored under.
	spray(t, rogue, []byte("x"), nats.Header{"Nats-Msg-Id": []string{"ev.safety.rider.bob/danger:bob-2"}}, everywhere...)
	// 8 MiB.
	spray(t, rogue, make([]byte, 8<<20-4096), nil, ownSubjects("bike-a")...)
	// A forged commit for bob, on every subject the device may send to,
	// naming as reply subject bob's stream in EVENTS and the other
	// device's lanes: whatever answers there (a stream's ack, a Direct Get
	// of the device's own message) would be stored as bob's.
	forged := devCommit(t, dangerEv("forged-3", "bob", "", safetyv1.Severity_SEVERITY_CRITICAL))
	hdr := nats.Header{"Tl-Event-Types": []string{"tideline.safety.v1.DangerDetected"}}
	for _, reply := range []string{"ev.safety.rider.bob", "in.danger.device.bike-b", "ev.safety.device.bike-b"} {
		for _, s := range append(everywhere, "in.danger.device.bike-a.last") {
			if err := rogue.PublishMsg(&nats.Msg{Subject: s, Reply: reply, Data: forged, Header: hdr}); err != nil {
				t.Fatal(err)
			}
		}
		rogue.Flush()
		for _, s := range []string{"$JS.hub.API.DIRECT.GET.EVENTS.ev.safety.device.bike-a", "$JS.hub.API.DIRECT.GET.DEVICE_INGRESS.in.danger.device.bike-a"} {
			if err := rogue.PublishRequest(s, reply, nil); err != nil { // its own last message, answered there
				t.Fatal(err)
			}
		}
	}
	rogue.Flush()
	// Last, a valid event of its own: once it is in alice's list, the
	// rogue's earlier commits have been dealt with. It is sent again,
	// as the edge agent sends, until an answer says it is stored: on a
	// loaded machine the link can still be busy with the garbage above
	// (one CI run waited 10 s for it in vain). Being the same event, a
	// copy is listed once.
	own := devCommit(t, dangerEv("own-1", "alice", "bike-a", safetyv1.Severity_SEVERITY_LOW))
	stored := spray(t, rogue, own, nil, everywhere...) > 0
	var barrier uint64
	poll.Until(t, 30*time.Second, "the rogue's own valid event", func() bool {
		if !stored {
			stored = spray(t, rogue, own, nil, "in.danger.device.bike-a") > 0
		}
		l := h.dangerList(t, "alice", 0)
		if len(l.Events) > 0 {
			barrier = l.Position
		}
		return barrier > 0
	})
	if l := h.dangerList(t, "alice", barrier); len(l.Events) != 1 || l.Events[0].EventId != "own-1" || l.Events[0].DeviceId != "bike-a" {
		t.Fatalf("alice's events: %v", l.Events)
	}

	// bob's report goes through, not taken for a duplicate.
	res, err := h.safety.ReportDanger(ctx, authed(&safetyv1.ReportDangerRequest{Event: dangerEv("bob-2", "bob", "phone-bob", safetyv1.Severity_SEVERITY_LOW)}, bob))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.Duplicate {
		t.Error("bob's report was taken for a duplicate of the rogue's message")
	}
	l := h.dangerList(t, "bob", max(res.Msg.Position, barrier))
	var ids []string
	for _, e := range l.Events {
		ids = append(ids, e.EventId)
	}
	if fmt.Sprint(ids) != "[bob-2 bob-1]" { // no forged-1, -2, -3
		t.Errorf("bob's danger events: %v, want only his own", ids)
	}
	al, err := h.safety.ListAlerts(ctx, authed(&safetyv1.ListAlertsRequest{RiderId: "bob", OpenOnly: true, MinPosition: barrier}, h.admin))
	if err != nil || len(al.Msg.Alerts) != 1 {
		t.Errorf("bob's open alerts: %v %v, want his alert still open", al, err)
	}
	if _, err := h.delivery.GetOrder(ctx, authed(&deliveryv1.GetOrderRequest{OrderId: "fake-1"}, h.admin)); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("fake order: %v, want NotFound", err)
	}
	d, err := h.board.GetDashboard(ctx, authed(&dashboardv1.GetDashboardRequest{MinPosition: barrier}, h.admin))
	if err != nil {
		t.Fatal(err)
	}
	if d.Msg.Dashboard.Today.GetOrders() != 0 || len(d.Msg.Dashboard.RiderRanking) != 0 {
		t.Errorf("dashboard counts the rogue's orders (%d) or ratings (%v)", d.Msg.Dashboard.Today.GetOrders(), d.Msg.Dashboard.RiderRanking)
	}
	js, _ := h.m.Store.JetStream().Conn().JetStream()
	for _, s := range []string{"EVENTS", "DEVICE_QUARANTINE", "DEVICE_INGRESS"} {
		if info, err := js.StreamInfo(s); err == nil && info.State.Bytes > 1<<20 {
			t.Errorf("stream %s holds %d bytes: the 8 MiB message was stored", s, info.State.Bytes)
		}
	}

	// An honest device still gets through.
	a, err := edge.Open(ctx, edge.Config{Creds: bikeB, Hub: natsserver.LeafURL(h.m.NATS()), DataDir: t.TempDir(),
		LeafReconnect: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.RecordDanger(ctx, dangerEv("bike-b-1", "bob", "bike-b", safetyv1.Severity_SEVERITY_LOW)); err != nil {
		t.Fatal(err)
	}
	var got []string
	poll.Until(t, 10*time.Second, "the honest device's event", func() bool {
		got = got[:0]
		for _, e := range h.dangerList(t, "bob", 0).Events {
			got = append(got, e.EventId)
		}
		return len(got) > 0 && got[0] == "bike-b-1"
	})
	if fmt.Sprint(got) != "[bike-b-1 bob-2 bob-1]" {
		t.Fatalf("bob's danger events: %v, want only his own", got)
	}
}

// Twenty 10-byte garbage messages from one device do not hold up another
// device's CRITICAL event: it reaches the safety read model and raises
// its alert within a second (before the device gate and the poison fix,
// the alerts reaction retried each garbage commit for ~3 s: 62 s).
func TestGarbageDoesNotDelayAnotherDevicesAlert(t *testing.T) {
	h := startDeviceHub(t)
	ctx := context.Background()
	rogue := h.rogueDevice(t, h.addDevice(t, "bike-a", "alice"))
	a, err := edge.Open(ctx, edge.Config{Creds: h.addDevice(t, "bike-b", "bob"), Hub: natsserver.LeafURL(h.m.NATS()), DataDir: t.TempDir(),
		LeafReconnect: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	poll.Until(t, 10*time.Second, "bike-b linked", a.LinkUp)
	stored := 0
	for i := range 20 {
		stored += spray(t, rogue, []byte(fmt.Sprintf("garbage-%02d", i)), nil, ownSubjects("bike-a")...)
	}
	if stored < 20 {
		t.Fatalf("the hub took %d garbage messages, want at least 20 for the test to mean anything", stored)
	}
	at := time.Now()
	if _, err := a.RecordDanger(ctx, dangerEv("crit-1", "bob", "bike-b", safetyv1.Severity_SEVERITY_CRITICAL)); err != nil {
		t.Fatal(err)
	}
	var inModel, alerted time.Duration
	deadline := at.Add(10 * time.Second)
	for (inModel == 0 || alerted == 0) && time.Now().Before(deadline) {
		if inModel == 0 && len(h.dangerList(t, "bob", 0).Events) == 1 {
			inModel = time.Since(at)
		}
		if alerted == 0 {
			res, err := h.safety.ListAlerts(ctx, authed(&safetyv1.ListAlertsRequest{RiderId: "bob"}, h.admin))
			if err == nil && len(res.Msg.Alerts) == 1 {
				alerted = time.Since(at)
			}
		}
		time.Sleep(2 * time.Millisecond) // poll interval, bounded by the deadline
	}
	t.Logf("behind 20 garbage messages of another device: CRITICAL event in the safety read model after %v, alert raised after %v", inModel, alerted)
	if inModel == 0 || alerted == 0 || alerted > time.Second {
		t.Fatalf("CRITICAL event in the read model after %v, alert after %v (0: not within 10s); want both within 1s", inModel, alerted)
	}
}

// Admins see what the hub refused from devices, and why.
func TestRejectedDeviceCommitsListed(t *testing.T) {
	t.Parallel()
	h := startDeviceHub(t)
	ctx := context.Background()
	rogue := h.rogueDevice(t, h.addDevice(t, "bike-a", "alice"))
	if n := spray(t, rogue, []byte("0123456789"), nil, "in.danger.device.bike-a"); n != 1 {
		t.Fatalf("garbage stored %d times", n)
	}
	spray(t, rogue, devCommit(t, dangerEv("forged-1", "bob", "", safetyv1.Severity_SEVERITY_CRITICAL)), nil, "in.danger.device.bike-a")
	admin := adminv1connect.NewAdminServiceClient(h2cClient(), h.url, connect.WithGRPC())
	var got []*adminv1.RejectedDeviceCommit
	poll.Until(t, 10*time.Second, "two refusals listed", func() bool {
		res, err := admin.ListRejectedDeviceCommits(ctx, authed(&adminv1.ListRejectedDeviceCommitsRequest{DeviceId: "bike-a"}, h.admin))
		if err != nil {
			t.Fatal(err)
		}
		got = res.Msg.Commits
		return res.Msg.Total == 2
	})
	if got[0].Code != "foreign_rider" || got[1].Code != "undecodable" || got[0].RiderId != "alice" || got[0].Lane != "danger" ||
		!strings.Contains(got[0].Reason, `"bob"`) || got[0].QuarantineSeq <= got[1].QuarantineSeq {
		t.Fatalf("listed %v", got)
	}
	if res, _ := admin.ListRejectedDeviceCommits(ctx, authed(&adminv1.ListRejectedDeviceCommitsRequest{DeviceId: "bike-z"}, h.admin)); res.Msg.Total != 0 {
		t.Fatalf("another device's list: %v", res.Msg)
	}
	for _, tc := range []struct {
		tok  string
		req  *adminv1.ListRejectedDeviceCommitsRequest
		code connect.Code
	}{
		{mainToken(t, h.m, "alice", auth.Rider), &adminv1.ListRejectedDeviceCommitsRequest{}, connect.CodePermissionDenied},
		{mainToken(t, h.m, "bike-a", auth.Device), &adminv1.ListRejectedDeviceCommitsRequest{}, connect.CodePermissionDenied},
		{h.admin, &adminv1.ListRejectedDeviceCommitsRequest{Limit: 1001}, connect.CodeInvalidArgument},
		{h.admin, &adminv1.ListRejectedDeviceCommitsRequest{DeviceId: "a.b"}, connect.CodeInvalidArgument},
	} {
		if _, err := admin.ListRejectedDeviceCommits(ctx, authed(tc.req, tc.tok)); connect.CodeOf(err) != tc.code {
			t.Errorf("%v: %v, want %v", tc.req, err, tc.code)
		}
	}
	// A server that accepts no devices says so.
	m, _ := startMain(t, t.TempDir())
	plain := adminv1connect.NewAdminServiceClient(http.DefaultClient, "http://"+m.Addr())
	if _, err := plain.ListRejectedDeviceCommits(ctx, authed(&adminv1.ListRejectedDeviceCommitsRequest{}, mainToken(t, m, "root", auth.Admin))); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("without --leaf-listen: %v, want Unavailable", err)
	}
}

// h2cClient speaks HTTP/2 without TLS, as gRPC clients do.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func TestDevicesListed(t *testing.T) {
	t.Parallel()
	h := startDeviceHub(t)
	ctx := context.Background()
	admin := adminv1connect.NewAdminServiceClient(http.DefaultClient, h.url)
	list := func() []*adminv1.Device {
		t.Helper()
		res, err := admin.ListDevices(ctx, authed(&adminv1.ListDevicesRequest{}, h.admin))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.Devices
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("before any device: %v", got)
	}
	h.rogueDevice(t, h.addDevice(t, "bike-b", "bob"))
	h.addDevice(t, "bike-a", "alice")
	got := list()
	if len(got) != 2 || got[0].DeviceId != "bike-a" || got[0].RiderId != "alice" || got[0].Connected ||
		got[1].DeviceId != "bike-b" || !got[1].Connected || got[1].Revoked || got[1].CreatedAt == nil {
		t.Fatalf("listed %v", got)
	}
	if _, err := natsserver.RevokeDevice(server.DeviceDir(h.m.Config.DataDir), "bike-b"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Devices.Reload(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "revoked device listed as revoked and gone", func() bool {
		d := list()[1]
		return d.Revoked && d.RevokedAt != nil && !d.Connected
	})
	if _, err := admin.ListDevices(ctx, authed(&adminv1.ListDevicesRequest{}, mainToken(t, h.m, "bob", auth.Rider))); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a rider: %v, want PermissionDenied", err)
	}
	m, _ := startMain(t, t.TempDir())
	plain := adminv1connect.NewAdminServiceClient(http.DefaultClient, "http://"+m.Addr())
	if _, err := plain.ListDevices(ctx, authed(&adminv1.ListDevicesRequest{}, mainToken(t, m, "root", auth.Admin))); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("without --leaf-listen: %v, want Unavailable", err)
	}
}
