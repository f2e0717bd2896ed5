package devicegate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/devicegate"
	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/internal/poll"
	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
	"github.com/tideline/tideline/wire"
)

// registry is a device registry a test can change while the gate runs.
type registry struct {
	mu   sync.Mutex
	devs map[string]safety.RegisteredDevice
}

func (r *registry) lookup(id string) safety.RegisteredDevice {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.devs[id]
}

func (r *registry) set(d safety.RegisteredDevice) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.devs[d.ID] = d
}

type env struct {
	ns    *nserver.Server
	nc    *nats.Conn
	js    jetstream.JetStream
	store *tljs.Store
	reg   *registry
	gate  *devicegate.Gate
}

func testLogger() *slog.Logger {
	if os.Getenv("GATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// setup starts a real embedded server with EVENTS and a gate; devices
// d1 (rider alice) and d2 (rider bob) are registered.
func setup(t *testing.T, cfg devicegate.Config) *env {
	t.Helper()
	ns, nc := natstest.Start(t)
	store, err := tljs.Open(context.Background(), nc, tljs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	e := &env{ns: ns, nc: nc, js: js, store: store, reg: &registry{devs: map[string]safety.RegisteredDevice{
		"d1": {ID: "d1", RiderID: "alice"}, "d2": {ID: "d2", RiderID: "bob"},
	}}}
	gc, err := natsserver.Connect(ns, "gate")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Conn, cfg.Registry, cfg.Logger = gc, e.reg.lookup, testLogger()
	if e.gate, err = devicegate.Open(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.gate.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gate: %v", err)
		}
		gc.Close()
	})
	// The gate serves once it answers.
	dev := e.device(t, "d1")
	poll.Until(t, 5*time.Second, "the gate", func() bool {
		_, err := dev.Request(wire.LastSubject(safety.LaneDanger, "d1"), nil, 100*time.Millisecond)
		return err == nil
	})
	return e
}

// device is a connection as device id's (its inbox).
func (e *env) device(t testing.TB, id string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(e.ns), nats.CustomInboxPrefix(wire.DeviceInboxPrefix(id)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

var now = func() time.Time { return time.Now() }

func dangerFor(rider, device, id string) *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: id, RiderId: rider, DeviceId: device, Kind: safetyv1.DangerKind_DANGER_KIND_CRASH,
		Severity: safetyv1.Severity_SEVERITY_CRITICAL, PeakAccelG: 6, DetectedAt: timestamppb.New(now().Add(-time.Second))}
}

// commit encodes events as a device does: one tideline.es.v1.Commit.
func commit(t testing.TB, events ...proto.Message) []byte {
	t.Helper()
	c := &esv1.Commit{}
	for _, e := range events {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		c.Events = append(c.Events, &esv1.Event{Id: ulid.Make().String(), Type: string(e.ProtoReflect().Descriptor().FullName()),
			OccurredAt: timestamppb.Now(), Data: b})
	}
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// send sends a commit as device id on lane (headers as key, value pairs)
// and returns the gate's reply.
func send(t testing.TB, dev *nats.Conn, lane safety.DeviceLane, id string, data []byte, hdr ...string) wire.GateReply {
	t.Helper()
	m := nats.NewMsg(wire.CommitSubject(lane, id))
	m.Data = data
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	r, err := dev.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatalf("send to %s: %v", m.Subject, err)
	}
	var rep wire.GateReply
	if err := json.Unmarshal(r.Data, &rep); err != nil {
		t.Fatalf("reply %q: %v", r.Data, err)
	}
	return rep
}

func last(t testing.TB, dev *nats.Conn, lane safety.DeviceLane, id, epoch string) wire.GateReply {
	t.Helper()
	m := nats.NewMsg(wire.LastSubject(lane, id))
	m.Header.Set(wire.HeaderEdgeEpoch, epoch)
	r, err := dev.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep wire.GateReply
	if err := json.Unmarshal(r.Data, &rep); err != nil || rep.Error != nil {
		t.Fatalf("last: %q %v", r.Data, err)
	}
	return rep
}

func expect(seq uint64) []string {
	return []string{jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(seq, 10)}
}

func (e *env) events(t testing.TB, lane safety.DeviceLane, device string) []es.Commit {
	t.Helper()
	sid, _ := es.ParseStreamID(wire.EventsSubject(lane, device))
	cs, _, err := e.store.Load(context.Background(), sid, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// dangerIDs returns the event ids of device's danger events in EVENTS, in order.
func (e *env) dangerIDs(t testing.TB, device string) []string {
	t.Helper()
	var ids []string
	for _, c := range e.events(t, safety.LaneDanger, device) {
		for _, ev := range c.Events {
			ids = append(ids, ev.Data.(*safetyv1.DangerDetected).EventId)
		}
	}
	return ids
}

func TestAdmitsDeviceCommitsBoundToTheRegistry(t *testing.T) {
	e := setup(t, devicegate.Config{})
	dev := e.device(t, "d1")
	// d1's events: one leaving ids empty, one naming itself, in one commit;
	// then telemetry.
	a, b := dangerFor("", "", "e1"), dangerFor("alice", "d1", "e2")
	a.ReceivedAt = timestamppb.New(time.Unix(0, 0)) // not the device's to choose
	r := send(t, dev, safety.LaneDanger, "d1", commit(t, a, b), append(expect(0), "Tl-Edge-Seq", "2", "Tl-Edge-First-Seq", "1", "Tl-Edge-Epoch", "ep")...)
	if r.Error != nil || r.Quarantined || r.Seq == 0 {
		t.Fatalf("reply %+v", r)
	}
	tel := &telemetryv1.SamplesRecorded{OffsetMs: []uint32{0, 10}, AccelZMg: []int32{1000, 1001}}
	if r := send(t, dev, safety.LaneTelemetry, "d1", commit(t, tel), expect(0)...); r.Error != nil || r.Quarantined {
		t.Fatalf("telemetry reply %+v", r)
	}
	cs := e.events(t, safety.LaneDanger, "d1")
	if len(cs) != 1 || cs[0].Seq != r.Seq || len(cs[0].Events) != 2 {
		t.Fatalf("EVENTS holds %v, want the admitted commit at %d", cs, r.Seq)
	}
	for _, ev := range cs[0].Events {
		d := ev.Data.(*safetyv1.DangerDetected)
		if d.RiderId != "alice" || d.DeviceId != "d1" || d.ReceivedAt.AsTime().Before(time.Now().Add(-time.Minute)) {
			t.Fatalf("admitted event not bound to the registry: %v", d)
		}
		if ev.Meta.Actor != "device:d1" || ev.Meta.Source != "edge:d1" {
			t.Fatalf("meta = %+v", ev.Meta)
		}
	}
	s := e.events(t, safety.LaneTelemetry, "d1")[0].Events[0].Data.(*telemetryv1.SamplesRecorded)
	if s.RiderId != "alice" || s.DeviceId != "d1" {
		t.Fatalf("telemetry not bound: %v", s)
	}
	if l := last(t, dev, safety.LaneDanger, "d1", "ep"); l.Seq != r.Seq || l.EdgeSeq != 2 {
		t.Fatalf("last: %+v, want seq %d edge seq 2", l, r.Seq)
	}
	if admitted, refused := e.gate.Stats(); admitted != 2 || refused != 0 {
		t.Fatalf("stats: admitted %d refused %d", admitted, refused)
	}
}

// Whatever a device sends on its own lanes, nothing invalid reaches
// EVENTS; each refusal is kept with its code, the device is told, and
// admins see them newest first.
func TestRefusedCommitsAreQuarantined(t *testing.T) {
	e := setup(t, devicegate.Config{})
	e.reg.set(safety.RegisteredDevice{ID: "gone", RiderID: "carol", RevokedAt: time.Now().Add(-time.Hour)})
	cases := []struct {
		name   string
		lane   safety.DeviceLane
		device string
		data   []byte
		code   safety.RejectCode
	}{
		{"ten_bytes_of_garbage", safety.LaneDanger, "d1", []byte("0123456789"), safety.RejectUndecodable},
		{"danger_for_another_rider", safety.LaneDanger, "d1", commit(t, dangerFor("bob", "", "x1")), safety.RejectForeignRider},
		{"danger_in_another_devices_name", safety.LaneDanger, "d1", commit(t, dangerFor("", "d2", "x2")), safety.RejectForeignDevice},
		{"acknowledgement_hiding_an_alert", safety.LaneDanger, "d1", commit(t, &safetyv1.AlertAcknowledged{AlertId: "alert-1", By: "admin:root"}), safety.RejectWrongType},
		{"alert_raised_by_a_device", safety.LaneTelemetry, "d1", commit(t, &safetyv1.AlertRaised{AlertId: "alert-2", RiderId: "bob", EventIds: []string{"x"}}), safety.RejectWrongType},
		{"danger_on_the_telemetry_lane", safety.LaneTelemetry, "d1", commit(t, dangerFor("", "", "x3")), safety.RejectWrongType},
		{"impossible_peak", safety.LaneDanger, "d1", commit(t, func() proto.Message { d := dangerFor("", "", "x4"); d.PeakAccelG = 1e6; return d }()), safety.RejectInvalid},
		{"empty_commit", safety.LaneDanger, "d1", nil, safety.RejectInvalid},
		{"unknown_device", safety.LaneDanger, "ghost", commit(t, dangerFor("", "", "x5")), safety.RejectUnknownDevice},
		{"revoked_device", safety.LaneDanger, "gone", commit(t, dangerFor("", "", "x6")), safety.RejectRevoked},
	}
	for _, tc := range cases {
		r := send(t, e.device(t, tc.device), tc.lane, tc.device, tc.data, "Tl-Edge-Seq", "7", "Nats-Msg-Id", "ev.safety.rider.bob/danger:"+tc.name, "Nats-Rollup", "all")
		if !r.Quarantined || r.Code != string(tc.code) || r.Reason == "" || r.Error != nil {
			t.Errorf("%s: reply %+v, want quarantined %s", tc.name, r, tc.code)
		}
	}
	// A valid commit behind them all is admitted.
	if r := send(t, e.device(t, "d1"), safety.LaneDanger, "d1", commit(t, dangerFor("", "", "ok"))); r.Quarantined || r.Error != nil {
		t.Fatalf("valid commit: %+v", r)
	}
	poll.Until(t, 10*time.Second, "every refusal listed", func() bool { _, n := e.gate.Rejected("", 100); return n == len(cases) })
	list, _ := e.gate.Rejected("", 100)
	for i, tc := range cases {
		r := list[len(cases)-1-i] // newest first
		if r.Code != string(tc.code) || r.DeviceId != tc.device || r.Lane != string(tc.lane) || r.Reason == "" {
			t.Errorf("%s: listed as %v, want code %s", tc.name, r, tc.code)
		}
		if r.EdgeLastSeq != 7 || r.ReceivedAt == nil || r.QuarantineSeq == 0 {
			t.Errorf("%s: record lacks provenance: %v", tc.name, r)
		}
	}
	if l, n := e.gate.Rejected("ghost", 10); n != 1 || l[0].RiderId != "" {
		t.Fatalf("ghost: %v (%d)", l, n)
	}
	if l, _ := e.gate.Rejected("d1", 10); l[0].RiderId != "alice" {
		t.Fatalf("a refused commit names the registered rider, got %q", l[0].RiderId)
	}
	if ids := e.dangerIDs(t, "d1"); len(ids) != 1 || ids[0] != "ok" {
		t.Fatalf("d1's danger events in EVENTS: %v", ids)
	}
	for _, lane := range wire.Lanes {
		for _, dev := range []string{"d2", "ghost", "gone"} {
			if n := len(e.events(t, lane, dev)); n != 0 {
				t.Fatalf("%s %s: %d commits reached EVENTS", lane, dev, n)
			}
		}
	}
	if n := len(e.events(t, safety.LaneTelemetry, "d1")); n != 0 {
		t.Fatalf("telemetry: %d commits reached EVENTS", n)
	}
	// The refused commit is kept as sent.
	q, err := e.js.Stream(context.Background(), wire.QuarantineStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.GetMsg(context.Background(), list[len(cases)-1].QuarantineSeq)
	if err != nil || string(m.Data) != "0123456789" {
		t.Fatalf("quarantined garbage: %v %q", err, m.Data)
	}
}

// The gate answers a device only on its own inbox: a reply subject in
// EVENTS, or another device's inbox, gets nothing, and nothing is stored
// there.
func TestAnswersOnlyTheDevicesInbox(t *testing.T) {
	e := setup(t, devicegate.Config{})
	d1 := e.device(t, "d1")
	watch, err := e.nc.SubscribeSync(">")
	if err != nil {
		t.Fatal(err)
	}
	e.nc.Flush()
	for _, reply := range []string{"ev.safety.rider.bob", "_INBOX_d2.x", "_INBOX_d1x.y"} {
		for _, subj := range []string{wire.CommitSubject(safety.LaneDanger, "d1"), wire.LastSubject(safety.LaneDanger, "d1")} {
			if err := d1.PublishMsg(&nats.Msg{Subject: subj, Reply: reply, Data: commit(t, dangerFor("bob", "", "inj"))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	d1.Flush()
	// A request of d1's own, answered: the ones before it were seen.
	if r := send(t, d1, safety.LaneDanger, "d1", commit(t, dangerFor("", "", "own"))); r.Error != nil {
		t.Fatalf("own commit: %+v", r)
	}
	for {
		m, err := watch.NextMsg(200 * time.Millisecond)
		if err != nil {
			break
		}
		if m.Subject == "ev.safety.rider.bob" || m.Subject == "_INBOX_d2.x" || m.Subject == "_INBOX_d1x.y" {
			t.Fatalf("the gate answered on %s: %q", m.Subject, m.Data)
		}
	}
	if m, err := e.nc.Request("$JS.API.DIRECT.GET.EVENTS.ev.safety.rider.bob", nil, time.Second); err != nil || m.Header.Get("Status") != "404" {
		t.Fatalf("EVENTS holds something on bob's subject: %v %q", err, m.Data)
	}
	if ids := e.dangerIDs(t, "d1"); fmt.Sprint(ids) != "[own]" {
		t.Fatalf("d1's events: %v: requests answered elsewhere were decided", ids)
	}
}

// One device's garbage does not delay another device's CRITICAL event.
func TestPoisonDoesNotHoldUpOtherDevices(t *testing.T) {
	e := setup(t, devicegate.Config{})
	d1, d2 := e.device(t, "d1"), e.device(t, "d2")
	replies, _ := d1.SubscribeSync(wire.DeviceInboxPrefix("d1") + ".flood")
	for i := range 20 {
		d1.PublishMsg(&nats.Msg{Subject: wire.CommitSubject(safety.LaneDanger, "d1"), Reply: wire.DeviceInboxPrefix("d1") + ".flood",
			Data: []byte(fmt.Sprintf("garbage-%02d", i))})
	}
	d1.Flush()
	at := time.Now()
	r := send(t, d2, safety.LaneDanger, "d2", commit(t, dangerFor("", "", "crit")), expect(0)...)
	took := time.Since(at)
	if r.Error != nil || r.Quarantined {
		t.Fatalf("d2's commit: %+v", r)
	}
	t.Logf("d2's CRITICAL event admitted %v after it was sent, behind 20 garbage commits of d1", took)
	if took > time.Second {
		t.Fatalf("d2's commit took %v", took)
	}
	for range 20 { // each garbage commit was quarantined or told to wait its turn
		m, err := replies.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep wire.GateReply
		json.Unmarshal(m.Data, &rep)
		if !rep.Quarantined && (rep.Error == nil || rep.Error.Code != 429) {
			t.Fatalf("garbage reply %+v", rep)
		}
	}
}

// Over its quota a device is told to retry later; nothing is stored or
// quarantined for it, its commits arrive in order as it retries, and
// another device is not slowed. A commit over wire.MaxDeviceCommitBytes
// is refused and nothing is stored.
func TestQuotas(t *testing.T) {
	e := setup(t, devicegate.Config{Rate: 20, Burst: 5})
	d1, d2 := e.device(t, "d1"), e.device(t, "d2")
	const n = 25
	start := time.Now()
	var seq uint64
	over := 0
	for i := 0; i < n; {
		r := send(t, d1, safety.LaneDanger, "d1", commit(t, dangerFor("", "", fmt.Sprintf("a%02d", i))), expect(seq)...)
		switch {
		case r.Error != nil && r.Error.Code == 429:
			over++
			if over == 1 { // another device meanwhile
				if r := send(t, d2, safety.LaneDanger, "d2", commit(t, dangerFor("", "", "b")), expect(0)...); r.Error != nil {
					t.Fatalf("d2 while d1 is over its quota: %+v", r)
				}
			}
			time.Sleep(10 * time.Millisecond) // the device's backoff
		case r.Error != nil || r.Quarantined:
			t.Fatalf("commit %d: %+v", i, r)
		default:
			seq = r.Seq
			i++
		}
	}
	if el := time.Since(start); el < 800*time.Millisecond || over == 0 {
		t.Fatalf("%d commits at 20/s with a burst of 5 took %v (%d times over quota)", n, el, over)
	}
	for i, id := range e.dangerIDs(t, "d1") {
		if id != fmt.Sprintf("a%02d", i) {
			t.Fatalf("event %d is %s: order lost", i, id)
		}
	}
	if _, refused := e.gate.Stats(); refused != 0 {
		t.Fatalf("%d commits quarantined for being over quota", refused)
	}
	big := make([]byte, wire.MaxDeviceCommitBytes+1)
	if r := send(t, d2, safety.LaneDanger, "d2", big); r.Error == nil || r.Error.ErrCode != wire.ErrTooLarge {
		t.Fatalf("oversized commit: %+v", r)
	}
	if _, n := e.gate.Rejected("", 10); n != 0 || len(e.dangerIDs(t, "d2")) != 1 {
		t.Fatalf("the oversized commit was kept somewhere")
	}
}

// A device that sends one commit (or one .last request) at a time, the
// next as soon as it has the reply, is never told that one is still being
// decided: the gate frees the lane before it replies.
func TestOneAtATimeNeverBusy(t *testing.T) {
	e := setup(t, devicegate.Config{})
	d1 := e.device(t, "d1")
	var seq uint64
	for i := 1; i <= 30; i++ {
		hdr := append(expect(seq), "Tl-Edge-Epoch", "E1", "Tl-Edge-First-Seq", strconv.Itoa(i), "Tl-Edge-Seq", strconv.Itoa(i))
		r := send(t, d1, safety.LaneDanger, "d1", commit(t, dangerFor("", "", fmt.Sprintf("e%d", i))), hdr...)
		if r.Error != nil {
			t.Fatalf("commit %d, sent after the reply to the one before: %+v", i, r.Error)
		}
		seq = r.Seq
		if l := last(t, d1, safety.LaneDanger, "d1", "E1"); l.EdgeSeq != uint64(i) {
			t.Fatalf("last after commit %d: %+v", i, l)
		}
	}
}

// A commit resent after its reply was lost conflicts instead of landing
// twice; .last tells the device where to resume, quarantined commits
// included, for its store's epoch only.
func TestExactlyOnce(t *testing.T) {
	e := setup(t, devicegate.Config{})
	d1 := e.device(t, "d1")
	edge := func(first, last int) []string {
		return []string{"Tl-Edge-Epoch", "E1", "Tl-Edge-First-Seq", strconv.Itoa(first), "Tl-Edge-Seq", strconv.Itoa(last)}
	}
	c1 := commit(t, dangerFor("", "", "e1"))
	r1 := send(t, d1, safety.LaneDanger, "d1", c1, append(expect(0), edge(1, 1)...)...)
	if r1.Error != nil {
		t.Fatal(r1.Error)
	}
	if r := send(t, d1, safety.LaneDanger, "d1", c1, append(expect(0), edge(1, 1)...)...); r.Error == nil || r.Error.ErrCode != wire.ErrWrongLastSequence {
		t.Fatalf("resent commit: %+v, want a conflict", r)
	}
	if l := last(t, d1, safety.LaneDanger, "d1", "E1"); l.Seq != r1.Seq || l.EdgeSeq != 1 {
		t.Fatalf("last: %+v", l)
	}
	bad := []byte("garbage")
	if r := send(t, d1, safety.LaneDanger, "d1", bad, append(expect(0), edge(2, 3)...)...); r.Error == nil || r.Error.ErrCode != wire.ErrWrongLastSequence {
		t.Fatalf("refused commit with a stale expected sequence: %+v, want a conflict", r)
	}
	for range 2 { // the second time as if the first reply was lost
		if r := send(t, d1, safety.LaneDanger, "d1", bad, append(expect(r1.Seq), edge(2, 3)...)...); !r.Quarantined || r.Seq != r1.Seq {
			t.Fatalf("refused commit: %+v", r)
		}
	}
	if l := last(t, d1, safety.LaneDanger, "d1", "E1"); l.Seq != r1.Seq || l.EdgeSeq != 3 {
		t.Fatalf("last after a refusal: %+v, want seq %d edge seq 3", l, r1.Seq)
	}
	if l := last(t, d1, safety.LaneDanger, "d1", "E2"); l.EdgeSeq != 0 {
		t.Fatalf("last of a new epoch: %+v", l)
	}
	poll.Until(t, 5*time.Second, "the refusal listed", func() bool { _, n := e.gate.Rejected("d1", 10); return n >= 1 })
	if _, n := e.gate.Rejected("d1", 10); n != 1 {
		t.Fatalf("a refusal resent is kept %d times", n)
	}
	if ids := e.dangerIDs(t, "d1"); fmt.Sprint(ids) != "[e1]" {
		t.Fatalf("EVENTS: %v", ids)
	}
}

// Nothing rides along unchecked: fields the schema does not know are
// dropped before an event is stored.
func TestUnknownFieldsDropped(t *testing.T) {
	e := setup(t, devicegate.Config{})
	d1 := e.device(t, "d1")
	smuggle := func(m proto.Message) []byte {
		c := &esv1.Commit{}
		b, _ := proto.Marshal(m)
		b = protowire.AppendTag(b, 99, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte("payload the schema does not know"))
		c.Events = append(c.Events, &esv1.Event{Id: ulid.Make().String(), Type: string(m.ProtoReflect().Descriptor().FullName()), Data: b})
		out, _ := proto.Marshal(c)
		return out
	}
	send(t, d1, safety.LaneTelemetry, "d1", smuggle(&telemetryv1.SamplesRecorded{RiderId: "alice", DeviceId: "d1", OffsetMs: []uint32{0}}))
	send(t, d1, safety.LaneDanger, "d1", smuggle(dangerFor("alice", "d1", "s1")))
	for _, lane := range wire.Lanes {
		sub := wire.EventsSubject(lane, "d1")
		m, err := e.nc.Request("$JS.API.DIRECT.GET.EVENTS."+sub, nil, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var c esv1.Commit
		if err := proto.Unmarshal(m.Data, &c); err != nil || len(c.Events) != 1 {
			t.Fatalf("%s: %v %v", sub, err, c.Events)
		}
		if bytes.Contains(c.Events[0].Data, []byte("schema does not know")) || c.Events[0].OccurredAt == nil {
			t.Fatalf("%s stored %q (occurred_at %v)", sub, c.Events[0].Data, c.Events[0].OccurredAt)
		}
	}
}

// TestSeen: the gate reports when each device lane last sent a commit and
// the backlog the device said it held then (Tl-Edge-Stored less
// Tl-Edge-Seq), or -1 when it did not say; it does not keep the header.
func TestSeen(t *testing.T) {
	e := setup(t, devicegate.Config{})
	dev := e.device(t, "d1")
	before := time.Now()
	if r := send(t, dev, safety.LaneDanger, "d1", commit(t, dangerFor("", "", "s1")), append(expect(0), "Tl-Edge-Seq", "3", "Tl-Edge-First-Seq", "3", "Tl-Edge-Epoch", "ep", wire.HeaderEdgeStored, "10")...); r.Error != nil || r.Quarantined {
		t.Fatalf("reply %+v", r)
	}
	tel := &telemetryv1.SamplesRecorded{OffsetMs: []uint32{0}, AccelZMg: []int32{1000}}
	if r := send(t, dev, safety.LaneTelemetry, "d1", commit(t, tel), expect(0)...); r.Error != nil {
		t.Fatalf("telemetry reply %+v", r)
	}
	got := map[string]devicegate.LaneSeen{}
	for _, l := range e.gate.Seen() {
		got[l.Device+" "+string(l.Lane)] = l
	}
	if len(got) != 2 {
		t.Fatalf("seen %v, want d1's two lanes", got)
	}
	for key, want := range map[string]int64{"d1 " + string(safety.LaneDanger): 7, "d1 " + string(safety.LaneTelemetry): -1} {
		l := got[key]
		if l.Backlog != want || l.LastCommit.Before(before) || l.LastCommit.After(time.Now()) {
			t.Errorf("%s: %+v, want backlog %d, last commit just now", key, l, want)
		}
	}
	st, err := e.js.Stream(context.Background(), wire.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(context.Background(), "ev.safety.device.d1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(wire.HeaderEdgeSeq) != "3" || m.Header.Get(wire.HeaderEdgeStored) != "" {
		t.Fatalf("stored commit headers %v: want Tl-Edge-Seq kept, Tl-Edge-Stored not", m.Header)
	}
}
