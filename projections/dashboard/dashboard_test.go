package dashboard_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/dashboard"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// kst returns a time in Korea Standard Time.
func kst(y int, mo time.Month, d, h, mi int) time.Time {
	return time.Date(y, mo, d, h, mi, 0, 0, dashboard.Zone)
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func placed(id, zone string, amount int64, at time.Time) proto.Message {
	return &deliveryv1.OrderPlaced{OrderId: id, Zone: zone, Amount: amount, PlacedAt: ts(at)}
}
func accepted(id, rider string, at time.Time) proto.Message {
	return &deliveryv1.OrderAccepted{OrderId: id, RiderId: rider, AcceptedAt: ts(at)}
}
func pickedUp(id, rider string, at time.Time) proto.Message {
	return &deliveryv1.OrderPickedUp{OrderId: id, RiderId: rider, PickedUpAt: ts(at)}
}
func delivered(id, rider string, at time.Time) proto.Message {
	return &deliveryv1.OrderDelivered{OrderId: id, RiderId: rider, DeliveredAt: ts(at)}
}
func cancelled(id string, at time.Time) proto.Message {
	return &deliveryv1.OrderCancelled{OrderId: id, Reason: "customer", CancelledBy: "admin:ops", CancelledAt: ts(at)}
}
func rated(id, rider string, stars int32) proto.Message {
	return &deliveryv1.OrderRated{OrderId: id, RiderId: rider, Stars: stars}
}
func dangerAt(id, rider string, at time.Time, loc *safetyv1.Location) proto.Message {
	return &safetyv1.DangerDetected{EventId: id, RiderId: rider, Kind: safetyv1.DangerKind_DANGER_KIND_CRASH,
		Severity: safetyv1.Severity_SEVERITY_HIGH, DetectedAt: ts(at), Location: loc}
}

// build applies msgs in order as events at positions 1, 2, ...; each
// event's OccurredAt is occurred.
func build(msgs []proto.Message, occurred time.Time) *dashboard.Model {
	m := dashboard.New()
	for i, msg := range msgs {
		m.Apply(es.Event{Type: string(msg.ProtoReflect().Descriptor().FullName()), Data: msg, OccurredAt: occurred, Position: es.Position{Seq: uint64(i + 1)}})
	}
	return m
}

func zone(d *dashboardv1.Dashboard, z string) *dashboardv1.ZoneStats {
	for _, s := range d.Zones {
		if s.Zone == z {
			return s
		}
	}
	return nil
}

// wantEqual compares protobuf messages, slices of them, or plain values.
func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !equal(reflect.ValueOf(got), reflect.ValueOf(want)) {
		t.Errorf("%s:\n got %v\nwant %v", what, show(got), show(want))
	}
}

func equal(a, b reflect.Value) bool {
	if a.Kind() == reflect.Slice && b.Kind() == reflect.Slice {
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equal(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	}
	if ma, ok := a.Interface().(proto.Message); ok {
		mb, ok := b.Interface().(proto.Message)
		return ok && proto.Equal(ma, mb)
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func show(v any) string {
	r := reflect.ValueOf(v)
	if r.Kind() != reflect.Slice {
		return fmt.Sprint(v)
	}
	s := "["
	for i := range r.Len() {
		s += fmt.Sprintf("\n\t%v", r.Index(i).Interface())
	}
	return s + "]"
}

func TestDashboardFigures(t *testing.T) {
	now := kst(2026, 11, 22, 14, 30) // Sunday
	today := func(h, mi int) time.Time { return kst(2026, 11, 22, h, mi) }
	cases := []struct {
		name   string
		events []proto.Message
		query  dashboard.Query
		check  func(t *testing.T, d *dashboardv1.Dashboard)
	}{
		{
			name: "average_order_amount_today_month_and_zone",
			events: []proto.Message{
				placed("o1", "z1", 10000, today(9, 0)),
				placed("o2", "z1", 20000, today(10, 0)),
				placed("o3", "z2", 30000, today(0, 0)),                    // midnight KST is today
				placed("o4", "z2", 50000, kst(2026, 11, 1, 0, 0)),         // this month
				placed("o5", "z1", 99000, kst(2026, 10, 31, 23, 59)),      // last month
				placed("o6", "z1", 70000, kst(2026, 11, 21, 23, 59)),      // yesterday
				placed("o7", "z2", 11000, kst(2026, 11, 22, 23, 59)),      // later today still counts
				placed("o8", "z2", 77000, today(23, 59).Add(time.Minute)), // tomorrow
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				wantEqual(t, "today", d.Today, &dashboardv1.PeriodStats{Orders: 4, AmountTotal: 71000, AvgOrderAmount: 17750})
				wantEqual(t, "month", d.ThisMonth, &dashboardv1.PeriodStats{Orders: 7, AmountTotal: 268000, AvgOrderAmount: 268000.0 / 7})
				wantEqual(t, "z1 today", zone(d, "z1").Today, &dashboardv1.PeriodStats{Orders: 2, AmountTotal: 30000, AvgOrderAmount: 15000})
				wantEqual(t, "z1 month", zone(d, "z1").ThisMonth, &dashboardv1.PeriodStats{Orders: 3, AmountTotal: 100000, AvgOrderAmount: 100000.0 / 3})
				wantEqual(t, "z2 month", zone(d, "z2").ThisMonth, &dashboardv1.PeriodStats{Orders: 4, AmountTotal: 168000, AvgOrderAmount: 42000})
				if d.Date != "2026-11-22" || d.Month != "2026-11" || d.TimeZone != "Asia/Seoul" {
					t.Errorf("date %s month %s zone %s", d.Date, d.Month, d.TimeZone)
				}
			},
		},
		{
			name: "delivery_time_is_accepted_to_delivered_by_delivered_day",
			events: []proto.Message{
				placed("o1", "z1", 1, today(8, 0)),
				accepted("o1", "r1", today(8, 10)),
				pickedUp("o1", "r1", today(8, 20)),
				delivered("o1", "r1", today(8, 40)), // 30 min
				placed("o2", "z1", 1, today(9, 0)),
				accepted("o2", "r2", today(9, 5)),
				delivered("o2", "r2", today(9, 15)), // 10 min, no pickup event
				placed("o3", "z2", 1, kst(2026, 11, 21, 23, 30)),
				accepted("o3", "r1", kst(2026, 11, 21, 23, 40)),
				delivered("o3", "r1", today(0, 20)), // 40 min, placed yesterday, delivered today
				placed("o4", "z2", 1, kst(2026, 11, 20, 12, 0)),
				accepted("o4", "r1", kst(2026, 11, 20, 12, 0)),
				delivered("o4", "r1", kst(2026, 11, 20, 13, 0)), // 60 min, this month only
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				if got := d.Today.Delivered; got != 3 {
					t.Errorf("delivered today = %d, want 3", got)
				}
				if got := d.Today.AvgDeliverySeconds; got != (30+10+40)*60/3.0 {
					t.Errorf("avg delivery today = %v s, want %v", got, (30+10+40)*60/3.0)
				}
				if got := d.ThisMonth.AvgDeliverySeconds; got != (30+10+40+60)*60/4.0 {
					t.Errorf("avg delivery month = %v s", got)
				}
				if got := zone(d, "z2").Today.AvgDeliverySeconds; got != 40*60 {
					t.Errorf("z2 avg delivery today = %v s, want 2400", got)
				}
				if d.Board.DeliveredToday != 3 || len(d.Board.Active) != 0 {
					t.Errorf("board = %v", d.Board)
				}
			},
		},
		{
			name: "cancellations_count_by_cancelled_at_and_leave_the_board",
			events: []proto.Message{
				placed("o1", "z1", 1000, kst(2026, 11, 21, 22, 0)),
				cancelled("o1", today(1, 0)),
				placed("o2", "z1", 3000, today(9, 0)),
				accepted("o2", "r1", today(9, 1)),
				cancelled("o2", today(9, 2)),
				cancelled("o2", today(9, 3)),        // again: no effect
				delivered("o2", "r1", today(9, 30)), // after cancel: no effect
				cancelled("ghost", today(9, 4)),     // unknown order
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				wantEqual(t, "today", d.Today, &dashboardv1.PeriodStats{Orders: 1, Cancelled: 2, AmountTotal: 3000, AvgOrderAmount: 3000})
				wantEqual(t, "board", d.Board, &dashboardv1.Board{CancelledToday: 2})
			},
		},
		{
			name: "board_counts_by_state_and_active_deliveries_with_rider",
			events: []proto.Message{
				placed("o1", "z1", 1000, today(9, 0)),
				placed("o2", "z1", 2000, today(9, 1)),
				placed("o3", "z2", 3000, today(9, 2)),
				placed("o4", "z2", 4000, today(9, 3)),
				placed("o5", "z2", 5000, today(9, 4)),
				accepted("o3", "r3", today(9, 10)),
				accepted("o2", "r2", today(9, 5)),
				accepted("o4", "r4", today(9, 6)),
				pickedUp("o4", "r4", today(9, 20)),
				accepted("o4", "r9", today(9, 21)), // already taken: no effect
				accepted("o5", "r5", today(9, 7)),
				delivered("o5", "r5", today(9, 30)),
			},
			query: dashboard.Query{ActiveLimit: 2},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				b := d.Board
				if b.Placed != 1 || b.Accepted != 2 || b.PickedUp != 1 || b.DeliveredToday != 1 {
					t.Errorf("counts placed %d accepted %d picked_up %d delivered %d, want 1 2 1 1", b.Placed, b.Accepted, b.PickedUp, b.DeliveredToday)
				}
				wantEqual(t, "active", b.Active, []*dashboardv1.ActiveDelivery{
					{OrderId: "o2", RiderId: "r2", Zone: "z1", State: dashboardv1.DeliveryState_DELIVERY_STATE_ACCEPTED, Amount: 2000, PlacedAt: ts(today(9, 1)), AcceptedAt: ts(today(9, 5))},
					{OrderId: "o4", RiderId: "r4", Zone: "z2", State: dashboardv1.DeliveryState_DELIVERY_STATE_PICKED_UP, Amount: 4000, PlacedAt: ts(today(9, 3)), AcceptedAt: ts(today(9, 6)), PickedUpAt: ts(today(9, 20))},
				})
			},
		},
		{
			name: "ratings_rank_by_average_then_count_then_id",
			events: []proto.Message{
				rated("o1", "ann", 5), rated("o2", "ann", 4), // 4.5 x2
				rated("o3", "bob", 5),                        // 5.0 x1
				rated("o4", "cat", 4), rated("o5", "cat", 5), // 4.5 x2: ties ann
				rated("o6", "dan", 3), rated("o7", "dan", 4), rated("o8", "dan", 5), rated("o9", "dan", 6), // 4.0 x3; 6 stars ignored
				rated("o10", "eve", 0), // ignored
			},
			query: dashboard.Query{RankingLimit: 3},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				wantEqual(t, "ranking", d.RiderRanking, []*dashboardv1.RiderRating{
					{Rank: 1, RiderId: "bob", AverageStars: 5, Ratings: 1},
					{Rank: 2, RiderId: "ann", AverageStars: 4.5, Ratings: 2},
					{Rank: 2, RiderId: "cat", AverageStars: 4.5, Ratings: 2},
				})
				if d.RatedRiders != 4 {
					t.Errorf("rated riders = %d, want 4", d.RatedRiders)
				}
			},
		},
		{
			name: "danger_per_day_per_rider_this_month",
			events: []proto.Message{
				dangerAt("d1", "r1", kst(2026, 11, 1, 0, 0), nil),
				dangerAt("d2", "r1", kst(2026, 11, 1, 23, 59), nil),
				dangerAt("d2", "r1", kst(2026, 11, 1, 23, 59), nil), // same detection twice
				dangerAt("d3", "r1", kst(2026, 11, 22, 8, 0), nil),
				dangerAt("d4", "r1", kst(2026, 10, 31, 23, 59), nil), // last month
				dangerAt("d5", "r2", kst(2026, 11, 30, 23, 59), nil),
				dangerAt("d6", "r3", kst(2026, 11, 2, 0, 0), nil),
				dangerAt("d7", "r3", kst(2026, 11, 3, 0, 0), nil),
				dangerAt("d8", "r3", kst(2026, 11, 3, 1, 0), nil),
			},
			query: dashboard.Query{TrendLimit: 2},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				r3 := make([]int32, 30)
				r3[1], r3[2] = 1, 2
				r1 := make([]int32, 30)
				r1[0], r1[21] = 2, 1
				wantEqual(t, "trends", d.DangerTrends, []*dashboardv1.RiderDangerTrend{
					{RiderId: "r1", Daily: r1, Total: 3},
					{RiderId: "r3", Daily: r3, Total: 3},
				})
			},
		},
		{
			name: "riders_sharing_an_event_id_are_counted_apart",
			events: []proto.Message{
				dangerAt("d1", "r1", kst(2026, 11, 5, 12, 0), nil),
				dangerAt("d1", "r2", kst(2026, 11, 5, 12, 0), nil), // another rider, same id
				dangerAt("d1", "r1", kst(2026, 11, 5, 12, 0), nil), // r1's again: a duplicate
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				daily := make([]int32, 30)
				daily[4] = 1
				wantEqual(t, "trends", d.DangerTrends, []*dashboardv1.RiderDangerTrend{
					{RiderId: "r1", Daily: daily, Total: 1},
					{RiderId: "r2", Daily: daily, Total: 1},
				})
			},
		},
		{
			name: "danger_trend_of_one_rider",
			events: []proto.Message{
				dangerAt("d1", "r1", kst(2026, 11, 5, 12, 0), nil),
				dangerAt("d2", "r2", kst(2026, 11, 30, 23, 59), nil),
			},
			query: dashboard.Query{RiderID: "r2"},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				daily := make([]int32, 30)
				daily[29] = 1
				wantEqual(t, "trends", d.DangerTrends, []*dashboardv1.RiderDangerTrend{{RiderId: "r2", Daily: daily, Total: 1}})
			},
		},
		{
			name: "heat_map_counts_per_cell_in_range",
			events: []proto.Message{
				dangerAt("d1", "r1", today(10, 0), &safetyv1.Location{Lat: 37.5012, Lng: 127.0391}),
				dangerAt("d2", "r2", today(11, 0), &safetyv1.Location{Lat: 37.5099, Lng: 127.0350}),
				dangerAt("d3", "r1", today(12, 0), &safetyv1.Location{Lat: 37.4999, Lng: 127.0391}),
				dangerAt("d4", "r1", today(12, 30), nil),
				dangerAt("d5", "r1", today(13, 0), &safetyv1.Location{Lat: -33.8651, Lng: 151.2099}),
				dangerAt("d6", "r1", today(9, 59), &safetyv1.Location{Lat: 37.5, Lng: 127.03}),      // before range
				dangerAt("d7", "r1", today(14, 0), &safetyv1.Location{Lat: 37.5, Lng: 127.03}),      // at to: excluded
				dangerAt("d3", "r1", today(12, 0), &safetyv1.Location{Lat: 37.4999, Lng: 127.0391}), // duplicate
			},
			query: dashboard.Query{HeatFrom: today(10, 0), HeatTo: today(14, 0), CellDeg: 0.01},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				h := d.HeatMap
				if h.Total != 5 || h.WithoutLocation != 1 || h.CellDeg != 0.01 {
					t.Errorf("total %d without location %d cell %v, want 5 1 0.01", h.Total, h.WithoutLocation, h.CellDeg)
				}
				// d1 and d2 share cell (3750, 12703); d3 is just south of it.
				cell := func(lat, lng int64, n int32) *dashboardv1.HeatCell {
					size := 0.01
					return &dashboardv1.HeatCell{LatIndex: lat, LngIndex: lng, Lat: float64(lat) * size, Lng: float64(lng) * size, Count: n}
				}
				want := []*dashboardv1.HeatCell{cell(3750, 12703, 2), cell(-3387, 15120, 1), cell(3749, 12703, 1)}
				wantEqual(t, "cells", h.Cells, want)
			},
		},
		{
			name: "heat_map_defaults_to_today",
			events: []proto.Message{
				dangerAt("d1", "r1", today(0, 0), &safetyv1.Location{Lat: 37.5, Lng: 127}),
				dangerAt("d2", "r1", kst(2026, 11, 21, 23, 59), &safetyv1.Location{Lat: 37.5, Lng: 127}),
				dangerAt("d3", "r1", today(23, 59), &safetyv1.Location{Lat: 37.5, Lng: 127}),
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				if d.HeatMap.Total != 2 || !d.HeatMap.From.AsTime().Equal(today(0, 0)) || !d.HeatMap.To.AsTime().Equal(kst(2026, 11, 23, 0, 0)) {
					t.Errorf("heat map = %v", d.HeatMap)
				}
			},
		},
		{
			name: "orders_per_zone_per_hour_today",
			events: []proto.Message{
				placed("o1", "z1", 1, today(0, 0)),
				placed("o2", "z1", 1, today(0, 59)),
				placed("o3", "z1", 1, today(13, 30)),
				placed("o4", "z1", 1, today(23, 59)),
				placed("o5", "z1", 1, kst(2026, 11, 21, 23, 59)),
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				want := make([]int32, 24)
				want[0], want[13], want[23] = 2, 1, 1
				wantEqual(t, "hourly", zone(d, "z1").HourlyOrders, want)
				if got := zone(d, "z1").NextHourStart.AsTime(); !got.Equal(today(15, 0)) {
					t.Errorf("next hour = %v, want 15:00 KST", got)
				}
			},
		},
		{
			// More hours with orders in the month than a day has: the
			// query asks for today's hours rather than walk them all.
			name: "orders_per_zone_per_hour_today_in_a_busy_month",
			events: func() []proto.Message {
				var evs []proto.Message
				for h := range 30 { // hours of the 1st and 2nd of the month
					evs = append(evs, placed(fmt.Sprintf("early%d", h), "z1", 1, kst(2026, 11, 1, 0, 0).Add(time.Duration(h)*time.Hour)))
				}
				return append(evs, placed("o1", "z1", 1, today(0, 10)), placed("o2", "z1", 1, today(7, 0)), placed("o3", "z1", 1, today(7, 59)))
			}(),
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				want := make([]int32, 24)
				want[0], want[7] = 1, 2
				wantEqual(t, "hourly", zone(d, "z1").HourlyOrders, want)
				if got := zone(d, "z1").ThisMonth.Orders; got != 33 {
					t.Errorf("orders this month = %d, want 33", got)
				}
			},
		},
		{
			name: "expected_next_hour_smooths_the_same_hour_of_week",
			events: []proto.Message{
				// Sundays 15:00 KST, three weeks back: 4, 2, then 6 orders.
				placed("a1", "z1", 1, kst(2026, 11, 1, 15, 1)), placed("a2", "z1", 1, kst(2026, 11, 1, 15, 2)),
				placed("a3", "z1", 1, kst(2026, 11, 1, 15, 3)), placed("a4", "z1", 1, kst(2026, 11, 1, 15, 4)),
				placed("b1", "z1", 1, kst(2026, 11, 8, 15, 1)), placed("b2", "z1", 1, kst(2026, 11, 8, 15, 2)),
				placed("c1", "z1", 1, kst(2026, 11, 15, 15, 1)), placed("c2", "z1", 1, kst(2026, 11, 15, 15, 2)),
				placed("c3", "z1", 1, kst(2026, 11, 15, 15, 3)), placed("c4", "z1", 1, kst(2026, 11, 15, 15, 4)),
				placed("c5", "z1", 1, kst(2026, 11, 15, 15, 5)), placed("c6", "z1", 1, kst(2026, 11, 15, 15, 6)),
				placed("x1", "z1", 1, kst(2026, 11, 22, 14, 10)), // this hour: not part of the forecast
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				a := dashboard.Alpha
				want := a*6 + (1-a)*(a*2+(1-a)*4)
				if got := zone(d, "z1").ExpectedNextHour; got != want {
					t.Errorf("expected next hour = %v, want %v", got, want)
				}
				if d.ForecastAlpha != a {
					t.Errorf("alpha = %v", d.ForecastAlpha)
				}
			},
		},
		{
			name: "expected_next_hour_before_a_week_of_history_is_the_mean",
			events: []proto.Message{
				placed("o1", "z1", 1, today(10, 0)),
				placed("o2", "z1", 1, today(11, 0)),
				placed("o3", "z1", 1, today(11, 30)),
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				if got := zone(d, "z1").ExpectedNextHour; got != 3.0/5 { // 10:00 to 15:00
					t.Errorf("expected next hour = %v, want 0.6", got)
				}
			},
		},
		{
			name: "missing_timestamps_fall_back_to_occurred_at",
			events: []proto.Message{
				&deliveryv1.OrderPlaced{OrderId: "o1", Zone: "z1", Amount: 500},
				&safetyv1.DangerDetected{EventId: "d1", RiderId: "r1"},
			},
			check: func(t *testing.T, d *dashboardv1.Dashboard) {
				if d.Today.Orders != 0 || d.ThisMonth.Orders != 1 || d.DangerTrends[0].Daily[19] != 1 {
					t.Errorf("today %v month %v trends %v", d.Today, d.ThisMonth, d.DangerTrends)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := build(tc.events, kst(2026, 11, 20, 12, 0))
			q := tc.query
			q.Now = now
			d := m.Dashboard(q)
			if d.Position != uint64(len(tc.events)) {
				t.Errorf("position = %d, want %d", d.Position, len(tc.events))
			}
			tc.check(t, d)
		})
	}
}

func TestEventTypesAreTheDeliveryAndSafetyEvents(t *testing.T) {
	got := dashboard.New().EventTypes()
	want := []string{
		"tideline.delivery.v1.OrderPlaced", "tideline.delivery.v1.OrderAccepted", "tideline.delivery.v1.OrderPickedUp",
		"tideline.delivery.v1.OrderDelivered", "tideline.delivery.v1.OrderCancelled", "tideline.delivery.v1.OrderRated",
		"tideline.safety.v1.DangerDetected",
	}
	wantEqual(t, "event types", got, want)
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	for _, tc := range []struct{ name, data string }{
		{"empty", ""},
		{"other_magic", "tlsafety1xxxxxxxx"},
		{"bad_json", "tldashboard1\n{"},
		{"missing_parts", "tldashboard1\n{\"orders\":null}"},
		{"rating_without_ratings", "tldashboard1\n{\"orders\":{},\"days\":{},\"hours\":{},\"firstHour\":{},\"ratings\":{\"r1\":{\"s\":0,\"n\":0}},\"riderDanger\":{},\"danger\":null}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := dashboard.New().Restore([]byte(tc.data)); err == nil {
				t.Fatal("restore succeeded")
			}
		})
	}
}
