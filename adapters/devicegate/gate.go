// Package devicegate is the hub's gate for edge devices. Devices never
// write the EVENTS stream: each publishes its commits into its own
// subjects of the DEVICE_INGRESS stream, and the gate admits them into
// EVENTS one by one, after the domain's check (safety.AdmitDeviceCommit),
// bound to the rider the device registry names, or quarantines them with
// the reason. Nothing a device sends reaches a read model unchecked.
//
// Layout:
//
//	DEVICE_INGRESS     in.<lane>.device.<id>          written by devices (their only write)
//	EVENTS             ev.safety.device.<id>          written by the gate alone (lane danger)
//	                   ev.telemetry.device.<id>       (lane telemetry)
//	DEVICE_QUARANTINE  quarantine.<lane>.device.<id>  refused commits, kept with the reason
//
// Each device lane has its own worker, so one device's commits never wait
// behind another's: a poison commit is quarantined at once (no retry),
// and a device over its rate quota waits alone. Order holds per lane.
//
// Exactly once: the gate is the single writer of a device's EVENTS
// subject and each commit it appends names its ingress sequence
// (Tl-Ingress-Seq); quarantine records do too. A worker resumes after the
// larger of the two, and appends with Nats-Expected-Last-Subject-Sequence,
// so a crash between an append and its bookkeeping never appends twice.
// It never forwards a device's Nats-Msg-Id or other Nats-* headers.
//
// Backpressure, not loss: over its quota (a token bucket per device lane)
// a device's commits wait in the ingress stream, at most Backlog of them
// per lane; beyond that the stream refuses new ones and they wait on the
// device, which keeps them (its danger lane is never dropped).
package devicegate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
)

// Stream names and limits. The edge agent builds the same subjects
// (edge.IngressSubject) and packs commits to fit MaxCommitBytes.
const (
	DefaultStream           = "DEVICE_INGRESS"
	DefaultQuarantineStream = "DEVICE_QUARANTINE"
	// MaxCommitBytes is the ingress stream's message size limit, headers
	// included: a larger message is refused by the stream, never stored.
	MaxCommitBytes = 64 << 10
)

// Lanes lists the device lanes the gate serves.
var Lanes = []safety.DeviceLane{safety.LaneDanger, safety.LaneTelemetry}

// IngressSubject is where device id publishes lane's commits.
func IngressSubject(lane safety.DeviceLane, id string) string {
	return "in." + string(lane) + ".device." + id
}

// EventsSubject is where the gate appends lane's admitted commits of
// device id in EVENTS.
func EventsSubject(lane safety.DeviceLane, id string) string {
	if lane == safety.LaneDanger {
		return "ev.safety.device." + id
	}
	return "ev." + string(lane) + ".device." + id
}

// QuarantineSubject is where lane's refused commits of device id are kept.
func QuarantineSubject(lane safety.DeviceLane, id string) string {
	return "quarantine." + string(lane) + ".device." + id
}

// Headers the gate writes. Commits in EVENTS carry the Tl-* commit
// headers adapters/jetstream reads, the ingress position, and the
// device's own edge headers (what it says of its local sequences).
const (
	HeaderIngressSeq = "Tl-Ingress-Seq"
	// HeaderIngressFirstSeq is the first ingress commit a commit holds
	// when it holds several (a run admitted together).
	HeaderIngressFirstSeq = "Tl-Ingress-First-Seq"
	HeaderIngressEpoch    = "Tl-Ingress-Epoch"
	HeaderReceivedAt      = "Tl-Received-At"
	HeaderDevice          = "Tl-Device"
	HeaderRider           = "Tl-Rider"
	HeaderLane            = "Tl-Lane"
	HeaderRejectCode      = "Tl-Reject-Code"
	HeaderRejectReason    = "Tl-Reject-Reason"
	headerEventTypes      = "Tl-Event-Types"
	headerActor           = "Tl-Actor"
	headerSource          = "Tl-Source"
)

// edgeHeaders are the device's own headers the gate keeps with a commit.
var edgeHeaders = []string{"Tl-Edge-Seq", "Tl-Edge-First-Seq", "Tl-Edge-Epoch"}

// Registry returns what the device registry says of a device id; a zero
// RiderID means the id is not registered.
type Registry func(id string) safety.RegisteredDevice

// Config configures a Gate.
type Config struct {
	// Conn is the hub's own (in-process) connection; the gate does not
	// close it.
	Conn *nats.Conn
	// Registry names each device's rider (required).
	Registry Registry
	// Stream is the ingress stream, default DEVICE_INGRESS;
	// QuarantineStream default DEVICE_QUARANTINE; EventsStream the events
	// stream, default EVENTS.
	Stream, QuarantineStream, EventsStream string
	// Rate is each device lane's sustained quota in commits per second
	// (default 100) and Burst its bucket (default 2000 commits): at most
	// MaxCommitBytes each, that is 6.25 MiB/s sustained and 125 MiB at once.
	Rate  float64
	Burst int
	// Backlog is how many commits per device lane the ingress stream
	// holds before refusing more (default 1024): a device over its quota,
	// or a hub that is behind, then keeps them on the device.
	Backlog int
	// QuarantineKeep is how many refused commits are kept per device lane,
	// the oldest dropped first (default 1000).
	QuarantineKeep int
	// Replicas of the two streams; default 1.
	Replicas int
	Logger   *slog.Logger
}

func (c *Config) defaults() error {
	if c.Conn == nil || c.Registry == nil {
		return errors.New("devicegate: Conn and Registry are required")
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.QuarantineStream == "" {
		c.QuarantineStream = DefaultQuarantineStream
	}
	if c.EventsStream == "" {
		c.EventsStream = "EVENTS"
	}
	if c.Rate == 0 {
		c.Rate = 100
	}
	if c.Burst == 0 {
		c.Burst = 2000
	}
	if c.Rate < 0 || c.Burst < 1 {
		return fmt.Errorf("devicegate: rate %g and burst %d must be positive", c.Rate, c.Burst)
	}
	if c.Backlog == 0 {
		c.Backlog = 1024
	}
	if c.QuarantineKeep == 0 {
		c.QuarantineKeep = 1000
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Gate admits device commits from the ingress stream into EVENTS. Its
// methods are safe for concurrent use.
type Gate struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	ingress jetstream.Stream
	epoch   string // the ingress stream's identity: its sequences restart if it is recreated

	mu      sync.Mutex
	workers map[string]*worker // by ingress subject
	wg      sync.WaitGroup

	rejected *index
	admitted atomic.Uint64
	refused  atomic.Uint64
}

// Open provisions the ingress and quarantine streams and returns the
// gate; Run runs it.
func Open(ctx context.Context, cfg Config) (*Gate, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("devicegate: jetstream: %w", err)
	}
	g := &Gate{cfg: cfg, log: cfg.Logger.With("component", "devicegate"), nc: cfg.Conn, js: js,
		workers: map[string]*worker{}, rejected: newIndex(10000)}
	var subjects []string
	for _, l := range Lanes {
		subjects = append(subjects, IngressSubject(l, "*"))
	}
	icfg := jetstream.StreamConfig{
		Name:                 cfg.Stream,
		Description:          "edge device commits waiting for the device gate: in.<lane>.device.<id>",
		Subjects:             subjects,
		Storage:              jetstream.FileStorage,
		Retention:            jetstream.LimitsPolicy,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		MaxMsgsPerSubject:    int64(cfg.Backlog),
		MaxMsgs:              -1,
		MaxBytes:             -1,
		MaxMsgSize:           MaxCommitBytes,
		// Devices send no message ids (exactly-once is by expected
		// subject sequence); a short window bounds what one that does can
		// make the server remember.
		Duplicates:  100 * time.Millisecond,
		AllowDirect: true,
		DenyDelete:  true,
		Replicas:    cfg.Replicas,
	}
	st, err := js.Stream(ctx, cfg.Stream)
	switch {
	case err == nil:
		g.epoch = st.CachedInfo().Config.Metadata["tl_epoch"]
	case errors.Is(err, jetstream.ErrStreamNotFound):
	default:
		return nil, fmt.Errorf("devicegate: stream %s: %w", cfg.Stream, err)
	}
	if g.epoch == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		g.epoch = hex.EncodeToString(b[:])
	}
	icfg.Metadata = map[string]string{"tl_epoch": g.epoch}
	if g.ingress, err = js.CreateOrUpdateStream(ctx, icfg); err != nil {
		return nil, fmt.Errorf("devicegate: provision stream %s: %w", cfg.Stream, err)
	}
	subjects = subjects[:0]
	for _, l := range Lanes {
		subjects = append(subjects, QuarantineSubject(l, "*"))
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              cfg.QuarantineStream,
		Description:       "edge device commits the device gate refused, with the reason in headers",
		Subjects:          subjects,
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: int64(cfg.QuarantineKeep),
		MaxMsgs:           -1,
		MaxBytes:          -1,
		AllowDirect:       true,
		DenyDelete:        true,
		Replicas:          cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("devicegate: provision stream %s: %w", cfg.QuarantineStream, err)
	}
	return g, nil
}

// Run admits device commits until ctx ends; it returns once every worker
// stopped. It follows the ingress stream, handing each commit to its
// lane's worker, and the quarantine stream (headers only) for Rejected.
func (g *Gate) Run(ctx context.Context) error {
	defer g.wg.Wait()
	follow := func(stream string, headersOnly bool, each func(jetstream.Msg)) (jetstream.ConsumeContext, error) {
		c, err := g.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{HeadersOnly: headersOnly})
		if ctx.Err() != nil {
			return nil, nil // stopped before it started
		}
		if err != nil {
			return nil, fmt.Errorf("devicegate: follow %s: %w", stream, err)
		}
		cc, err := c.Consume(each, jetstream.PullMaxBytes(8<<20))
		if err != nil {
			return nil, fmt.Errorf("devicegate: follow %s: %w", stream, err)
		}
		return cc, nil
	}
	qc, err := follow(g.cfg.QuarantineStream, true, g.rejected.add)
	if err != nil || qc == nil {
		return err
	}
	defer qc.Stop()
	ic, err := follow(g.cfg.Stream, false, func(m jetstream.Msg) { g.dispatch(ctx, m) })
	if err != nil || ic == nil {
		return err
	}
	defer ic.Stop()
	g.log.Info("device gate running", "ingress", g.cfg.Stream, "quarantine", g.cfg.QuarantineStream,
		"rate", g.cfg.Rate, "burst", g.cfg.Burst, "backlog", g.cfg.Backlog)
	<-ctx.Done()
	return nil
}

// Stats counts commits admitted into EVENTS and refused since Open.
func (g *Gate) Stats() (admitted, refused uint64) { return g.admitted.Load(), g.refused.Load() }

// dispatch hands one ingress commit to its lane's worker (started on its
// lane's first commit). It never waits: a worker whose feed is full reads
// the commit from the stream itself. Only the ingress consumer's
// goroutine calls it.
func (g *Gate) dispatch(ctx context.Context, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	subject := m.Subject()
	p := strings.Split(subject, ".")
	if len(p) != 4 || p[0] != "in" || p[2] != "device" {
		return
	}
	g.mu.Lock()
	w, ok := g.workers[subject]
	if !ok {
		w = g.newWorker(safety.DeviceLane(p[1]), p[3])
		g.workers[subject] = w
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			w.run(ctx)
		}()
	}
	g.mu.Unlock()
	seq := md.Sequence.Stream
	im := ingressMsg{seq: seq, prev: w.seen, receivedAt: md.Timestamp, header: m.Headers(), data: m.Data()}
	w.seen = seq
	for {
		k := w.known.Load()
		if seq <= k || w.known.CompareAndSwap(k, seq) {
			break
		}
	}
	select {
	case w.feed <- im:
	default:
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// ingressMsg is one commit read from the ingress stream.
type ingressMsg struct {
	seq uint64
	// prev is the lane's commit before it, when it came through the
	// ingress consumer (0: unknown).
	prev       uint64
	receivedAt time.Time
	header     nats.Header
	data       []byte
}

func (m ingressMsg) size() int {
	n := len(m.data)
	for k, vs := range m.header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// directGet reads up to batch messages of subject in stream from seq on
// (last: the subject's last message). It returns nil and no error when
// there are none.
func (g *Gate) directGet(ctx context.Context, stream, subject string, seq uint64, batch int, last bool) ([]ingressMsg, error) {
	req := map[string]any{"next_by_subj": subject, "seq": seq, "batch": batch, "max_bytes": 1 << 20}
	if last {
		req = map[string]any{"last_by_subj": subject}
	}
	body, _ := json.Marshal(req)
	inbox := g.nc.NewRespInbox()
	ch := make(chan *nats.Msg, batch+2)
	sub, err := g.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("direct get %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	if err := g.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return nil, fmt.Errorf("direct get %s: %w", subject, err)
	}
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	var out []ingressMsg
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-timeout.C:
			return nil, fmt.Errorf("direct get %s: no reply in 5s", subject)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		switch st := m.Header.Get("Status"); st {
		case "":
		case "404", "204":
			return out, nil
		default:
			return nil, fmt.Errorf("direct get %s: status %s %s", subject, st, m.Header.Get("Description"))
		}
		s, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("direct get %s: bad sequence: %w", subject, err)
		}
		at, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		out = append(out, ingressMsg{seq: s, receivedAt: at, header: m.Header, data: m.Data})
		if last {
			return out, nil
		}
	}
}

// decoded is a device commit as read: its events, and per event its
// occurred_at and, when the event can be stored as sent (no unknown
// fields), its payload bytes.
type decoded struct {
	events []es.Event
	stamps []*timestamppb.Timestamp
	raw    [][]byte
}

// decode reads a device commit: a tideline.es.v1.Commit whose events of
// lane's type are decoded (others keep nil Data, for the domain to
// refuse). Nothing rides along unchecked: unknown fields are dropped
// (their events are encoded again), and a missing occurred_at is the
// receipt time.
func decode(lane safety.DeviceLane, data []byte, receivedAt time.Time) (decoded, error) {
	var c esv1.Commit
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &c); err != nil {
		return decoded{}, es.Invalidf("commit", "not a tideline.es.v1.Commit: %v", err)
	}
	want := lane.EventType()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(want))
	if err != nil {
		return decoded{}, es.Invalidf("lane", "%s is not known to this hub", want)
	}
	d := decoded{events: make([]es.Event, len(c.Events)), stamps: make([]*timestamppb.Timestamp, len(c.Events)), raw: make([][]byte, len(c.Events))}
	for i, e := range c.Events {
		d.stamps[i] = e.OccurredAt
		if d.stamps[i] == nil {
			d.stamps[i] = timestamppb.New(receivedAt)
		} else if err := e.OccurredAt.CheckValid(); err != nil {
			return decoded{}, es.Invalidf(fmt.Sprintf("events[%d].occurred_at", i), "%v", err)
		}
		d.events[i] = es.Event{ID: e.Id, Type: e.Type, OccurredAt: d.stamps[i].AsTime()}
		if e.Type != want {
			continue
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(e.Data, m); err != nil {
			return decoded{}, es.Invalidf(fmt.Sprintf("events[%d].data", i), "not a %s: %v", want, err)
		}
		if len(m.ProtoReflect().GetUnknown()) == 0 {
			d.raw[i] = e.Data
		} else {
			m.ProtoReflect().SetUnknown(nil)
		}
		d.events[i].Data = m
	}
	return d, nil
}

// encode appends admitted events to buf, an EVENTS commit being built,
// and their types to types. An event the domain admitted unchanged is
// stored as the device sent it (the same message, not encoded again).
func encode(buf []byte, types []string, d decoded, admitted []es.Event) ([]byte, []string, error) {
	for i, e := range admitted {
		b := d.raw[i]
		if b == nil || e.Data != d.events[i].Data {
			var err error
			if b, err = proto.Marshal(e.Data); err != nil {
				return nil, nil, fmt.Errorf("marshal event: %w", err)
			}
		}
		types = append(types, e.Type)
		buf = appendEvent(buf, e.ID, e.Type, d.stamps[i], b)
	}
	return buf, types, nil
}

// appendEvent appends one tideline.es.v1.Commit.events entry (field 1): a
// tideline.es.v1.Event of 1 id, 2 type, 3 occurred_at, 4 data, written
// as proto.Marshal would, without building the message.
func appendEvent(buf []byte, id, typ string, at *timestamppb.Timestamp, data []byte) []byte {
	secs, nanos := uint64(at.GetSeconds()), uint64(int64(at.GetNanos()))
	ts := 0
	if secs != 0 {
		ts += protowire.SizeTag(1) + protowire.SizeVarint(secs)
	}
	if nanos != 0 {
		ts += protowire.SizeTag(2) + protowire.SizeVarint(nanos)
	}
	n := protowire.SizeTag(3) + protowire.SizeBytes(ts)
	for _, f := range []int{len(id), len(typ), len(data)} {
		if f > 0 {
			n += protowire.SizeTag(1) + protowire.SizeBytes(f)
		}
	}
	buf = protowire.AppendTag(buf, 1, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(n))
	if id != "" {
		buf = protowire.AppendTag(buf, 1, protowire.BytesType)
		buf = protowire.AppendString(buf, id)
	}
	if typ != "" {
		buf = protowire.AppendTag(buf, 2, protowire.BytesType)
		buf = protowire.AppendString(buf, typ)
	}
	buf = protowire.AppendTag(buf, 3, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(ts))
	if secs != 0 {
		buf = protowire.AppendTag(buf, 1, protowire.VarintType)
		buf = protowire.AppendVarint(buf, secs)
	}
	if nanos != 0 {
		buf = protowire.AppendTag(buf, 2, protowire.VarintType)
		buf = protowire.AppendVarint(buf, nanos)
	}
	if len(data) > 0 {
		buf = protowire.AppendTag(buf, 4, protowire.BytesType)
		buf = protowire.AppendBytes(buf, data)
	}
	return buf
}

// headerValue makes s safe and short as a header value.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}
