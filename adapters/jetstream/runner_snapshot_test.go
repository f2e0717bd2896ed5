package jetstream_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	alertsmodel "github.com/tideline/tideline/projections/alerts"
	dashboardmodel "github.com/tideline/tideline/projections/dashboard"
	nearbymodel "github.com/tideline/tideline/projections/nearby"
	safetymodel "github.com/tideline/tideline/projections/safety"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// rewriteObjectMeta stores info as the object's metadata, as a damaged
// store could hold it.
func rewriteObjectMeta(tb testing.TB, s *tljs.Store, info *jetstream.ObjectInfo) {
	tb.Helper()
	data, err := json.Marshal(info)
	if err != nil {
		tb.Fatal(err)
	}
	writeObjectMeta(tb, s, info.Name, data)
}

func writeObjectMeta(tb testing.TB, s *tljs.Store, name string, data []byte) {
	tb.Helper()
	m := nats.NewMsg("$O.projections.M." + base64.URLEncoding.EncodeToString([]byte(name)))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Data = data
	if _, err := s.JetStream().PublishMsg(context.Background(), m); err != nil {
		tb.Fatalf("rewrite object meta: %v", err)
	}
}

// damages are the ways a stored snapshot turns out unusable.
var damages = []struct {
	name   string
	damage func(tb testing.TB, s *tljs.Store, name string)
}{
	{"garbage_bytes", func(tb testing.TB, s *tljs.Store, name string) {
		putSnapshotBytes(tb, s, name, func([]byte) []byte { return []byte("\x00garbage\xff{}") })
	}},
	{"truncated_bytes", func(tb testing.TB, s *tljs.Store, name string) {
		putSnapshotBytes(tb, s, name, func(b []byte) []byte { return b[:len(b)*2/3] })
	}},
	{"digest_mismatch", func(tb testing.TB, s *tljs.Store, name string) {
		info, err := snapshotBucket(tb, s).GetInfo(context.Background(), name)
		if err != nil {
			tb.Fatal(err)
		}
		sum := sha256.Sum256([]byte("other bytes"))
		info.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
		rewriteObjectMeta(tb, s, info)
	}},
	{"truncated_object", func(tb testing.TB, s *tljs.Store, name string) {
		// The object's chunks are cut short; its metadata still
		// describes the whole.
		obs := snapshotBucket(tb, s)
		ctx := context.Background()
		info, err := obs.GetInfo(ctx, name)
		if err != nil {
			tb.Fatal(err)
		}
		data, err := obs.GetBytes(ctx, name)
		if err != nil {
			tb.Fatal(err)
		}
		short, err := obs.PutBytes(ctx, name+".short", data[:len(data)/2])
		if err != nil {
			tb.Fatal(err)
		}
		info.NUID = short.NUID
		rewriteObjectMeta(tb, s, info)
	}},
	{"damaged_metadata", func(tb testing.TB, s *tljs.Store, name string) {
		writeObjectMeta(tb, s, name, []byte(`{"name": "`+name+`", "nuid": 42`))
	}},
}

// putSnapshotBytes replaces the snapshot's bytes with damage(bytes),
// keeping its metadata (so its digest matches the damaged bytes).
func putSnapshotBytes(tb testing.TB, s *tljs.Store, name string, damage func([]byte) []byte) {
	tb.Helper()
	obs := snapshotBucket(tb, s)
	ctx := context.Background()
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	data, err := obs.GetBytes(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name, Metadata: info.Metadata}, bytes.NewReader(damage(data))); err != nil {
		tb.Fatal(err)
	}
}

// appendEvents appends each event as its own commit on stream.
func appendEvents(tb testing.TB, s *tljs.Store, stream es.StreamID, events ...proto.Message) uint64 {
	tb.Helper()
	var last uint64
	for _, e := range events {
		res, err := s.Append(context.Background(), stream, []proto.Message{e}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err != nil {
			tb.Fatal(err)
		}
		last = res.Position.Seq
	}
	return last
}

// appendWorld appends steps, danger, alert and delivery events, so each
// real read model has something to hold, and returns the last position.
func appendWorld(tb testing.TB, s *tljs.Store) uint64 {
	tb.Helper()
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for i := range 6 {
		user := "walker-" + strconv.Itoa(i%3)
		appendEvents(tb, s, es.StreamID{Context: "steps", Type: "day", ID: user},
			&stepsv1.StepsRecorded{UserId: user, Date: "2026-03-02", Steps: int32(1000 * (i + 1))})
	}
	for i := range 4 {
		rider := "rider-" + strconv.Itoa(i%2)
		appendEvents(tb, s, es.StreamID{Context: "safety", Type: "rider", ID: rider}, &safetyv1.DangerDetected{
			EventId: "danger-" + strconv.Itoa(i), RiderId: rider, Kind: safetyv1.DangerKind_DANGER_KIND_CRASH,
			Severity: safetyv1.Severity_SEVERITY_HIGH, PeakAccelG: 4.5,
			Location:   &safetyv1.Location{Lat: 37.56 + float64(i)/1000, Lng: 126.97},
			DetectedAt: timestamppb.New(at.Add(time.Duration(i) * time.Minute)),
		})
	}
	appendEvents(tb, s, es.StreamID{Context: "safety", Type: "alert", ID: "alert-1"},
		&safetyv1.AlertRaisedV2{AlertId: "alert-1", RiderId: "rider-0", Reason: "severity HIGH crash", EventIds: []string{"danger-0"},
			Severity: safetyv1.Severity_SEVERITY_HIGH, RaisedAt: timestamppb.New(at), Rule: safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT})
	var last uint64
	for i := range 6 {
		id := "order-" + strconv.Itoa(i)
		order := es.StreamID{Context: "delivery", Type: "order", ID: id}
		placed := at.Add(time.Duration(i) * 10 * time.Minute)
		last = appendEvents(tb, s, order, &deliveryv1.OrderPlaced{
			OrderId: id, StoreId: "store-1", Amount: int64(10000 + 1000*i), Zone: "wydm9q",
			Pickup:   &deliveryv1.LatLng{Lat: 37.5665 + float64(i)/1000, Lng: 126.978},
			Dropoff:  &deliveryv1.LatLng{Lat: 37.57, Lng: 126.98},
			PlacedAt: timestamppb.New(placed),
		})
		if i%2 == 0 {
			last = appendEvents(tb, s, order,
				&deliveryv1.OrderAccepted{OrderId: id, RiderId: "rider-0", AcceptedAt: timestamppb.New(placed.Add(time.Minute))},
				&deliveryv1.OrderPickedUp{OrderId: id, RiderId: "rider-0", PickedUpAt: timestamppb.New(placed.Add(5 * time.Minute))},
				&deliveryv1.OrderDelivered{OrderId: id, RiderId: "rider-0", DeliveredAt: timestamppb.New(placed.Add(20 * time.Minute))},
				&deliveryv1.OrderRated{OrderId: id, RiderId: "rider-0", Stars: 5})
		}
	}
	return last
}

// TestRunnerRebuildsOverDamagedSnapshots: whatever is wrong with a stored
// snapshot of any real read model, the runner discards it, rebuilds the
// model from the events (equal to a fresh one) and keeps running.
func TestRunnerRebuildsOverDamagedSnapshots(t *testing.T) {
	models := []struct {
		name string
		new  func() projections.Projection
	}{
		{stepsmodel.Name, func() projections.Projection { return stepsmodel.New() }},
		{safetymodel.Name, func() projections.Projection { return safetymodel.New() }},
		{dashboardmodel.Name, func() projections.Projection { return dashboardmodel.New() }},
		{alertsmodel.Name, func() projections.Projection { return alertsmodel.New(alertsmodel.DefaultRules()) }},
		{nearbymodel.Name, func() projections.Projection { return nearbymodel.New() }},
	}
	for _, m := range models {
		t.Run(m.name, func(t *testing.T) {
			s := runnerStore(t)
			last := appendWorld(t, s)
			opts := tljs.RunnerOptions{Logger: quietLogger}
			want := m.new()
			r := tljs.NewRunner(s, want, opts)
			stop := startRunner(t, r)
			waitFor(t, r, last)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			wantBytes, err := want.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if fresh := m.new(); reflect.DeepEqual(snapshotOf(t, fresh), wantBytes) {
				t.Fatalf("the events leave %s empty: nothing to compare", m.name)
			}
			for _, d := range damages {
				t.Run(d.name, func(t *testing.T) {
					d.damage(t, s, m.name)
					got := m.new()
					r := tljs.NewRunner(s, got, opts)
					stop := startRunner(t, r)
					waitFor(t, r, last)
					if gotBytes := snapshotOf(t, got); !bytes.Equal(gotBytes, wantBytes) {
						t.Errorf("model over a damaged snapshot differs from a rebuilt one:\ngot  %.300q\nwant %.300q", gotBytes, wantBytes)
					}
					if err := r.Rebuild(shortCtx(t)); err != nil {
						t.Errorf("Rebuild: %v", err)
					}
					if st := r.Status(context.Background()); st.State != tljs.Running || st.Lag != 0 {
						t.Errorf("status %+v, want running and caught up", st)
					}
					if err := stop(); err != nil { // writes a good snapshot for the next case
						t.Fatal(err)
					}
				})
			}
		})
	}
}

func snapshotOf(tb testing.TB, p projections.Projection) []byte {
	tb.Helper()
	b, err := p.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// panickyRestore is a counting projection whose Restore panics on a
// snapshot it cannot make sense of, as a decoder with a bug can.
type panickyRestore struct{ *countingProjection }

func (p panickyRestore) Restore(data []byte) error {
	if strings.HasPrefix(string(data), "boom") {
		var m map[string]int
		m["boom"]++ // nil map: panics
	}
	return p.countingProjection.Restore(data)
}

func TestRunnerRebuildsWhenRestorePanics(t *testing.T) {
	s := runnerStore(t)
	opts := tljs.RunnerOptions{Logger: quietLogger}
	r0 := tljs.NewRunner(s, newCountingProjection("counts", 1), opts)
	stop := startRunner(t, r0)
	last := appendCommits(t, s, 0, 10)
	waitFor(t, r0, last)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	putSnapshotBytes(t, s, "counts", func([]byte) []byte { return []byte("boom") })

	p := panickyRestore{newCountingProjection("counts", 1)}
	r := tljs.NewRunner(s, p, opts)
	startRunner(t, r)
	waitFor(t, r, last)
	checkModel(t, p.model(), eventsIn(0, 10))
}
