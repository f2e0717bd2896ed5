package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// clients holds one client per service for one protocol.
type clients struct {
	steps     stepsv1connect.StepsServiceClient
	step      stepconnect.StepServiceClient
	delivery  deliveryv1connect.DeliveryServiceClient
	safety    safetyv1connect.SafetyServiceClient
	dashboard dashboardv1connect.DashboardServiceClient
	admin     adminv1connect.AdminServiceClient
}

func newClients(url string, opts ...connect.ClientOption) *clients {
	return &clients{
		steps:     stepsv1connect.NewStepsServiceClient(h2c, url, opts...),
		step:      stepconnect.NewStepServiceClient(h2c, url, opts...),
		delivery:  deliveryv1connect.NewDeliveryServiceClient(h2c, url, opts...),
		safety:    safetyv1connect.NewSafetyServiceClient(h2c, url, opts...),
		dashboard: dashboardv1connect.NewDashboardServiceClient(h2c, url, opts...),
		admin:     adminv1connect.NewAdminServiceClient(h2c, url, opts...),
	}
}

// call sends m to one RPC with tok and extra headers; the error is what
// the client saw (for streams, the first Receive's or the close's).
type call func(ctx context.Context, c *clients, tok string, hdr map[string]string, m proto.Message) error

func req[T any](m proto.Message, tok string, hdr map[string]string) *connect.Request[T] {
	r := withToken(m.(any).(*T), tok)
	for k, v := range hdr {
		r.Header().Set(k, v)
	}
	return r
}

func unary[T, R any](f func(c *clients) func(context.Context, *connect.Request[T]) (*connect.Response[R], error)) call {
	return func(ctx context.Context, c *clients, tok string, hdr map[string]string, m proto.Message) error {
		_, err := f(c)(ctx, req[T](m, tok, hdr))
		return err
	}
}

func serverStream[T, R any](f func(c *clients) func(context.Context, *connect.Request[T]) (*connect.ServerStreamForClient[R], error)) call {
	return func(ctx context.Context, c *clients, tok string, hdr map[string]string, m proto.Message) error {
		s, err := f(c)(ctx, req[T](m, tok, hdr))
		if err != nil {
			return err
		}
		defer s.Close()
		if s.Receive() {
			return nil // accepted: a live stream
		}
		return s.Err()
	}
}

func streamUserSteps(ctx context.Context, c *clients, tok string, hdr map[string]string, m proto.Message) error {
	s := c.step.StreamUserSteps(ctx)
	s.RequestHeader().Set("Authorization", "Bearer "+tok)
	for k, v := range hdr {
		s.RequestHeader().Set(k, v)
	}
	if err := s.Send(m.(*steppb.StepInput)); err != nil {
		_, err = s.CloseAndReceive()
		return err
	}
	_, err := s.CloseAndReceive()
	return err
}

// rpcSpec is one RPC: a valid request to mutate, how to call it, which
// role may, and its fields with the bad values to try.
type rpcSpec struct {
	path   string
	kind   connect.StreamType
	valid  func() proto.Message
	call   call
	role   auth.Role
	fields []field
}

// field is one input: its path in the request (or a header, "hdr:Name"),
// how errors name it, and the bad values to try.
type field struct {
	path, name string
	bad        []any
}

// pastTheEnd reports whether v is a well-formed position given for a
// min_position (field or header): past the stream's end it is OutOfRange,
// not malformed.
func pastTheEnd(name string, v any) bool {
	if name != "min_position" && name != api.MinPositionHeader {
		return false
	}
	switch v := v.(type) {
	case uint64:
		return true
	case string:
		_, err := strconv.ParseUint(v, 10, 64)
		return err == nil
	}
	return false
}

// Bad values by kind of input.
var (
	long65 = strings.Repeat("a", 65)
	// badIDs break the id rule (1-64 bytes of letters, digits, - _ = :),
	// many of them NATS subject specials.
	badIDs      = []any{"", ".", "a.b", "*", ">", "a b", "a\x00b", "ü", "a\tb", "a/b", long65}
	badOptIDs   = badIDs[1:] // "" means "not given"
	badDates    = []any{"", "0001-01-01", "1999-12-31", "2024-13-01", "2024-02-30", "9999-12-31", "2024-1-1", "today", "2024-01-01T00:00:00Z"}
	badLats     = []any{math.NaN(), math.Inf(1), math.Inf(-1), 90.0001, -91.0}
	badLngs     = []any{math.NaN(), math.Inf(1), math.Inf(-1), 180.5}
	badLimits   = []any{int32(-1), int32(math.MaxInt32)}
	badMinPos   = []any{uint64(math.MaxUint64), uint64(1) << 40}
	badTimes    = []any{timestamppb.New(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)), timestamppb.New(time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)), &timestamppb.Timestamp{Nanos: -1}, &timestamppb.Timestamp{Seconds: math.MaxInt64}}
	badUserList = func() []any {
		many := make([]string, 400_000) // 1.2 MB encoded
		for i := range many {
			many[i] = "u"
		}
		return []any{[]string{}, many[:1001], many[:100_000], many, []string{"ok", "a.b"}, []string{"ok", ""}, []string{long65}}
	}()
	badReasons = []any{strings.Repeat("r", 201), "line\nbreak", "nul\x00", "bell\a"}
)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(d)) }

func validDanger() *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: "cat-e1", RiderId: "cat-rider", DeviceId: "phone-1",
		Kind: safetyv1.DangerKind_DANGER_KIND_FALL, Severity: safetyv1.Severity_SEVERITY_HIGH,
		PeakAccelG: 5, PeakGyroDps: 300, DurationMs: 800, TiltDeg: 10,
		Location: &safetyv1.Location{Lat: 37.5, Lng: 127, AccuracyM: 5}, DetectedAt: ts(-time.Minute)}
}

// catalogue is every RPC the API serves.
func catalogue() []rpcSpec {
	day := today()
	unaryT := connect.StreamTypeUnary
	serverT := connect.StreamTypeServer
	dashQuery := []field{
		{"query.rider_id", "query.rider_id", badOptIDs},
		{"query.heat_cell_deg", "query.heat_cell_deg", []any{math.NaN(), math.Inf(1), -0.01, 2.0, 1e-9}},
		{"query.ranking_limit", "query.ranking_limit", badLimits},
		{"query.active_limit", "query.active_limit", badLimits},
		{"query.trend_limit", "query.trend_limit", badLimits},
		{"query.heat_from", "query.heat_from", badTimes},
		{"query.heat_to", "query.heat_to", badTimes},
	}
	orderRider := []field{{"order_id", "order_id", badIDs}, {"rider_id", "rider_id", badIDs}}
	return []rpcSpec{
		{stepsv1connect.StepsServiceRecordStepsProcedure, unaryT, func() proto.Message {
			return &stepsv1.RecordStepsRequest{UserId: "cat-user", Date: day, Steps: 10}
		}, unary(func(c *clients) func(context.Context, *connect.Request[stepsv1.RecordStepsRequest]) (*connect.Response[stepsv1.RecordStepsResponse], error) {
			return c.steps.RecordSteps
		}), auth.Admin, []field{
			{"user_id", "user_id", badIDs},
			{"date", "date", badDates},
			{"steps", "steps", []any{int32(-1), int32(200001), int32(math.MinInt32)}},
			{"idempotency_key", "idempotency_key", []any{"a b", "a\nb", strings.Repeat("k", 129), "ü"}},
		}},
		{stepsv1connect.StepsServiceGetStepsProcedure, unaryT, func() proto.Message {
			return &stepsv1.GetStepsRequest{UserIds: []string{"cat-user"}, FromDate: day}
		}, unary(func(c *clients) func(context.Context, *connect.Request[stepsv1.GetStepsRequest]) (*connect.Response[stepsv1.GetStepsResponse], error) {
			return c.steps.GetSteps
		}), auth.Walker, []field{
			{"user_ids", "user_ids", badUserList},
			{"from_date", "from_date", badDates},
			{"to_date", "to_date", append(badDates[1:], "2000-01-01")}, // before from_date
			{"min_position", "min_position", badMinPos},
		}},
		{stepsv1connect.StepsServiceGetLeaderboardProcedure, unaryT, func() proto.Message {
			return &stepsv1.GetLeaderboardRequest{Date: day}
		}, unary(func(c *clients) func(context.Context, *connect.Request[stepsv1.GetLeaderboardRequest]) (*connect.Response[stepsv1.GetLeaderboardResponse], error) {
			return c.steps.GetLeaderboard
		}), auth.Walker, []field{
			{"date", "date", badDates},
			{"limit", "limit", []any{int32(-1), int32(1001)}},
			{"user_id", "user_id", badOptIDs},
			{"min_position", "min_position", badMinPos},
		}},
		{stepsv1connect.StepsServiceWatchLeaderboardProcedure, serverT, func() proto.Message {
			return &stepsv1.WatchLeaderboardRequest{Date: day}
		}, serverStream(func(c *clients) func(context.Context, *connect.Request[stepsv1.WatchLeaderboardRequest]) (*connect.ServerStreamForClient[stepsv1.WatchLeaderboardResponse], error) {
			return c.steps.WatchLeaderboard
		}), auth.Walker, []field{
			{"date", "date", badDates},
			{"limit", "limit", []any{int32(-1), int32(1001)}},
			{"user_id", "user_id", badOptIDs},
		}},
		{stepconnect.StepServiceRecordStepsProcedure, unaryT, func() proto.Message {
			return &steppb.StepInput{UserId: "cat-user", Date: day, Steps: 10}
		}, unary(func(c *clients) func(context.Context, *connect.Request[steppb.StepInput]) (*connect.Response[steppb.StepResponse], error) {
			return c.step.RecordSteps
		}), auth.Admin, []field{
			{"userId", "userId", badIDs},
			{"date", "date", badDates},
			{"steps", "steps", []any{int32(-1), int32(200001)}},
			{"hdr:" + api.IdempotencyKeyHeader, api.IdempotencyKeyHeader, []any{"a b", strings.Repeat("k", 129), "ü"}},
		}},
		{stepconnect.StepServiceGetStepsByUuidsProcedure, unaryT, func() proto.Message {
			return &steppb.GetStepsByUuidsInput{UserIds: []string{"cat-user"}, Date: day}
		}, unary(func(c *clients) func(context.Context, *connect.Request[steppb.GetStepsByUuidsInput]) (*connect.Response[steppb.StepResponse], error) {
			return c.step.GetStepsByUuids
		}), auth.Walker, []field{
			{"userIds", "userIds", badUserList},
			{"date", "date", badDates},
			{"hdr:" + api.MinPositionHeader, api.MinPositionHeader, []any{"abc", "-1", "1e9", "18446744073709551616", "18446744073709551615"}},
		}},
		{stepconnect.StepServiceStreamStepsProcedure, serverT, func() proto.Message {
			return &steppb.GetStepsByUuidsInput{UserIds: []string{"cat-user"}, Date: day}
		}, serverStream(func(c *clients) func(context.Context, *connect.Request[steppb.GetStepsByUuidsInput]) (*connect.ServerStreamForClient[steppb.StepInput], error) {
			return c.step.StreamSteps
		}), auth.Walker, []field{
			{"userIds", "userIds", badUserList},
			{"date", "date", badDates},
		}},
		{stepconnect.StepServiceStreamUserStepsProcedure, connect.StreamTypeClient, func() proto.Message {
			return &steppb.StepInput{UserId: "cat-user", Date: day, Steps: 10}
		}, streamUserSteps, auth.Admin, []field{
			{"userId", "update[0].userId", badIDs},
			{"date", "update[0].date", badDates},
			{"steps", "update[0].steps", []any{int32(-1), int32(200001)}},
		}},
		{deliveryv1connect.DeliveryServicePlaceOrderProcedure, unaryT, func() proto.Message {
			return &deliveryv1.PlaceOrderRequest{OrderId: "cat-order", StoreId: "cat-store", Pickup: &deliveryv1.LatLng{Lat: 37.56, Lng: 126.97}, Dropoff: &deliveryv1.LatLng{Lat: 37.49, Lng: 127.02}, Amount: 18000}
		}, unary(func(c *clients) func(context.Context, *connect.Request[deliveryv1.PlaceOrderRequest]) (*connect.Response[deliveryv1.PlaceOrderResponse], error) {
			return c.delivery.PlaceOrder
		}), auth.Service, []field{
			{"order_id", "order_id", badIDs},
			{"store_id", "store_id", badIDs},
			{"pickup", "pickup", []any{nil}},
			{"dropoff", "dropoff", []any{nil}},
			{"pickup.lat", "pickup.lat", badLats},
			{"pickup.lng", "pickup.lng", badLngs},
			{"dropoff.lat", "dropoff.lat", badLats},
			{"dropoff.lng", "dropoff.lng", badLngs},
			{"amount", "amount", []any{int64(0), int64(-1), int64(100_000_001), int64(math.MaxInt64)}},
		}},
		{deliveryv1connect.DeliveryServiceAcceptOrderProcedure, unaryT, func() proto.Message {
			return &deliveryv1.AcceptOrderRequest{OrderId: "cat-order", RiderId: "cat-rider"}
		}, unary(func(c *clients) func(context.Context, *connect.Request[deliveryv1.AcceptOrderRequest]) (*connect.Response[deliveryv1.AcceptOrderResponse], error) {
			return c.delivery.AcceptOrder
		}), auth.Admin, orderRider},
		{deliveryv1connect.DeliveryServicePickUpOrderProcedure, unaryT, func() proto.Message {
			return &deliveryv1.PickUpOrderRequest{OrderId: "cat-order", RiderId: "cat-rider"}
		}, unary(func(c *clients) func(context.Context, *connect.Request[deliveryv1.PickUpOrderRequest]) (*connect.Response[deliveryv1.PickUpOrderResponse], error) {
			return c.delivery.PickUpOrder
		}), auth.Admin, orderRider},
		{deliveryv1connect.DeliveryServiceDeliverOrderProcedure, unaryT, func() proto.Message {
			return &deliveryv1.DeliverOrderRequest{OrderId: "cat-order", RiderId: "cat-rider"}
		}, unary(func(c *clients) func(context.Context, *connect.Request[deliveryv1.DeliverOrderRequest]) (*connect.Response[deliveryv1.DeliverOrderResponse], error) {
			return c.delivery.DeliverOrder
		}), auth.Admin, orderRider},
		{deliveryv1connect.DeliveryServiceCancelOrderProcedure, unaryT, func() proto.Message {
			return &deliveryv1.CancelOrderRequest{OrderId: "cat-order", Reason: "customer asked"}
		}, unary(func(c *clients) func(context.Context, *connect.Request[deliveryv1.CancelOrderRequest]) (*connect.Response[deliveryv1.CancelOrderResponse], error) {
			return c.delivery.CancelOrder
		}), auth.Service, []field{
			{"order_id", "order_id", badIDs},
			{"reason", "reason", badReasons},
		}},
		{deliveryv1connect.DeliveryServiceRateOrderProcedure, unaryT, func() proto.Message {
			return &deliveryv1.RateOrderRequest{OrderId: "cat-order", Stars: 5}
		}, unary(func(c *clients) func(context.Context, *connect.Request[deliveryv1.RateOrderRequest]) (*connect.Response[deliveryv1.RateOrderResponse], error) {
			return c.delivery.RateOrder
		}), auth.Service, []field{
			{"order_id", "order_id", badIDs},
			{"stars", "stars", []any{int32(0), int32(6), int32(-1), int32(math.MaxInt32)}},
		}},
		{deliveryv1connect.DeliveryServiceGetOrderProcedure, unaryT, func() proto.Message {
			return &deliveryv1.GetOrderRequest{OrderId: "cat-order"}
		}, unary(func(c *clients) func(context.Context, *connect.Request[deliveryv1.GetOrderRequest]) (*connect.Response[deliveryv1.GetOrderResponse], error) {
			return c.delivery.GetOrder
		}), auth.Admin, []field{
			{"order_id", "order_id", badIDs},
			{"min_position", "min_position", badMinPos},
		}},
		{deliveryv1connect.DeliveryServiceSearchNearbyOrdersProcedure, unaryT, func() proto.Message {
			return &deliveryv1.SearchNearbyOrdersRequest{Lat: 37.56, Lng: 126.97}
		}, unary(func(c *clients) func(context.Context, *connect.Request[deliveryv1.SearchNearbyOrdersRequest]) (*connect.Response[deliveryv1.SearchNearbyOrdersResponse], error) {
			return c.delivery.SearchNearbyOrders
		}), auth.Rider, []field{
			{"lat", "lat", badLats},
			{"lng", "lng", badLngs},
			{"radius_m", "radius_m", []any{math.NaN(), math.Inf(1), -1.0, 0.5, 5001.0}},
			{"limit", "limit", []any{int32(-1), int32(101)}},
			{"min_position", "min_position", badMinPos},
		}},
		{safetyv1connect.SafetyServiceReportDangerProcedure, unaryT, func() proto.Message {
			return &safetyv1.ReportDangerRequest{Event: validDanger()}
		}, unary(func(c *clients) func(context.Context, *connect.Request[safetyv1.ReportDangerRequest]) (*connect.Response[safetyv1.ReportDangerResponse], error) {
			return c.safety.ReportDanger
		}), auth.Device, []field{
			{"event", "event", []any{nil}},
			{"event.event_id", "event.event_id", badIDs},
			{"event.rider_id", "event.rider_id", badIDs},
			{"event.device_id", "event.device_id", badOptIDs},
			{"event.kind", "event.kind", []any{protoreflect.EnumNumber(0), protoreflect.EnumNumber(99), protoreflect.EnumNumber(-1)}},
			{"event.severity", "event.severity", []any{protoreflect.EnumNumber(0), protoreflect.EnumNumber(99)}},
			{"event.peak_accel_g", "event.peak_accel_g", []any{math.NaN(), math.Inf(1), -1.0, 201.0}},
			{"event.peak_gyro_dps", "event.peak_gyro_dps", []any{math.NaN(), math.Inf(-1), 10001.0}},
			{"event.tilt_deg", "event.tilt_deg", []any{math.NaN(), -0.5, 181.0}},
			{"event.duration_ms", "event.duration_ms", []any{int64(-1), int64(time.Hour/time.Millisecond) + 1}},
			{"event.location.lat", "event.location.lat", badLats},
			{"event.location.lng", "event.location.lng", badLngs},
			{"event.location.accuracy_m", "event.location.accuracy_m", []any{math.NaN(), -1.0, 1e9}},
			{"event.detected_at", "event.detected_at", append([]any{nil, ts(time.Hour), ts(-31 * 24 * time.Hour)}, badTimes...)},
		}},
		{safetyv1connect.SafetyServiceListDangerEventsProcedure, unaryT, func() proto.Message {
			return &safetyv1.ListDangerEventsRequest{RiderId: "cat-rider"}
		}, unary(func(c *clients) func(context.Context, *connect.Request[safetyv1.ListDangerEventsRequest]) (*connect.Response[safetyv1.ListDangerEventsResponse], error) {
			return c.safety.ListDangerEvents
		}), auth.Admin, []field{
			{"rider_id", "rider_id", badIDs},
			{"limit", "limit", []any{int32(-1), int32(1001)}},
			{"since", "since", badTimes},
			{"min_position", "min_position", badMinPos},
		}},
		{safetyv1connect.SafetyServiceListAlertsProcedure, unaryT, func() proto.Message {
			return &safetyv1.ListAlertsRequest{}
		}, unary(func(c *clients) func(context.Context, *connect.Request[safetyv1.ListAlertsRequest]) (*connect.Response[safetyv1.ListAlertsResponse], error) {
			return c.safety.ListAlerts
		}), auth.Admin, []field{
			{"rider_id", "rider_id", badOptIDs},
			{"limit", "limit", []any{int32(-1), int32(1001)}},
			{"min_position", "min_position", badMinPos},
		}},
		{safetyv1connect.SafetyServiceAcknowledgeAlertProcedure, unaryT, func() proto.Message {
			return &safetyv1.AcknowledgeAlertRequest{AlertId: "alert-cat"}
		}, unary(func(c *clients) func(context.Context, *connect.Request[safetyv1.AcknowledgeAlertRequest]) (*connect.Response[safetyv1.AcknowledgeAlertResponse], error) {
			return c.safety.AcknowledgeAlert
		}), auth.Admin, []field{
			{"alert_id", "alert_id", badIDs},
		}},
		{dashboardv1connect.DashboardServiceGetDashboardProcedure, unaryT, func() proto.Message {
			return &dashboardv1.GetDashboardRequest{Query: &dashboardv1.DashboardQuery{}}
		}, unary(func(c *clients) func(context.Context, *connect.Request[dashboardv1.GetDashboardRequest]) (*connect.Response[dashboardv1.GetDashboardResponse], error) {
			return c.dashboard.GetDashboard
		}), auth.Enterprise, append([]field{{"min_position", "min_position", badMinPos}}, dashQuery...)},
		{dashboardv1connect.DashboardServiceWatchDashboardProcedure, serverT, func() proto.Message {
			return &dashboardv1.WatchDashboardRequest{Query: &dashboardv1.DashboardQuery{}}
		}, serverStream(func(c *clients) func(context.Context, *connect.Request[dashboardv1.WatchDashboardRequest]) (*connect.ServerStreamForClient[dashboardv1.WatchDashboardResponse], error) {
			return c.dashboard.WatchDashboard
		}), auth.Admin, dashQuery},
		{adminv1connect.AdminServiceListProjectionsProcedure, unaryT, func() proto.Message {
			return &adminv1.ListProjectionsRequest{}
		}, unary(func(c *clients) func(context.Context, *connect.Request[adminv1.ListProjectionsRequest]) (*connect.Response[adminv1.ListProjectionsResponse], error) {
			return c.admin.ListProjections
		}), auth.Admin, nil},
		{adminv1connect.AdminServiceRebuildProjectionProcedure, unaryT, func() proto.Message {
			return &adminv1.RebuildProjectionRequest{Name: "steps"}
		}, unary(func(c *clients) func(context.Context, *connect.Request[adminv1.RebuildProjectionRequest]) (*connect.Response[adminv1.RebuildProjectionResponse], error) {
			return c.admin.RebuildProjection
		}), auth.Admin, []field{
			{"name", "name", badIDs},
		}},
		{adminv1connect.AdminServiceListRejectedDeviceCommitsProcedure, unaryT, func() proto.Message {
			return &adminv1.ListRejectedDeviceCommitsRequest{DeviceId: "bike-1", Limit: 10}
		}, unary(func(c *clients) func(context.Context, *connect.Request[adminv1.ListRejectedDeviceCommitsRequest]) (*connect.Response[adminv1.ListRejectedDeviceCommitsResponse], error) {
			return c.admin.ListRejectedDeviceCommits
		}), auth.Admin, []field{
			{"device_id", "device_id", badOptIDs},
			{"limit", "limit", badLimits},
		}},
	}
}

// set assigns v to the field at path ("a.b.c") of m, creating the
// messages on the way; nil clears it.
func set(m proto.Message, path string, v any) {
	r := m.ProtoReflect()
	parts := strings.Split(path, ".")
	for _, p := range parts[:len(parts)-1] {
		r = r.Mutable(r.Descriptor().Fields().ByName(protoreflect.Name(p))).Message()
	}
	fd := r.Descriptor().Fields().ByName(protoreflect.Name(parts[len(parts)-1]))
	if fd == nil {
		panic("no field " + path)
	}
	switch v := v.(type) {
	case nil:
		r.Clear(fd)
	case []string:
		l := r.NewField(fd).List()
		for _, s := range v {
			l.Append(protoreflect.ValueOfString(s))
		}
		r.Set(fd, protoreflect.ValueOfList(l))
	case proto.Message:
		r.Set(fd, protoreflect.ValueOfMessage(v.ProtoReflect()))
	default:
		r.Set(fd, protoreflect.ValueOf(v))
	}
}

// outcome is what one bad call must get: a code and, for
// InvalidArgument, the field its message starts with; or, for bodies
// that are not the protocol's at all, an HTTP status.
type outcome struct {
	code   connect.Code
	field  string
	status int
}

// badCase is one entry of the catalogue.
type badCase struct {
	name string
	want outcome
	do   func(t *testing.T) (code connect.Code, msg string, status int)
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 20 {
			return fmt.Sprintf("%d_bytes", len(v))
		}
		return fmt.Sprintf("%q", v)
	case []string:
		return fmt.Sprintf("%d_ids", len(v))
	case *timestamppb.Timestamp:
		if v.CheckValid() != nil {
			return "invalid_timestamp"
		}
		return v.AsTime().Format("2006-01-02")
	case nil:
		return "missing"
	}
	return fmt.Sprint(v)
}

// wiresFor are the raw framings a stream type can be called with.
func wiresFor(k connect.StreamType) []wire {
	if k == connect.StreamTypeUnary {
		return []wire{connectUnary, grpcWire, grpcWebWire}
	}
	if k == connect.StreamTypeClient {
		return []wire{connectStream, grpcWire}
	}
	return []wire{connectStream, grpcWire, grpcWebWire}
}

// TestBadInputCatalogue sends every kind of bad input to every RPC of
// every service, over Connect, gRPC and gRPC-Web in turn, on one server.
// Each is refused with its precise code (InvalidArgument naming the field
// first), none appends an event, and the heap stays bounded.
func TestBadInputCatalogue(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	protos := []*clients{newClients(f.URL), newClients(f.URL, connect.WithGRPC()), newClients(f.URL, connect.WithGRPCWeb())}
	tokens := map[auth.Role]string{}
	for _, r := range auth.Roles {
		tokens[r] = f.Token(t, "cat-"+string(r), r)
	}
	big := make([]byte, 10<<20) // one 10 MB message body, reused
	var cases []badCase
	n := 0
	for _, spec := range catalogue() {
		tok := tokens[spec.role]
		for _, fl := range spec.fields {
			for _, v := range fl.bad {
				c := protos[n%len(protos)]
				n++
				m := spec.valid()
				var hdr map[string]string
				if h, ok := strings.CutPrefix(fl.path, "hdr:"); ok {
					hdr = map[string]string{h: v.(string)}
				} else {
					set(m, fl.path, v)
				}
				want := outcome{code: connect.CodeInvalidArgument, field: fl.name}
				if s, ok := v.([]string); ok && len(s) > 300_000 { // over 1 MiB
					want = outcome{code: connect.CodeResourceExhausted}
				}
				if pastTheEnd(fl.name, v) {
					want.code = connect.CodeOutOfRange
				}
				cases = append(cases, badCase{
					name: fmt.Sprintf("%s/%s=%s", spec.path, fl.name, describe(v)),
					want: want,
					do: func(t *testing.T) (connect.Code, string, int) {
						err := spec.call(ctx, c, tok, hdr, m)
						if err == nil {
							return 0, "", 0
						}
						var ce *connect.Error
						if !errors.As(err, &ce) {
							t.Fatalf("not a Connect error: %v", err)
						}
						return ce.Code(), ce.Message(), 0
					},
				})
			}
		}
		// Bodies that are not what the RPC takes, framed raw.
		valid, err := proto.Marshal(spec.valid())
		if err != nil {
			t.Fatal(err)
		}
		oversized := protowire.AppendTag(bytes.Clone(valid), 1000, protowire.BytesType)
		oversized = protowire.AppendVarint(oversized, uint64(len(big)))
		badUTF8 := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff\xfe")
		ws := wiresFor(spec.kind)
		raw := []struct {
			name  string
			codec string
			ctype string
			body  [][]byte
			want  outcome
		}{
			{"10MB_message", "proto", "", [][]byte{oversized, big}, outcome{code: connect.CodeResourceExhausted}},
			{"malformed_protobuf", "proto", "", [][]byte{{0xff, 0xff, 0xff, 0xff, 0x0f}}, outcome{code: connect.CodeInvalidArgument, field: "unmarshal message"}},
			{"malformed_json", "json", "", [][]byte{[]byte(`{"`)}, outcome{code: connect.CodeInvalidArgument, field: "unmarshal message"}},
			{"json_array", "json", "", [][]byte{[]byte(`[1,2,3]`)}, outcome{code: connect.CodeInvalidArgument, field: "unmarshal message"}},
			{"wrong_content_type", "proto", "text/plain", [][]byte{valid}, outcome{status: http.StatusUnsupportedMediaType}},
			{"unknown_codec", "xml", "", [][]byte{valid}, outcome{status: http.StatusUnsupportedMediaType}},
		}
		if fds := spec.valid().ProtoReflect().Descriptor().Fields(); fds.Len() > 0 {
			// A value of the wrong JSON type for the first field. (Unknown
			// JSON fields are ignored, as unknown protobuf fields are.)
			fd, v := fds.Get(0), `{"a": 1}`
			if fd.Kind() == protoreflect.MessageKind {
				v = `12`
			}
			raw = append(raw, struct {
				name  string
				codec string
				ctype string
				body  [][]byte
				want  outcome
			}{"json_wrong_type", "json", "", [][]byte{[]byte(`{"` + fd.JSONName() + `": ` + v + `}`)}, outcome{code: connect.CodeInvalidArgument, field: "unmarshal message"}})
		}
		if len(valid) > 0 {
			raw = append(raw, struct {
				name  string
				codec string
				ctype string
				body  [][]byte
				want  outcome
			}{"truncated_protobuf", "proto", "", [][]byte{valid[:len(valid)-1]}, outcome{code: connect.CodeInvalidArgument, field: "unmarshal message"}})
		}
		if fd := spec.valid().ProtoReflect().Descriptor().Fields().ByNumber(1); fd != nil && fd.Kind() == protoreflect.StringKind {
			raw = append(raw, struct {
				name  string
				codec string
				ctype string
				body  [][]byte
				want  outcome
			}{"invalid_utf8", "proto", "", [][]byte{badUTF8}, outcome{code: connect.CodeInvalidArgument, field: "unmarshal message"}})
		}
		for i, r := range raw {
			w := ws[(n+i)%len(ws)]
			cases = append(cases, badCase{
				name: fmt.Sprintf("%s/%s/%s", spec.path, r.name, w),
				want: r.want,
				do: func(t *testing.T) (connect.Code, string, int) {
					var length int64
					readers := make([]io.Reader, len(r.body))
					for i, b := range r.body {
						length += int64(len(b))
						readers[i] = bytes.NewReader(b)
					}
					rr := rawRequest{wire: w, path: spec.path, token: tok, codec: r.codec, ctype: r.ctype, body: io.MultiReader(readers...), length: length}
					got := rr.do(t, h2c, f.URL)
					return got.code, got.message, got.status
				},
			})
		}
		n += len(raw)
	}

	before := f.Last(t)
	peak := heapPeak(t)
	refused := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, msg, status := tc.do(t)
			switch {
			case tc.want.status != 0:
				if status != tc.want.status {
					t.Fatalf("HTTP %d (%v %q), want HTTP %d", status, code, msg, tc.want.status)
				}
			case code != tc.want.code:
				t.Fatalf("code %v (%q), want %v", code, msg, tc.want.code)
			case tc.want.field != "" && !namesField(msg, tc.want.field):
				t.Fatalf("message %q does not start with the field %q", msg, tc.want.field)
			}
			if after := f.Last(t); after != before {
				t.Fatalf("appended %d commits", after-before)
			}
			refused++
		})
	}
	grown := peak()
	appended := f.Last(t) - before
	t.Logf("bad-input catalogue: %d cases over %d RPCs, %d refused precisely, %d events appended, heap grew by at most %.1f MiB",
		len(cases), len(catalogue()), refused, appended, float64(grown)/(1<<20))
	if len(cases) < 150 {
		t.Errorf("only %d cases", len(cases))
	}
	if grown > 64<<20 {
		t.Errorf("heap grew by %.1f MiB, want < 64 MiB", float64(grown)/(1<<20))
	}
}

// namesField reports whether msg starts with field, then ':' or an index
// or subfield of it.
func namesField(msg, field string) bool {
	rest, ok := strings.CutPrefix(msg, field)
	return ok && rest != "" && strings.ContainsRune(":[.", rune(rest[0]))
}
