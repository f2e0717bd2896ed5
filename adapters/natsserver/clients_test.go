package natsserver_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/internal/logtest"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/wire"
)

// clientHub is a hub with a client port (Users) and a leaf port (Devices),
// an events stream configured like the event store's, events in it, and a
// durable consumer like the hub's reactions use.
type clientHub struct {
	*testHub
	users    *natsserver.Users
	usersDir string
	url      string
	stream   string // the events stream's name
}

// hubStreams are the events stream names the reader tests run with: the
// default (Config.EventsStream unset), and one configured, beside which a
// stream of the default's name holds other messages (legacyEvents).
var hubStreams = []struct{ name, stream string }{{"default_stream", ""}, {"configured_stream", "TL_EVENTS"}}

const legacyEvents = 2

const (
	hubDurable   = "reaction-alerts" // like a reaction's
	hubEphemeral = "runner_1"        // like a projection runner's ordered consumer, if its name leaked
	seededEvents = 9
)

// startClientHub starts a hub whose events stream is stream, "" for the
// default.
func startClientHub(tb testing.TB, stream string) *clientHub {
	tb.Helper()
	h := &clientHub{testHub: &testHub{dir: filepath.Join(tb.TempDir(), "devices"), logs: &logtest.Buffer{}},
		usersDir: filepath.Join(tb.TempDir(), "nats-users"), stream: cmp.Or(stream, wire.EventsStream)}
	log := slog.New(slog.NewTextHandler(h.logs, nil))
	var err error
	if h.devices, err = natsserver.OpenDevices(h.dir, log); err != nil {
		tb.Fatal(err)
	}
	if h.users, err = natsserver.OpenUsers(h.usersDir, log); err != nil {
		tb.Fatal(err)
	}
	h.ns, err = natsserver.Start(natsserver.Config{StoreDir: tb.TempDir(), Name: "hub", JetStreamDomain: natsserver.HubDomain,
		LeafListen: "127.0.0.1:-1", Devices: h.devices, ClientListen: "127.0.0.1:-1", Users: h.users, EventsStream: stream})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		h.ns.Shutdown()
		h.ns.WaitForShutdown()
	})
	h.url = h.ns.ClientURL()
	if h.nc, err = natsserver.Connect(h.ns, "hub"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.nc.Close)
	h.js, _ = jetstream.New(h.nc)
	ctx := context.Background()
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{Name: h.stream, Subjects: []string{"ev.>"},
		AllowDirect: true, DenyDelete: true, DenyPurge: true}); err != nil {
		tb.Fatal(err)
	}
	if _, err := h.js.CreateOrUpdateConsumer(ctx, h.stream, jetstream.ConsumerConfig{Durable: hubDurable,
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "ev.>"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := h.js.CreateConsumer(ctx, h.stream, jetstream.ConsumerConfig{Name: hubEphemeral,
		AckPolicy: jetstream.AckNonePolicy, FilterSubject: "ev.steps.>", InactiveThreshold: time.Hour}); err != nil {
		tb.Fatal(err)
	}
	for i := range seededEvents {
		if _, err := h.js.Publish(ctx, fmt.Sprintf("ev.steps.user.u%d", i%3), fmt.Appendf(nil, "event %d", i)); err != nil {
			tb.Fatal(err)
		}
	}
	if h.stream != wire.EventsStream {
		if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{Name: wire.EventsStream, Subjects: []string{"legacy.>"},
			AllowDirect: true}); err != nil {
			tb.Fatal(err)
		}
		for i := range legacyEvents {
			if _, err := h.js.Publish(ctx, "legacy.x", fmt.Appendf(nil, "legacy %d", i)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return h
}

// addUser registers a user and writes its creds file.
func (h *clientHub) addUser(tb testing.TB, name, role string) string {
	tb.Helper()
	_, creds, err := natsserver.AddUser(h.usersDir, name, role)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := h.users.Reload(); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// connectUser connects over TCP as a user, the way the README tells them
// to: their creds, their inbox prefix; no reconnects, so a cut shows.
func (h *clientHub) connectUser(tb testing.TB, name string, auth nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(h.url, auth, nats.CustomInboxPrefix(natsserver.UserInboxPrefix(name)),
		nats.NoReconnect(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		tb.Fatalf("connect as %s: %v", name, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func (h *clientHub) lastSeq(tb testing.TB) uint64 {
	tb.Helper()
	st, err := h.js.Stream(context.Background(), h.stream)
	if err != nil {
		tb.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

// The guard matches API subjects token by token: an events stream name of
// more than one token, or a wildcard, is refused at start.
func TestEventsStreamNameIsOneToken(t *testing.T) {
	for _, name := range []string{"EV.ENTS", "EV*", "EV>", "EV ENTS"} {
		if s, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), EventsStream: name}); err == nil {
			s.Shutdown()
			t.Errorf("%q: started", name)
		}
	}
}

// The issue as reported: a client port with no registry behind it let an
// anonymous client delete the store. Now it admits no one but the hub.
func TestClientPortWithoutUsersAdmitsNoOne(t *testing.T) {
	s, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir(), ClientListen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	hub, err := natsserver.Connect(s, "hub")
	if err != nil {
		t.Fatalf("in-process: %v", err)
	}
	defer hub.Close()
	js, _ := jetstream.New(hub)
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), nats.NoReconnect())
	if err == nil {
		js, _ := jetstream.New(nc)
		derr := js.DeleteStream(context.Background(), "EVENTS")
		nc.Close()
		t.Fatalf("anonymous client connected (stream delete: %v)", derr)
	}
}

func TestClientPortRequiresCredentials(t *testing.T) {
	h := startClientHub(t, "")
	stranger, _ := nkeys.CreateUser()
	strangerSeed, _ := stranger.Seed()
	strangerFile := filepath.Join(t.TempDir(), "stranger.nk")
	os.WriteFile(strangerFile, strangerSeed, 0o600)
	strangerOpt, err := nats.NkeyOptionFromSeed(strangerFile)
	if err != nil {
		t.Fatal(err)
	}
	revokedCreds := h.addUser(t, "gone", natsserver.RoleReader)
	if _, err := natsserver.RevokeUser(h.usersDir, "gone"); err != nil {
		t.Fatal(err)
	}
	// A registry file edited by hand to a role the hub does not know.
	adminCreds := h.addUser(t, "root", natsserver.RoleReader)
	file := filepath.Join(h.usersDir, "root.json")
	b, _ := os.ReadFile(file)
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), `"role": "reader"`, `"role": "admin"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	h.users.Reload()
	for name, opts := range map[string][]nats.Option{
		"no_credentials":   nil,
		"unregistered_key": {strangerOpt},
		"revoked_user":     {nats.UserCredentials(revokedCreds)},
		"unknown_role":     {nats.UserCredentials(adminCreds)},
		"user_password":    {nats.UserInfo("admin", "admin")},
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(h.url, append(opts, nats.NoReconnect())...)
			if err == nil {
				// What an open port allowed before: delete the store.
				js, _ := jetstream.New(nc)
				derr := js.DeleteStream(context.Background(), "EVENTS")
				nc.Close()
				t.Fatalf("connected without valid credentials (stream delete: %v)", derr)
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Fatalf("got %v, want an authorization error", err)
			}
		})
	}
	if _, err := h.js.Stream(context.Background(), "EVENTS"); err != nil {
		t.Fatalf("EVENTS: %v", err)
	}

	// Edge devices still connect on the leaf port beside it, and the hub's
	// own in-process connection keeps full rights.
	seed := addDevice(t, h.testHub, "bike-1")
	l := startLeaf(t, h.testHub, "bike-1", seed)
	poll.Until(t, 10*time.Second, "the device's leaf link", func() bool { return l.ns.NumLeafNodes() == 1 })
	got, err := h.nc.SubscribeSync("in.danger.device.bike-1")
	if err != nil {
		t.Fatal(err)
	}
	h.nc.Flush()
	poll.Until(t, 10*time.Second, "the device's commit at the hub", func() bool {
		l.nc.Publish("in.danger.device.bike-1", []byte("x"))
		_, err := got.NextMsg(20 * time.Millisecond)
		return err == nil
	})
	if _, err := h.js.Publish(context.Background(), "ev.steps.user.hub", []byte("x")); err != nil {
		t.Fatalf("hub append in-process: %v", err)
	}
}

func TestReaderReadsEvents(t *testing.T) {
	for _, hs := range hubStreams {
		t.Run(hs.name, func(t *testing.T) { testReaderReadsEvents(t, startClientHub(t, hs.stream)) })
	}
}

func testReaderReadsEvents(t *testing.T, h *clientHub) {
	creds := h.addUser(t, "analyst", natsserver.RoleReader)
	seedOpt, err := nats.NkeyOptionFromSeed(creds) // the same file, read as an nkey seed
	if err != nil {
		t.Fatal(err)
	}
	for name, auth := range map[string]nats.Option{"user_credentials": nats.UserCredentials(creds), "nkey_seed": seedOpt} {
		t.Run(name, func(t *testing.T) {
			nc := h.connectUser(t, "analyst", auth)
			js, err := jetstream.NewWithDomain(nc, natsserver.ReaderDomain)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := js.Stream(ctx, h.stream)
			if err != nil {
				t.Fatalf("stream info: %v", err)
			}
			if got, want := st.CachedInfo().State.LastSeq, h.lastSeq(t); got != want {
				t.Fatalf("stream info says last sequence %d, want %d", got, want)
			}

			// Ordered consumers, on everything and on one subject.
			readAll := func(cfg jetstream.OrderedConsumerConfig, want int) {
				t.Helper()
				cons, err := js.OrderedConsumer(ctx, h.stream, cfg)
				if err != nil {
					t.Fatalf("ordered consumer %v: %v", cfg.FilterSubjects, err)
				}
				batch, err := cons.Fetch(want, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for m := range batch.Messages() {
					if !strings.HasPrefix(m.Subject(), "ev.steps.user.") {
						t.Fatalf("read %q", m.Subject())
					}
					n++
				}
				if batch.Error() != nil || n != want {
					t.Fatalf("ordered consumer %v read %d, want %d (%v)", cfg.FilterSubjects, n, want, batch.Error())
				}
			}
			readAll(jetstream.OrderedConsumerConfig{}, seededEvents)
			readAll(jetstream.OrderedConsumerConfig{FilterSubjects: []string{"ev.steps.user.u1"}}, seededEvents/3)

			// Direct Get (the stream allows it) by sequence and by subject.
			m, err := st.GetMsg(ctx, 2)
			if err != nil || string(m.Data) != "event 1" {
				t.Fatalf("direct get 2: %v %v", err, m)
			}
			m, err = st.GetLastMsgForSubject(ctx, "ev.steps.user.u2")
			if err != nil || string(m.Data) != fmt.Sprintf("event %d", seededEvents-1) {
				t.Fatalf("direct get last: %v %v", err, m)
			}

			// Live events by plain subscription.
			sub, err := nc.SubscribeSync("ev.>")
			if err != nil {
				t.Fatal(err)
			}
			nc.Flush()
			if _, err := h.js.Publish(ctx, "ev.steps.user.live", []byte("live")); err != nil {
				t.Fatal(err)
			}
			if live, err := sub.NextMsg(5 * time.Second); err != nil || string(live.Data) != "live" {
				t.Fatalf("live event: %v", err)
			}
			sub.Unsubscribe()
		})
	}
}

// Everything a reader must not do, each tried for real: it fails, and the
// store and the hub's consumer are as they were. With a configured events
// stream, a stream of the default name is as out of reach as any other.
func TestReaderCannotWriteOrTouchOthers(t *testing.T) {
	for _, hs := range hubStreams {
		t.Run(hs.name, func(t *testing.T) { testReaderCannotWriteOrTouchOthers(t, startClientHub(t, hs.stream)) })
	}
}

func testReaderCannotWriteOrTouchOthers(t *testing.T, h *clientHub) {
	creds := h.addUser(t, "analyst", natsserver.RoleReader)
	nc := h.connectUser(t, "analyst", nats.UserCredentials(creds))
	js, _ := jetstream.NewWithDomain(nc, natsserver.ReaderDomain)
	setup, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last := h.lastSeq(t)
	consumers := func() (infos []jetstream.ConsumerInfo) {
		t.Helper()
		for _, name := range []string{hubDurable, hubEphemeral} {
			c, err := h.js.Consumer(setup, h.stream, name)
			if err != nil {
				t.Fatalf("the hub's consumer %s: %v", name, err)
			}
			infos = append(infos, *c.CachedInfo())
		}
		return infos
	}
	before := consumers()
	st, err := js.Stream(setup, h.stream)
	if err != nil {
		t.Fatal(err)
	}

	var ctx context.Context // each case's own, so a hang cannot pass for a refusal
	type refusal struct {
		name string
		try  func() error
	}
	tests := []refusal{
		{"delete_stream", func() error { return js.DeleteStream(ctx, h.stream) }},
		{"purge_stream", func() error { return st.Purge(ctx) }},
		{"update_stream", func() error {
			cfg := st.CachedInfo().Config
			cfg.Subjects = []string{"ev.>", "more.>"}
			_, err := js.UpdateStream(ctx, cfg)
			return err
		}},
		{"create_stream", func() error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"mine.>"}})
			return err
		}},
		{"delete_message", func() error { return st.DeleteMsg(ctx, 1) }},
		{"publish_event_core", func() error { return pubViolation(nc, "ev.steps.user.u1") }},
		{"publish_to_stream_api", func() error { return pubViolation(nc, "$JS.API.STREAM.DELETE."+h.stream) }},
		{"publish_to_hub_domain_api", func() error { return pubViolation(nc, "$JS.hub.API.STREAM.DELETE."+h.stream) }},
		{"subscribe_other_inboxes", func() error { return subViolation(nc, "_INBOX.>") }},
		{"update_hub_durable", func() error {
			_, err := js.CreateOrUpdateConsumer(ctx, h.stream, jetstream.ConsumerConfig{Durable: hubDurable,
				AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "nothing.>"})
			return err
		}},
		{"reuse_hub_durable_name", func() error {
			_, err := js.CreateOrUpdateConsumer(ctx, h.stream, jetstream.ConsumerConfig{Name: hubDurable,
				AckPolicy: jetstream.AckNonePolicy, FilterSubject: "nothing.>"})
			return err
		}},
		{"update_hub_ephemeral", func() error {
			_, err := js.CreateOrUpdateConsumer(ctx, h.stream, jetstream.ConsumerConfig{Name: hubEphemeral,
				AckPolicy: jetstream.AckNonePolicy, FilterSubject: "nothing.>", InactiveThreshold: time.Hour})
			return err
		}},
		{"pull_from_hub_ephemeral", func() error {
			return apiRequest(nc, natsserver.ReaderDomain, "CONSUMER.MSG.NEXT."+h.stream+"."+hubEphemeral, `{"batch":1,"no_wait":true}`)
		}},
		{"pull_from_hub_durable", func() error {
			c, err := js.Consumer(ctx, h.stream, hubDurable)
			if err != nil {
				return err
			}
			_, err = c.Fetch(1, jetstream.FetchMaxWait(time.Second))
			return err
		}},
		{"pull_from_hub_durable_by_name", func() error {
			return apiRequest(nc, natsserver.ReaderDomain, "CONSUMER.MSG.NEXT."+h.stream+"."+hubDurable, `{"batch":1,"no_wait":true}`)
		}},
		{"delete_hub_durable", func() error { return js.DeleteConsumer(ctx, h.stream, hubDurable) }},
		{"create_durable", func() error {
			_, err := js.CreateConsumer(ctx, h.stream, jetstream.ConsumerConfig{Durable: "mine", AckPolicy: jetstream.AckNonePolicy})
			return err
		}},
		{"create_acked_consumer", func() error {
			_, err := js.CreateConsumer(ctx, h.stream, jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy})
			return err
		}},
		{"create_push_consumer", func() error {
			return apiRequest(nc, natsserver.ReaderDomain, "CONSUMER.CREATE."+h.stream+".pushy",
				`{"stream_name":"`+h.stream+`","config":{"name":"pushy","ack_policy":"none","deliver_subject":"_INBOX.analyst.push"}}`)
		}},
		{"read_other_stream", func() error {
			_, err := js.Stream(ctx, "KV_other")
			return err
		}},
		{"list_streams", func() error {
			names := js.StreamNames(ctx)
			for range names.Name() {
			}
			return names.Err()
		}},
	}
	if h.stream != wire.EventsStream {
		// A stream of the default name (a hub's events before it was
		// configured, say) is as out of reach as any other.
		old := wire.EventsStream
		api := func(op, body string) func() error {
			return func() error { return apiRequest(nc, natsserver.ReaderDomain, op, body) }
		}
		tests = append(tests,
			refusal{"info_old_default_stream", func() error {
				_, err := js.Stream(ctx, old)
				return err
			}},
			refusal{"direct_get_old_default_stream", api("DIRECT.GET."+old, `{"seq":1}`)},
			refusal{"direct_get_last_old_default_stream", api("DIRECT.GET."+old+".legacy.x", "")},
			refusal{"msg_get_old_default_stream", api("STREAM.MSG.GET."+old, `{"seq":1}`)},
			refusal{"consume_old_default_stream", api("CONSUMER.CREATE."+old+".peek",
				`{"stream_name":"`+old+`","config":{"name":"peek","ack_policy":"none"}}`)},
			refusal{"purge_old_default_stream", api("STREAM.PURGE."+old, "")},
			refusal{"delete_old_default_stream", api("STREAM.DELETE."+old, "")},
			refusal{"delete_message_old_default_stream", api("STREAM.MSG.DELETE."+old, `{"seq":1}`)},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := tc.try()
			if err == nil {
				t.Fatal("allowed")
			}
			t.Logf("refused: %v", err)
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
				t.Fatalf("no answer (%v): want a refusal", err)
			}
			if !nc.IsConnected() {
				t.Fatalf("reader's connection dropped: %v", nc.LastError())
			}
		})
	}

	// A reply subject names where the server publishes the response: the
	// guard drops a request whose reply is not a user's inbox (ev.> would
	// be stored as an event). The guard serves a reader's requests in
	// order, so once a later request is answered the earlier are handled.
	for _, reply := range []string{"ev.steps.user.injected", "_INBOX_bike-1.x", "$JS.API.STREAM.DELETE." + h.stream} {
		if err := nc.PublishRequest("$JS."+natsserver.ReaderDomain+".API.STREAM.INFO."+h.stream, reply, nil); err != nil {
			t.Fatal(err)
		}
		if err := nc.PublishRequest("$JS."+natsserver.ReaderDomain+".API.DIRECT.GET."+h.stream, reply, []byte(`{"seq":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Stream(setup, h.stream); err != nil {
		t.Fatal(err)
	}

	if got := h.lastSeq(t); got != last {
		t.Fatalf("%s last sequence %d, want %d: a reader wrote to the store", h.stream, got, last)
	}
	if _, err := h.js.Stream(setup, h.stream); err != nil {
		t.Fatalf("%s: %v", h.stream, err)
	}
	if h.stream != wire.EventsStream {
		st, err := h.js.Stream(setup, wire.EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		if state := st.CachedInfo().State; state.Msgs != legacyEvents || state.Consumers != 0 {
			t.Fatalf("the stream of the default name holds %d messages and %d consumers, want %d and none", state.Msgs, state.Consumers, legacyEvents)
		}
	}
	for i, after := range consumers() {
		b := before[i]
		if after.Config.FilterSubject != b.Config.FilterSubject || after.Delivered != b.Delivered || after.NumPending != b.NumPending {
			t.Fatalf("the hub's consumer %s changed: filter %q → %q, delivered %d → %d, pending %d → %d", b.Name,
				b.Config.FilterSubject, after.Config.FilterSubject, b.Delivered.Stream, after.Delivered.Stream, b.NumPending, after.NumPending)
		}
	}
}

// apiRequest sends a raw JetStream API request through a domain and
// returns the error it is answered with, if any.
func apiRequest(nc *nats.Conn, domain, op, body string) error {
	m, err := nc.Request("$JS."+domain+".API."+op, []byte(body), 2*time.Second)
	if err != nil {
		return err
	}
	if strings.Contains(string(m.Data), `"error"`) || m.Header.Get("Status") != "" {
		return fmt.Errorf("%s %s: %s", m.Header.Get("Status"), m.Header.Get("Description"), m.Data)
	}
	return nil
}

// pubViolation publishes and returns the server's permission error.
func pubViolation(nc *nats.Conn, subject string) error {
	return asyncError(nc, func() error { return nc.Publish(subject, []byte("x")) })
}

// subViolation subscribes and returns the server's permission error.
func subViolation(nc *nats.Conn, subject string) error {
	var sub *nats.Subscription
	defer func() {
		if sub != nil {
			sub.Unsubscribe()
		}
	}()
	return asyncError(nc, func() (err error) {
		sub, err = nc.SubscribeSync(subject)
		return err
	})
}

// asyncError runs do and returns the error the server sends back for it
// (permission violations come asynchronously), or nil if none arrives
// within 2 s.
func asyncError(nc *nats.Conn, do func() error) error {
	errs := make(chan error, 1)
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errs <- err:
		default:
		}
	})
	defer nc.SetErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	if err := do(); err != nil {
		return err
	}
	nc.Flush()
	select {
	case err := <-errs:
		return err
	case <-time.After(2 * time.Second):
		return nil
	}
}

func TestRevokedUserIsCut(t *testing.T) {
	h := startClientHub(t, "")
	creds := h.addUser(t, "analyst", natsserver.RoleReader)
	nc := h.connectUser(t, "analyst", nats.UserCredentials(creds))
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })

	if _, err := natsserver.RevokeUser(h.usersDir, "analyst"); err != nil {
		t.Fatal(err)
	}
	if changed, err := h.users.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked user's connection is still open")
	}
	if _, err := nats.Connect(h.url, nats.UserCredentials(creds), nats.NoReconnect()); err == nil {
		t.Fatal("a revoked user connected again")
	}
}

func TestOpsMonitorsWithoutData(t *testing.T) {
	h := startClientHub(t, "")
	creds := h.addUser(t, "oncall", natsserver.RoleOps)
	nc := h.connectUser(t, "oncall", nats.UserCredentials(creds))
	js, _ := jetstream.NewWithDomain(nc, natsserver.OpsDomain)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("account info: %v", err)
	}
	st, err := js.Stream(ctx, "EVENTS")
	if err != nil || st.CachedInfo().State.Msgs != seededEvents {
		t.Fatalf("stream info: %v", err)
	}
	var names []string
	lister := st.ConsumerNames(ctx)
	for n := range lister.Name() {
		names = append(names, n)
	}
	if lister.Err() != nil || len(names) != 2 {
		t.Fatalf("consumer names %v, %v", names, lister.Err())
	}
	if _, err := st.Consumer(ctx, hubDurable); err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	if _, err := st.GetMsg(ctx, 1); err == nil {
		t.Fatal("ops read an event")
	}
	if err := apiRequest(nc, natsserver.OpsDomain, "CONSUMER.CREATE.EVENTS.peek",
		`{"stream_name":"EVENTS","config":{"name":"peek","ack_policy":"none"}}`); err == nil {
		t.Fatal("ops created a consumer")
	}
	if err := js.DeleteConsumer(ctx, "EVENTS", hubDurable); err == nil {
		t.Fatal("ops deleted a consumer")
	}
	if err := subViolation(nc, "ev.>"); err == nil {
		t.Fatal("ops subscribed to events")
	}

	// Advisories reach ops; the API audit (request and response bodies) does not.
	adv, err := nc.SubscribeSync("$JS.EVENT.>")
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	for _, name := range []string{"fresh", "fresh2"} { // the first one's audit comes before the second's advisory
		if _, err := h.js.CreateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{Name: name, AckPolicy: jetstream.AckNonePolicy}); err != nil {
			t.Fatal(err)
		}
	}
	sawCreated := false
	for !sawCreated {
		m, err := adv.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no consumer advisory: %v", err)
		}
		if strings.HasPrefix(m.Subject, "$JS.EVENT.ADVISORY.API") {
			t.Fatalf("ops received the API audit %s", m.Subject)
		}
		sawCreated = m.Subject == "$JS.EVENT.ADVISORY.CONSUMER.CREATED.EVENTS.fresh2"
	}
}
