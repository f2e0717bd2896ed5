package devicegate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/devicegate"
	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
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
	nc    *nats.Conn
	js    jetstream.JetStream
	store *tljs.Store
	reg   *registry
	gate  *devicegate.Gate
	stop  func()
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
	_, nc := natstest.Start(t)
	store, err := tljs.Open(context.Background(), nc, tljs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	e := &env{nc: nc, js: js, store: store, reg: &registry{devs: map[string]safety.RegisteredDevice{
		"d1": {ID: "d1", RiderID: "alice"}, "d2": {ID: "d2", RiderID: "bob"},
	}}}
	e.start(t, cfg)
	return e
}

// start runs a gate (again); stop stops it.
func (e *env) start(t *testing.T, cfg devicegate.Config) {
	t.Helper()
	cfg.Conn, cfg.Registry, cfg.Logger = e.nc, e.reg.lookup, testLogger()
	g, err := devicegate.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	e.gate = g
	e.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gate: %v", err)
		}
	})
	t.Cleanup(e.stop)
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

// send publishes data into device's lane of the ingress stream and
// returns its ingress sequence.
func (e *env) send(t testing.TB, lane safety.DeviceLane, device string, data []byte, hdr ...string) uint64 {
	t.Helper()
	m := nats.NewMsg(devicegate.IngressSubject(lane, device))
	m.Data = data
	for i := 0; i+1 < len(hdr); i += 2 {
		m.Header.Set(hdr[i], hdr[i+1])
	}
	ack, err := e.js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatalf("send to %s: %v", m.Subject, err)
	}
	return ack.Sequence
}

func (e *env) events(t testing.TB, lane safety.DeviceLane, device string) []es.Commit {
	t.Helper()
	sid, _ := es.ParseStreamID(devicegate.EventsSubject(lane, device))
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

func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, bounded by the deadline
	}
}

// lastIngressSeq reads the Tl-Ingress-Seq of the last commit on subject.
func (e *env) lastIngressSeq(t testing.TB, stream, subject string) uint64 {
	t.Helper()
	m, err := e.nc.Request("$JS.API.DIRECT.GET."+stream+"."+subject, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(m.Header.Get(devicegate.HeaderIngressSeq), 10, 64)
	return n
}

func TestAdmitsDeviceCommitsBoundToTheRegistry(t *testing.T) {
	e := setup(t, devicegate.Config{})
	// d1's events: one leaving ids empty, one naming itself, in one commit;
	// then telemetry.
	a, b := dangerFor("", "", "e1"), dangerFor("alice", "d1", "e2")
	a.ReceivedAt = timestamppb.New(time.Unix(0, 0)) // not the device's to choose
	seq := e.send(t, safety.LaneDanger, "d1", commit(t, a, b), "Tl-Edge-Seq", "2", "Tl-Edge-First-Seq", "1", "Tl-Edge-Epoch", "ep")
	tel := &telemetryv1.SamplesRecorded{OffsetMs: []uint32{0, 10}, AccelZMg: []int32{1000, 1001}}
	e.send(t, safety.LaneTelemetry, "d1", commit(t, tel))
	eventually(t, 10*time.Second, "both lanes admitted", func() bool {
		return len(e.events(t, safety.LaneDanger, "d1")) == 1 && len(e.events(t, safety.LaneTelemetry, "d1")) == 1
	})
	c := e.events(t, safety.LaneDanger, "d1")[0]
	if len(c.Events) != 2 {
		t.Fatalf("commit has %d events, want 2", len(c.Events))
	}
	for _, ev := range c.Events {
		d := ev.Data.(*safetyv1.DangerDetected)
		if d.RiderId != "alice" || d.DeviceId != "d1" || d.ReceivedAt.AsTime().Before(time.Now().Add(-time.Minute)) {
			t.Fatalf("admitted event not bound to the registry: %v", d)
		}
		if ev.Meta.Actor != "device:d1" || ev.Meta.Source != "edge:d1" {
			t.Fatalf("meta = %+v", ev.Meta)
		}
	}
	if got := e.lastIngressSeq(t, "EVENTS", devicegate.EventsSubject(safety.LaneDanger, "d1")); got != seq {
		t.Fatalf("EVENTS commit names ingress seq %d, want %d", got, seq)
	}
	s := e.events(t, safety.LaneTelemetry, "d1")[0].Events[0].Data.(*telemetryv1.SamplesRecorded)
	if s.RiderId != "alice" || s.DeviceId != "d1" {
		t.Fatalf("telemetry not bound: %v", s)
	}
	if admitted, refused := e.gate.Stats(); admitted != 2 || refused != 0 {
		t.Fatalf("stats: admitted %d refused %d", admitted, refused)
	}
}

// Whatever a device writes on its own lanes, nothing invalid reaches
// EVENTS; each refusal is kept with its code and listed newest first.
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
	seqs := map[string]uint64{}
	for _, tc := range cases {
		seqs[tc.name] = e.send(t, tc.lane, tc.device, tc.data, "Tl-Edge-Seq", "7", "Nats-Msg-Id", "ev.safety.rider.bob/danger:"+tc.name)
	}
	// A valid commit behind them all is admitted.
	e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", "ok")))
	eventually(t, 10*time.Second, "the valid commit", func() bool { return len(e.events(t, safety.LaneDanger, "d1")) == 1 })
	eventually(t, 10*time.Second, "every refusal listed", func() bool { _, n := e.gate.Rejected("", 100); return n == len(cases) })
	list, _ := e.gate.Rejected("", 100)
	bySeq := map[uint64]*adminv1.RejectedDeviceCommit{}
	for i, r := range list {
		if i > 0 && r.QuarantineSeq >= list[i-1].QuarantineSeq {
			t.Fatalf("not newest first: %d after %d", r.QuarantineSeq, list[i-1].QuarantineSeq)
		}
		bySeq[r.IngressSeq] = r
	}
	for _, tc := range cases {
		r := bySeq[seqs[tc.name]]
		if r == nil {
			t.Fatalf("%s: not listed", tc.name)
		}
		if r.Code != string(tc.code) || r.DeviceId != tc.device || r.IngressSeq != seqs[tc.name] || r.Lane != string(tc.lane) || r.Reason == "" {
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
	for _, lane := range devicegate.Lanes {
		for _, dev := range []string{"d2", "ghost", "gone"} {
			if n := len(e.events(t, lane, dev)); n != 0 {
				t.Fatalf("%s %s: %d commits reached EVENTS", lane, dev, n)
			}
		}
	}
	if n := len(e.events(t, safety.LaneTelemetry, "d1")); n != 0 {
		t.Fatalf("telemetry: %d commits reached EVENTS", n)
	}
	// The refused commit is kept as received.
	q, err := e.js.Stream(context.Background(), devicegate.DefaultQuarantineStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.GetMsg(context.Background(), bySeq[seqs["ten_bytes_of_garbage"]].QuarantineSeq)
	if err != nil || string(m.Data) != "0123456789" {
		t.Fatalf("quarantined garbage: %v %q", err, m.Data)
	}
}

// One device's garbage does not delay another device's CRITICAL event.
func TestPoisonDoesNotHoldUpOtherDevices(t *testing.T) {
	e := setup(t, devicegate.Config{})
	for i := range 20 {
		e.send(t, safety.LaneDanger, "d1", []byte(fmt.Sprintf("garbage-%02d", i)))
	}
	at := time.Now()
	e.send(t, safety.LaneDanger, "d2", commit(t, dangerFor("", "", "crit")))
	eventually(t, 2*time.Second, "d2's event in EVENTS", func() bool { return len(e.events(t, safety.LaneDanger, "d2")) == 1 })
	t.Logf("d2's CRITICAL event admitted %v after it was sent, behind 20 garbage commits of d1", time.Since(at))
	eventually(t, 5*time.Second, "d1's garbage quarantined", func() bool { _, n := e.gate.Rejected("d1", 1); return n == 20 })
}

// Over its quota a device's commits wait (in order, none lost) while
// another device's pass at once.
func TestRateQuotaDelaysWithoutLoss(t *testing.T) {
	e := setup(t, devicegate.Config{Rate: 20, Burst: 5})
	const n = 25
	for i := range n {
		e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", fmt.Sprintf("a%02d", i))))
	}
	start := time.Now()
	e.send(t, safety.LaneDanger, "d2", commit(t, dangerFor("", "", "b")))
	eventually(t, 2*time.Second, "d2 admitted", func() bool { return len(e.dangerIDs(t, "d2")) == 1 })
	if got := len(e.dangerIDs(t, "d1")); got >= n {
		t.Fatalf("d1 had all %d commits admitted within %v: no quota", got, time.Since(start))
	}
	eventually(t, 10*time.Second, "all of d1 admitted", func() bool { return len(e.dangerIDs(t, "d1")) == n })
	if el := time.Since(start); el < 800*time.Millisecond {
		t.Fatalf("%d commits at 20/s with a burst of 5 took %v", n, el)
	}
	for i, id := range e.dangerIDs(t, "d1") {
		if id != fmt.Sprintf("a%02d", i) {
			t.Fatalf("event %d is %s: order lost", i, id)
		}
	}
	if _, n := e.gate.Rejected("", 10); n != 0 {
		t.Fatalf("%d commits refused for being over quota", n)
	}
}

// The ingress stream bounds what a device can leave there: messages over
// MaxCommitBytes are refused and never stored, and a lane holds at most
// Backlog undecided commits.
func TestIngressLimits(t *testing.T) {
	e := setup(t, devicegate.Config{Backlog: 5, Rate: 0.001, Burst: 1})
	_, err := e.js.Publish(context.Background(), devicegate.IngressSubject(safety.LaneDanger, "d1"), make([]byte, devicegate.MaxCommitBytes+1))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum {
		t.Fatalf("oversized commit: %v, want refused", err)
	}
	// Nor may a device roll the stream up (purge it) with a header.
	m := nats.NewMsg(devicegate.IngressSubject(safety.LaneDanger, "d1"))
	m.Header.Set("Nats-Rollup", "all")
	if _, err := e.js.PublishMsg(context.Background(), m); err == nil {
		t.Fatal("rollup accepted")
	}
	// d1 gets one commit decided (its burst), then waits: its lane fills.
	for i := 0; i < 5; i++ {
		e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", fmt.Sprintf("f%d", i))))
	}
	eventually(t, 5*time.Second, "the first admitted", func() bool { return len(e.events(t, safety.LaneDanger, "d1")) == 1 })
	if _, err := e.js.Publish(context.Background(), devicegate.IngressSubject(safety.LaneDanger, "d1"), commit(t, dangerFor("", "", "f5"))); err == nil {
		t.Fatal("a sixth undecided commit was accepted: no per-device backlog bound")
	}
	e.send(t, safety.LaneDanger, "d2", commit(t, dangerFor("", "", "other"))) // others are not affected
	st, _ := e.js.Stream(context.Background(), devicegate.DefaultStream)
	info, err := st.Info(context.Background())
	if err != nil || info.State.Bytes > 64<<10 {
		t.Fatalf("ingress holds %d bytes (%v)", info.State.Bytes, err)
	}
}

// A gate restarted at any point appends nothing twice and skips nothing;
// an append that landed without the gate hearing of it is recognised.
func TestExactlyOnceAcrossRestarts(t *testing.T) {
	e := setup(t, devicegate.Config{})
	sub := devicegate.EventsSubject(safety.LaneDanger, "d1")
	id := 0
	sendN := func(n int) {
		for range n {
			e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", fmt.Sprintf("e%03d", id))))
			id++
		}
	}
	check := func(n int) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("%d events", n), func() bool { return len(e.dangerIDs(t, "d1")) >= n })
		ids := e.dangerIDs(t, "d1")
		if len(ids) != n {
			t.Fatalf("%d events, want %d", len(ids), n)
		}
		for i, id := range ids {
			if id != fmt.Sprintf("e%03d", i) {
				t.Fatalf("event %d is %s", i, id)
			}
		}
	}
	sendN(10)
	check(10)
	e.stop()
	sendN(10) // while the gate is down
	e.start(t, devicegate.Config{})
	check(20)
	// A refused commit last: a restarted gate does not decide it again.
	e.send(t, safety.LaneDanger, "d1", []byte("garbage"))
	eventually(t, 10*time.Second, "garbage refused", func() bool { _, n := e.gate.Rejected("d1", 1); return n == 1 })
	e.stop()
	e.start(t, devicegate.Config{})
	sendN(1)
	check(21)
	if _, refused := e.gate.Stats(); refused != 0 {
		t.Fatalf("the restarted gate refused %d commits again", refused)
	}

	// The next commit's append lands but the gate never hears (an ack
	// lost): here written by hand with the gate's headers.
	epoch := func() string {
		st, _ := e.js.Stream(context.Background(), devicegate.DefaultStream)
		return st.CachedInfo().Config.Metadata["tl_epoch"]
	}()
	next := e.lastIngressSeq(t, "EVENTS", sub) + 1
	m := nats.NewMsg(sub)
	m.Data = commit(t, dangerFor("alice", "d1", fmt.Sprintf("e%03d", id)))
	m.Header.Set(devicegate.HeaderIngressSeq, strconv.FormatUint(next, 10))
	m.Header.Set(devicegate.HeaderIngressEpoch, epoch)
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if got := e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", fmt.Sprintf("e%03d", id)))); got != next {
		t.Fatalf("ingress seq %d, want %d", got, next)
	}
	id++
	sendN(1)
	check(23)
}

// The ingress stream recreated (its sequences restart): the gate does not
// take new commits for ones it already decided.
func TestIngressStreamRecreated(t *testing.T) {
	e := setup(t, devicegate.Config{})
	for i := range 3 {
		e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", fmt.Sprintf("old%d", i))))
	}
	eventually(t, 10*time.Second, "3 events", func() bool { return len(e.dangerIDs(t, "d1")) == 3 })
	e.stop()
	if err := e.js.DeleteStream(context.Background(), devicegate.DefaultStream); err != nil {
		t.Fatal(err)
	}
	e.start(t, devicegate.Config{})
	if seq := e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", "new"))); seq != 1 {
		t.Fatalf("recreated stream gave seq %d", seq)
	}
	eventually(t, 10*time.Second, "the new commit", func() bool { return len(e.dangerIDs(t, "d1")) == 4 })
}

// Decided commits are purged from the ingress stream, all but each lane's
// last (the device resumes from it).
func TestDecidedCommitsPurged(t *testing.T) {
	e := setup(t, devicegate.Config{})
	var last uint64
	for i := range 100 {
		last = e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", fmt.Sprintf("p%d", i))))
	}
	st, _ := e.js.Stream(context.Background(), devicegate.DefaultStream)
	eventually(t, 10*time.Second, "ingress purged to the last commit", func() bool {
		info, err := st.Info(context.Background())
		return err == nil && info.State.Msgs == 1 && info.State.FirstSeq == last
	})
}

// A backlog is admitted in few EVENTS commits (a run of ingress commits
// per append), each naming the ingress commits it holds; a refused commit
// in the middle splits the run, and order holds.
func TestBacklogAdmittedInRuns(t *testing.T) {
	e := setup(t, devicegate.Config{})
	e.stop()
	var want []string
	var seqs []uint64
	for i := range 200 {
		if i == 120 {
			e.send(t, safety.LaneDanger, "d1", []byte("garbage"))
			continue
		}
		id := fmt.Sprintf("r%03d", i)
		want = append(want, id)
		seqs = append(seqs, e.send(t, safety.LaneDanger, "d1", commit(t, dangerFor("", "", id))))
	}
	e.start(t, devicegate.Config{})
	eventually(t, 10*time.Second, "the backlog", func() bool { return len(e.dangerIDs(t, "d1")) == len(want) })
	if got := e.dangerIDs(t, "d1"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v", got)
	}
	cs := e.events(t, safety.LaneDanger, "d1")
	if len(cs) > 10 {
		t.Fatalf("200 ingress commits took %d appends", len(cs))
	}
	if got := e.lastIngressSeq(t, "EVENTS", devicegate.EventsSubject(safety.LaneDanger, "d1")); got != seqs[len(seqs)-1] {
		t.Fatalf("last commit names ingress seq %d, want %d", got, seqs[len(seqs)-1])
	}
	if admitted, refused := e.gate.Stats(); admitted != 199 || refused != 1 {
		t.Fatalf("admitted %d, refused %d", admitted, refused)
	}
}

// Nothing rides along unchecked: fields the schema does not know are
// dropped before an event is stored.
func TestUnknownFieldsDropped(t *testing.T) {
	e := setup(t, devicegate.Config{})
	smuggle := func(m proto.Message) []byte {
		c := &esv1.Commit{}
		b, _ := proto.Marshal(m)
		b = protowire.AppendTag(b, 99, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte("payload the schema does not know"))
		c.Events = append(c.Events, &esv1.Event{Id: ulid.Make().String(), Type: string(m.ProtoReflect().Descriptor().FullName()), Data: b})
		out, _ := proto.Marshal(c)
		return out
	}
	e.send(t, safety.LaneTelemetry, "d1", smuggle(&telemetryv1.SamplesRecorded{RiderId: "alice", DeviceId: "d1", OffsetMs: []uint32{0}}))
	e.send(t, safety.LaneDanger, "d1", smuggle(dangerFor("alice", "d1", "s1")))
	for _, lane := range devicegate.Lanes {
		sub := devicegate.EventsSubject(lane, "d1")
		eventually(t, 5*time.Second, sub, func() bool { return len(e.events(t, lane, "d1")) == 1 })
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
