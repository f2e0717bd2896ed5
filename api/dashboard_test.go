package api_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// appendTo stores msgs as one commit on the order's (or rider's) stream and
// returns its position.
func appendTo(tb testing.TB, f *servertest.Server, id string, msgs ...proto.Message) uint64 {
	tb.Helper()
	stream := es.StreamID{Context: "delivery", Type: "order", ID: id}
	if _, ok := msgs[0].(*safetyv1.DangerDetected); ok {
		stream = es.StreamID{Context: "safety", Type: "rider", ID: id}
	}
	res, err := f.Store.Append(context.Background(), stream, msgs, es.AppendOptions{ExpectedVersion: es.AnyVersion})
	if err != nil {
		tb.Fatal(err)
	}
	return res.Position.Seq
}

func TestDashboardRoles(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := dashboardv1connect.NewDashboardServiceClient(h2c, f.URL)
	cases := []struct {
		name string
		tok  string
		code connect.Code // 0: allowed
	}{
		{"admin_reads", f.Token(t, "ops", auth.Admin), 0},
		{"enterprise_reads", f.Token(t, "ops", auth.Enterprise), 0},
		{"rider_denied", f.Token(t, "ops", auth.Rider), connect.CodePermissionDenied},
		{"walker_denied", f.Token(t, "ops", auth.Walker), connect.CodePermissionDenied},
		{"service_denied", f.Token(t, "ops", auth.Service), connect.CodePermissionDenied},
		{"no_token", "", connect.CodeUnauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.GetDashboard(context.Background(), withToken(&dashboardv1.GetDashboardRequest{}, tc.tok))
			if tc.code == 0 && err != nil || tc.code != 0 && connect.CodeOf(err) != tc.code {
				t.Fatalf("GetDashboard: %v, want code %v", err, tc.code)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := c.WatchDashboard(ctx, withToken(&dashboardv1.WatchDashboardRequest{}, tc.tok))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ok := s.Receive()
			if tc.code == 0 && !ok || tc.code != 0 && (ok || connect.CodeOf(s.Err()) != tc.code) {
				t.Fatalf("WatchDashboard: received %v, err %v, want code %v", ok, s.Err(), tc.code)
			}
		})
	}
}

func TestDashboardRejectsBadQueries(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := dashboardv1connect.NewDashboardServiceClient(h2c, f.URL)
	tok := f.Token(t, "ops", auth.Admin)
	now := time.Now()
	cases := []struct {
		name  string
		query *dashboardv1.DashboardQuery
		field string
	}{
		{"cell_too_large", &dashboardv1.DashboardQuery{HeatCellDeg: 2}, "query.heat_cell_deg"},
		{"cell_too_small", &dashboardv1.DashboardQuery{HeatCellDeg: 0.00001}, "query.heat_cell_deg"},
		{"negative_limit", &dashboardv1.DashboardQuery{RankingLimit: -1}, "query.ranking_limit"},
		{"limit_too_large", &dashboardv1.DashboardQuery{ActiveLimit: 1001}, "query.active_limit"},
		{"bad_rider", &dashboardv1.DashboardQuery{RiderId: "a.b"}, "query.rider_id"},
		{"heat_to_before_from", &dashboardv1.DashboardQuery{HeatFrom: timestamppb.New(now), HeatTo: timestamppb.New(now.Add(-time.Hour))}, "query.heat_to"},
		{"heat_range_too_long", &dashboardv1.DashboardQuery{HeatFrom: timestamppb.New(now.AddDate(-2, 0, 0)), HeatTo: timestamppb.New(now)}, "query.heat_to"},
		{"bad_timestamp", &dashboardv1.DashboardQuery{HeatFrom: &timestamppb.Timestamp{Nanos: -1}}, "query.heat_from"},
		{"heat_from_year_one", &dashboardv1.DashboardQuery{HeatFrom: timestamppb.New(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC))}, "query.heat_from"},
		{"heat_to_before_2000", &dashboardv1.DashboardQuery{HeatTo: timestamppb.New(time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC))}, "query.heat_to"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.GetDashboard(context.Background(), withToken(&dashboardv1.GetDashboardRequest{Query: tc.query}, tok))
			var ce *connect.Error
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !errors.As(err, &ce) || len(ce.Message()) < len(tc.field) || ce.Message()[:len(tc.field)] != tc.field {
				t.Fatalf("err = %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
}

func TestGetDashboardReadsOwnWritesOverEveryProtocol(t *testing.T) {
	t.Parallel()
	f := start(t)
	now := time.Now()
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := dashboardv1connect.NewDashboardServiceClient(h2c, f.URL, p.opts...)
			order, zone, rider := "o-"+p.name, "zone-"+p.name, "rider-"+p.name
			appendTo(t, f, order, &deliveryv1.OrderPlaced{OrderId: order, Zone: zone, Amount: 15000, PlacedAt: timestamppb.New(now)})
			appendTo(t, f, order, &deliveryv1.OrderAccepted{OrderId: order, RiderId: rider, AcceptedAt: timestamppb.New(now)})
			appendTo(t, f, rider, &safetyv1.DangerDetected{EventId: "d-" + p.name, RiderId: rider, DetectedAt: timestamppb.New(now), Location: &safetyv1.Location{Lat: 37.5, Lng: 127.03}})
			pos := appendTo(t, f, order, &deliveryv1.OrderRated{OrderId: order, RiderId: rider, Stars: 5})
			res, err := c.GetDashboard(context.Background(), withToken(&dashboardv1.GetDashboardRequest{
				MinPosition: pos, Query: &dashboardv1.DashboardQuery{RiderId: rider},
			}, f.Token(t, "ops", auth.Enterprise)))
			if err != nil {
				t.Fatal(err)
			}
			d := res.Msg.Dashboard
			if d.Position < pos {
				t.Fatalf("position %d < min_position %d", d.Position, pos)
			}
			i := slices.IndexFunc(d.Zones, func(z *dashboardv1.ZoneStats) bool { return z.Zone == zone })
			if i < 0 || d.Zones[i].Today.Orders != 1 || d.Zones[i].Today.AvgOrderAmount != 15000 {
				t.Fatalf("zone %s not counted: %v", zone, d.Zones)
			}
			if !slices.ContainsFunc(d.Board.Active, func(a *dashboardv1.ActiveDelivery) bool { return a.OrderId == order && a.RiderId == rider }) {
				t.Fatalf("order %s not active with %s: %v", order, rider, d.Board)
			}
			if !slices.ContainsFunc(d.RiderRanking, func(r *dashboardv1.RiderRating) bool { return r.RiderId == rider && r.AverageStars == 5 }) {
				t.Fatalf("rider %s not ranked: %v", rider, d.RiderRanking)
			}
			if len(d.DangerTrends) != 1 || d.DangerTrends[0].Total != 1 || d.HeatMap.Total == 0 {
				t.Fatalf("danger trend %v heat map %v", d.DangerTrends, d.HeatMap)
			}
		})
	}
}

// watchDashboard opens a WatchDashboard stream and forwards what it receives.
func watchDashboard(tb testing.TB, ctx context.Context, f *servertest.Server) <-chan *dashboardv1.Dashboard {
	tb.Helper()
	c := dashboardv1connect.NewDashboardServiceClient(h2c, f.URL)
	s, err := c.WatchDashboard(ctx, withToken(&dashboardv1.WatchDashboardRequest{}, f.Token(tb, "ops", auth.Admin)))
	if err != nil {
		tb.Fatal(err)
	}
	out := make(chan *dashboardv1.Dashboard, 1024)
	go func() {
		defer close(out)
		defer s.Close()
		for s.Receive() {
			out <- s.Msg().Dashboard
		}
	}()
	return out
}

// await returns the first update at or past pos.
func await(tb testing.TB, updates <-chan *dashboardv1.Dashboard, pos uint64) *dashboardv1.Dashboard {
	tb.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case d, ok := <-updates:
			if !ok {
				tb.Fatal("watch ended")
			}
			if d.Position >= pos {
				return d
			}
		case <-timeout:
			tb.Fatalf("no update reached position %d", pos)
		}
	}
}

func TestWatchDashboardPushesAppends(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := watchDashboard(t, ctx, f)
	first := await(t, updates, 0)
	if first.Board.Placed != 0 {
		t.Fatalf("first update = %v", first.Board)
	}
	pos := appendTo(t, f, "o1", &deliveryv1.OrderPlaced{OrderId: "o1", Zone: "z1", Amount: 9000, PlacedAt: timestamppb.Now()})
	if d := await(t, updates, pos); d.Board.Placed != 1 || d.Today.Orders != 1 {
		t.Fatalf("update after placing = board %v today %v", d.Board, d.Today)
	}
	// A burst of 50 orders arrives in far fewer updates, the last with all.
	var last uint64
	for i := range 50 {
		id := fmt.Sprintf("b%d", i)
		last = appendTo(t, f, id, &deliveryv1.OrderPlaced{OrderId: id, Zone: "z1", Amount: 9000, PlacedAt: timestamppb.Now()})
	}
	n := 0
	for {
		d := await(t, updates, 0)
		n++
		if d.Position >= last {
			if d.Board.Placed != 51 {
				t.Fatalf("after the burst: %d placed, want 51", d.Board.Placed)
			}
			break
		}
	}
	t.Logf("50 appends arrived in %d updates", n)
	if n >= 50 {
		t.Errorf("burst not coalesced: %d updates", n)
	}
	// An event the dashboard does not read changes no figure: no update.
	appendTo(t, f, "w1", &safetyv1.DangerDetected{RiderId: "no-event-id"})
	select {
	case d := <-updates:
		t.Fatalf("update without a change: %v", d)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWatchersOfOneQueryGetOneAnswer opens watchers of the default query
// over every protocol, some sending gzip, and appends a change big enough
// to be compressed: each watcher gets the same answer, computed once (down
// to its generated_at), with the figures GetDashboard gives.
func TestWatchersOfOneQueryGetOneAnswer(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tok := f.Token(t, "ops", auth.Admin)
	var watchers []<-chan *dashboardv1.Dashboard
	for _, p := range protocols {
		for _, opts := range [][]connect.ClientOption{p.opts, append(slices.Clip(p.opts), connect.WithSendGzip())} {
			for range 2 {
				c := dashboardv1connect.NewDashboardServiceClient(h2c, f.URL, opts...)
				s, err := c.WatchDashboard(ctx, withToken(&dashboardv1.WatchDashboardRequest{}, tok))
				if err != nil {
					t.Fatal(err)
				}
				out := make(chan *dashboardv1.Dashboard, 16)
				go func() {
					defer close(out)
					defer s.Close()
					for s.Receive() {
						out <- s.Msg().Dashboard
					}
				}()
				await(t, out, 0)
				watchers = append(watchers, out)
			}
		}
	}
	now := time.Now()
	var msgs []proto.Message
	for z := range 40 {
		id := fmt.Sprintf("fan-%d", z)
		msgs = append(msgs, &deliveryv1.OrderPlaced{OrderId: id, Zone: fmt.Sprintf("zone-%02d", z), Amount: 12000, PlacedAt: timestamppb.New(now)})
	}
	pos := appendTo(t, f, "fan", msgs...)
	first := await(t, watchers[0], pos)
	if size := proto.Size(first); size < 2048 || len(first.Zones) != 40 {
		t.Fatalf("update of %d bytes with %d zones, want 40 zones and over 2 KB", size, len(first.Zones))
	}
	for i, w := range watchers[1:] {
		if d := await(t, w, pos); !proto.Equal(d, first) {
			t.Fatalf("watcher %d got another answer: position %d generated at %v, not %d at %v", i+1, d.Position, d.GeneratedAt.AsTime(), first.Position, first.GeneratedAt.AsTime())
		}
	}
	c := dashboardv1connect.NewDashboardServiceClient(h2c, f.URL, connect.WithSendGzip())
	res, err := c.GetDashboard(ctx, withToken(&dashboardv1.GetDashboardRequest{MinPosition: pos}, tok))
	if err != nil {
		t.Fatal(err)
	}
	got := res.Msg.Dashboard
	got.Position, got.GeneratedAt, first.Position, first.GeneratedAt = 0, nil, 0, nil
	if !proto.Equal(got, first) {
		t.Fatal("the watchers' figures differ from GetDashboard's")
	}
}

// BenchmarkDashboardFreshness measures event append → pushed dashboard
// update through the real server: the time from calling Append to
// receiving the first WatchDashboard update that includes the event.
// "isolated" events arrive after a quiet spell (the watch's minimum gap);
// "back_to_back" ones right after the previous update, so each waits out
// the coalescing gap. Run with:
//
//	go test ./api/ -run '^$' -bench DashboardFreshness -benchtime 200x
func BenchmarkDashboardFreshness(b *testing.B) {
	for _, mode := range []struct {
		name  string
		pause time.Duration
	}{{"isolated", 60 * time.Millisecond}, {"back_to_back", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			f := start(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			updates := watchDashboard(b, ctx, f)
			await(b, updates, 0)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				time.Sleep(mode.pause)
				b.StartTimer()
				id := fmt.Sprintf("o%d", i)
				start := time.Now()
				pos := appendTo(b, f, id, &deliveryv1.OrderPlaced{OrderId: id, Zone: "z1", Amount: 9000, PlacedAt: timestamppb.New(start)})
				await(b, updates, pos)
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
