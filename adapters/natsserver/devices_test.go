package natsserver_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/adapters/natsserver"
)

// syncBuf is a log sink tests can search.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

type testHub struct {
	ns      *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	dir     string
	devices *natsserver.Devices
	logs    *syncBuf
}

func startHub(tb testing.TB) *testHub {
	tb.Helper()
	h := &testHub{dir: filepath.Join(tb.TempDir(), "devices"), logs: &syncBuf{}}
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
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.CustomInboxPrefix(natsserver.DeviceInboxPrefix(id)))
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

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
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

// publish appends to the hub from the device and returns the ack's error.
func (l *leaf) publish(subject string) error {
	js, _ := jetstream.New(l.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := js.Publish(ctx, subject, []byte("x"), jetstream.WithRetryAttempts(0))
	return err
}

// directGet asks the hub for the last message on subject.
func (l *leaf) directGet(subject string) (*nats.Msg, error) {
	return l.nc.Request("$JS.hub.API.DIRECT.GET.EVENTS."+subject, nil, 500*time.Millisecond)
}

func TestDeviceAuthentication(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, h *testHub)
	}{
		{"registered_device_appends_and_reads_its_own_subjects", func(t *testing.T, h *testHub) {
			l := startLeaf(t, h, "a", addDevice(t, h, "a"))
			waitFor(t, "leaf connected", func() bool { return h.ns.NumLeafNodes() == 1 })
			waitFor(t, "append acked", func() bool { return l.publish("ev.safety.device.a") == nil })
			if err := l.publish("ev.telemetry.device.a"); err != nil {
				t.Fatal(err)
			}
			m, err := l.directGet("ev.safety.device.a")
			if err != nil || m.Header.Get("Nats-Sequence") == "" {
				t.Fatalf("direct get own subject: %v %v", err, m)
			}
		}},
		{"unknown_device_refused", func(t *testing.T, h *testHub) {
			kp, _ := nkeys.CreateUser()
			seed, _ := kp.Seed()
			startLeaf(t, h, "x", seed)
			waitFor(t, "refusal", func() bool { return h.devices.Refused() >= 2 && h.logs.count("edge device refused") >= 1 })
			if n := h.ns.NumLeafNodes(); n != 0 {
				t.Fatalf("%d leaf nodes connected", n)
			}
		}},
		{"revoked_device_cut_and_refused", func(t *testing.T, h *testHub) {
			startLeaf(t, h, "a", addDevice(t, h, "a"))
			waitFor(t, "leaf connected", func() bool { return h.ns.NumLeafNodes() == 1 })
			if _, err := natsserver.RevokeDevice(h.dir, "a"); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go h.devices.Watch(ctx, 50*time.Millisecond) // as serve does: no restart
			waitFor(t, "revoked device cut", func() bool { return h.ns.NumLeafNodes() == 0 })
			waitFor(t, "reconnect refused", func() bool { return h.devices.Refused() >= 2 && h.logs.count("edge device refused") >= 1 })
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
			waitFor(t, "late device connected", func() bool { return h.ns.NumLeafNodes() == 1 })
		}},
		{"device_cannot_write_or_read_others", func(t *testing.T, h *testHub) {
			seedA := addDevice(t, h, "a")
			addDevice(t, h, "b")
			la := startLeaf(t, h, "a", seedA)
			waitFor(t, "leaf connected", func() bool { return h.ns.NumLeafNodes() == 1 })
			waitFor(t, "own append acked", func() bool { return la.publish("ev.safety.device.a") == nil })
			// Something of b's and others' on the hub to try to read.
			for _, s := range []string{"ev.safety.device.b", "ev.steps.user.alice"} {
				if _, err := h.js.Publish(context.Background(), s, []byte("secret")); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range []string{"ev.safety.device.b", "ev.telemetry.device.b", "ev.safety.device.a", "_INBOX_b.x"} {
				if err := la.publish(s); err == nil && !strings.HasSuffix(s, ".a") {
					t.Errorf("device a appended to %s", s)
				}
			}
			for _, s := range []string{"ev.safety.device.b", "ev.steps.user.alice"} {
				if m, err := la.directGet(s); err == nil {
					t.Errorf("device a read %s: %q %q", s, m.Header, m.Data)
				}
			}
			if m, err := la.nc.Request("$JS.hub.API.STREAM.INFO.EVENTS", nil, 500*time.Millisecond); err == nil {
				t.Errorf("device a got stream info: %s", m.Data)
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
			waitFor(t, "interest of a's inbox at the hub", func() bool {
				return h.ns.GlobalAccount().SubscriptionInterest("_INBOX_a.marker")
			})
			for _, s := range []string{"ev.safety.device.b", "ev.x.y.z", "_INBOX_b.1", "foo", "_INBOX_a.marker"} {
				h.nc.Publish(s, []byte("x"))
			}
			h.nc.Flush()
			waitFor(t, "marker", func() bool {
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
			// b's subject holds only the hub's own message.
			m, err := h.nc.Request("$JS.API.DIRECT.GET.EVENTS.ev.telemetry.device.b", nil, time.Second)
			if err != nil || m.Header.Get("Status") != "404" {
				t.Fatalf("b's telemetry subject got something: %v %q", err, m.Header)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, startHub(t)) })
	}
}
