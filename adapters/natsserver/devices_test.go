package natsserver_test

import (
	"context"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/internal/logtest"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/wire"
)

type testHub struct {
	ns      *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	dir     string
	devices *natsserver.Devices
	logs    *logtest.Buffer
}

func startHub(tb testing.TB) *testHub {
	tb.Helper()
	h := &testHub{dir: filepath.Join(tb.TempDir(), "devices"), logs: &logtest.Buffer{}}
	var err error
	h.devices, err = natsserver.OpenDevices(h.dir, slog.New(slog.NewTextHandler(h.logs, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	h.ns, err = natsserver.Start(natsserver.Config{StoreDir: tb.TempDir(), Name: "hub", JetStreamDomain: natsserver.HubDomain,
		LeafListen: "127.0.0.1:-1", Devices: h.devices})
	if err != nil {
		tb.Fatal(err)
	}
	h.nc, err = natsserver.Connect(h.ns, "hub")
	if err != nil {
		tb.Fatal(err)
	}
	h.js, _ = jetstream.New(h.nc)
	if _, err := h.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}, AllowDirect: true}); err != nil {
		tb.Fatal(err)
	}
	// A stand-in for the device gate: it answers every device request.
	for _, s := range []string{"in.*.device.*", "in.*.device.*.last"} {
		if _, err := h.nc.Subscribe(s, func(m *nats.Msg) { m.Respond([]byte("ok " + m.Subject)) }); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		h.nc.Close()
		h.ns.Shutdown()
		h.ns.WaitForShutdown()
	})
	return h
}

// leaf is a device's embedded server connected to the hub as a leaf node.
type leaf struct {
	ns *server.Server
	nc *nats.Conn
}

func startLeaf(tb testing.TB, h *testHub, id string, seed []byte) *leaf {
	tb.Helper()
	u, _ := url.Parse(natsserver.LeafURL(h.ns))
	ns, err := server.NewServer(&server.Options{
		ServerName: "leaf-" + id, JetStream: true, JetStreamDomain: "edge", StoreDir: tb.TempDir(), DontListen: true, NoSigs: true,
		LeafNode: server.LeafNodeOpts{ReconnectInterval: 100 * time.Millisecond,
			Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}, Nkey: string(seed)}}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("leaf not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.CustomInboxPrefix(wire.DeviceInboxPrefix(id)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return &leaf{ns: ns, nc: nc}
}

func addDevice(tb testing.TB, h *testHub, id string) []byte {
	tb.Helper()
	_, seed, err := natsserver.AddDevice(h.dir, id, "rider-"+id)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := h.devices.Reload(); err != nil {
		tb.Fatal(err)
	}
	return seed
}

// request sends a request from the device and returns the answer's error.
func (l *leaf) request(subject string) error {
	_, err := l.nc.Request(subject, []byte("x"), 500*time.Millisecond)
	return err
}

func TestDeviceAuthentication(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, h *testHub)
	}{
		{"registered_device_reaches_the_gate_on_its_own_lanes", func(t *testing.T, h *testHub) {
			l := startLeaf(t, h, "a", addDevice(t, h, "a"))
			poll.Until(t, 10*time.Second, "leaf connected", func() bool { return h.ns.NumLeafNodes() == 1 })
			poll.Until(t, 10*time.Second, "answer", func() bool { return l.request("in.danger.device.a") == nil })
			for _, s := range []string{"in.danger.device.a.last", "in.telemetry.device.a", "in.telemetry.device.a.last"} {
				if err := l.request(s); err != nil {
					t.Fatalf("request %s: %v", s, err)
				}
			}
		}},
		{"unknown_device_refused", func(t *testing.T, h *testHub) {
			kp, _ := nkeys.CreateUser()
			seed, _ := kp.Seed()
			startLeaf(t, h, "x", seed)
			poll.Until(t, 10*time.Second, "refusal", func() bool { return h.devices.Refused() >= 2 && h.logs.Count("edge device refused") >= 1 })
			if n := h.ns.NumLeafNodes(); n != 0 {
				t.Fatalf("%d leaf nodes connected", n)
			}
		}},
		{"revoked_device_cut_and_refused", func(t *testing.T, h *testHub) {
			startLeaf(t, h, "a", addDevice(t, h, "a"))
			poll.Until(t, 10*time.Second, "leaf connected", func() bool { return h.ns.NumLeafNodes() == 1 })
			if _, err := natsserver.RevokeDevice(h.dir, "a"); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go h.devices.Watch(ctx, 50*time.Millisecond) // as serve does: no restart
			poll.Until(t, 10*time.Second, "revoked device cut", func() bool { return h.ns.NumLeafNodes() == 0 })
			poll.Until(t, 10*time.Second, "reconnect refused", func() bool { return h.devices.Refused() >= 2 && h.logs.Count("edge device refused") >= 1 })
			if n := h.ns.NumLeafNodes(); n != 0 {
				t.Fatalf("revoked device connected again (%d leaf nodes)", n)
			}
		}},
		{"device_added_while_running_connects", func(t *testing.T, h *testHub) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go h.devices.Watch(ctx, 50*time.Millisecond)
			_, seed, err := natsserver.AddDevice(h.dir, "late", "rider-late")
			if err != nil {
				t.Fatal(err)
			}
			startLeaf(t, h, "late", seed)
			poll.Until(t, 10*time.Second, "late device connected", func() bool { return h.ns.NumLeafNodes() == 1 })
		}},
		{"device_cannot_write_or_read_others", func(t *testing.T, h *testHub) {
			seedA := addDevice(t, h, "a")
			addDevice(t, h, "b")
			la := startLeaf(t, h, "a", seedA)
			poll.Until(t, 10*time.Second, "leaf connected", func() bool { return h.ns.NumLeafNodes() == 1 })
			poll.Until(t, 10*time.Second, "own request answered", func() bool { return la.request("in.danger.device.a") == nil })
			// Something of b's and others' on the hub to try to read.
			for _, s := range []string{"ev.safety.device.b", "ev.safety.device.a", "ev.steps.user.alice"} {
				if _, err := h.js.Publish(context.Background(), s, []byte("secret")); err != nil {
					t.Fatal(err)
				}
			}
			// No subject of EVENTS, not even its own (only the device gate
			// writes those, after checking), no other device's lanes, no
			// JetStream API: a JetStream answer goes to whatever reply
			// subject the device names, ev.<anything> included.
			for _, s := range []string{"ev.safety.device.a", "ev.telemetry.device.a", "ev.safety.device.b", "ev.safety.alert.x",
				"ev.delivery.order.o1", "in.danger.device.b", "in.telemetry.device.b.last", "_INBOX_b.x",
				"$JS.hub.API.DIRECT.GET.EVENTS.ev.safety.device.a", "$JS.hub.API.DIRECT.GET.EVENTS.ev.steps.user.alice",
				"$JS.hub.API.STREAM.INFO.EVENTS", "$JS.hub.API.STREAM.PURGE.EVENTS",
				"$JS.hub.API.DIRECT.GET.DEVICE_QUARANTINE.quarantine.danger.device.a"} {
				if err := la.request(s); err == nil {
					t.Errorf("device a got an answer on %s", s)
				}
			}
			// Nor through a reply subject.
			if err := la.nc.PublishRequest("$JS.hub.API.STREAM.INFO.EVENTS", "ev.safety.rider.bob", nil); err != nil {
				t.Fatal(err)
			}
			la.nc.Flush()
			// EVENTS holds only the hub's own messages.
			for _, s := range []string{"ev.telemetry.device.a", "ev.safety.rider.bob", "ev.safety.alert.x", "ev.delivery.order.o1"} {
				m, err := h.nc.Request("$JS.API.DIRECT.GET.EVENTS."+s, nil, time.Second)
				if err != nil || m.Header.Get("Status") != "404" {
					t.Fatalf("%s got something: %v %q", s, err, m.Data)
				}
			}
			for _, s := range []string{"ev.safety.device.b", "ev.safety.device.a"} {
				m, err := h.nc.Request("$JS.API.DIRECT.GET.EVENTS."+s, nil, time.Second)
				if err != nil || string(m.Data) != "secret" {
					t.Fatalf("%s holds %q (%v), want only the hub's message", s, m.Data, err)
				}
			}
			// Hub traffic the device must not see, then a marker it may.
			var got []string
			var mu sync.Mutex
			sub, err := la.nc.Subscribe(">", func(m *nats.Msg) {
				mu.Lock()
				got = append(got, m.Subject)
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			la.nc.Flush()
			poll.Until(t, 10*time.Second, "interest of a's inbox at the hub", func() bool {
				return h.ns.GlobalAccount().SubscriptionInterest("_INBOX_a.marker")
			})
			for _, s := range []string{"ev.safety.device.b", "ev.x.y.z", "_INBOX_b.1", "foo", "_INBOX_a.marker"} {
				h.nc.Publish(s, []byte("x"))
			}
			h.nc.Flush()
			poll.Until(t, 10*time.Second, "marker", func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, s := range got {
					if s == "_INBOX_a.marker" {
						return true
					}
				}
				return false
			})
			mu.Lock()
			defer mu.Unlock()
			for _, s := range got {
				if s != "_INBOX_a.marker" {
					t.Errorf("device a received hub traffic on %s", s)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, startHub(t)) })
	}
}

// TestConnected: every registered device is listed, connected while its
// leaf link is up; a revoked one is not listed.
func TestConnected(t *testing.T) {
	h := startHub(t)
	seedA := addDevice(t, h, "a")
	addDevice(t, h, "b")
	addDevice(t, h, "gone")
	if _, err := natsserver.RevokeDevice(h.dir, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.devices.Reload(); err != nil {
		t.Fatal(err)
	}
	l := startLeaf(t, h, "a", seedA)
	var got map[string]bool
	poll.Until(t, 10*time.Second, "a connected", func() bool {
		var err error
		got, err = h.devices.Connected()
		return err == nil && got["a"]
	})
	if want := map[string]bool{"a": true, "b": false}; !maps.Equal(got, want) {
		t.Fatalf("Connected = %v, want %v", got, want)
	}
	l.ns.Shutdown()
	poll.Until(t, 10*time.Second, "a disconnected", func() bool {
		got, err := h.devices.Connected()
		return err == nil && !got["a"] && len(got) == 2
	})
}
