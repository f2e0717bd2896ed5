package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
)

func phoneDanger(id, rider string) *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: id, RiderId: rider, DeviceId: "phone-" + rider,
		Kind: safetyv1.DangerKind_DANGER_KIND_FALL, Severity: safetyv1.Severity_SEVERITY_HIGH,
		PeakAccelG: 5, PeakGyroDps: 300, DurationMs: 800,
		Location:   &safetyv1.Location{Lat: 37.5665, Lng: 126.978},
		DetectedAt: timestamppb.New(time.Now().Add(-time.Minute))}
}

func TestReportDangerOverEveryProtocol(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	admin := f.Token(t, "ops", auth.Admin)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := safetyv1connect.NewSafetyServiceClient(h2c, f.URL, p.opts...)
			rider := "rider-" + p.name
			tok := f.Token(t, rider, auth.Rider)
			res, err := c.ReportDanger(ctx, withToken(&safetyv1.ReportDangerRequest{Event: phoneDanger("fall-"+p.name, rider)}, tok))
			if err != nil {
				t.Fatal(err)
			}
			if res.Msg.Position == 0 || res.Msg.Duplicate {
				t.Fatalf("report = %v", res.Msg)
			}
			again, err := c.ReportDanger(ctx, withToken(&safetyv1.ReportDangerRequest{Event: phoneDanger("fall-"+p.name, rider)}, tok))
			if err != nil || !again.Msg.Duplicate || again.Msg.Position != res.Msg.Position {
				t.Fatalf("retry = %v, %v", again.Msg, err)
			}
			list, err := c.ListDangerEvents(ctx, withToken(&safetyv1.ListDangerEventsRequest{RiderId: rider, MinPosition: res.Msg.Position}, admin))
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Msg.Events) != 1 || list.Msg.Events[0].ReceivedAt == nil {
				t.Fatalf("danger events = %v", list.Msg)
			}
		})
	}
}

func TestReportDangerRejects(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := safetyv1connect.NewSafetyServiceClient(h2c, f.URL)
	alice := f.Token(t, "alice", auth.Rider)
	bad := func(edit func(d *safetyv1.DangerDetected)) *safetyv1.DangerDetected {
		d := phoneDanger("e1", "alice")
		edit(d)
		return d
	}
	cases := []struct {
		name  string
		tok   string
		event *safetyv1.DangerDetected
		code  connect.Code
		field string
	}{
		{"no_token", "", phoneDanger("e1", "alice"), connect.CodeUnauthenticated, ""},
		{"no_event", alice, nil, connect.CodeInvalidArgument, "event"},
		{"bad_event_id", alice, bad(func(d *safetyv1.DangerDetected) { d.EventId = "a b" }), connect.CodeInvalidArgument, "event.event_id"},
		{"unknown_kind", alice, bad(func(d *safetyv1.DangerDetected) { d.Kind = 42 }), connect.CodeInvalidArgument, "event.kind"},
		{"no_severity", alice, bad(func(d *safetyv1.DangerDetected) { d.Severity = 0 }), connect.CodeInvalidArgument, "event.severity"},
		{"absurd_peak", alice, bad(func(d *safetyv1.DangerDetected) { d.PeakAccelG = 1e6 }), connect.CodeInvalidArgument, "event.peak_accel_g"},
		{"lat_out_of_range", alice, bad(func(d *safetyv1.DangerDetected) { d.Location.Lat = 100 }), connect.CodeInvalidArgument, "event.location.lat"},
		{"future", alice, bad(func(d *safetyv1.DangerDetected) { d.DetectedAt = timestamppb.New(time.Now().Add(time.Hour)) }), connect.CodeInvalidArgument, "event.detected_at"},
		{"rider_reports_for_another", alice, phoneDanger("e1", "bob"), connect.CodePermissionDenied, ""},
		{"walker_cannot_report", f.Token(t, "alice", auth.Walker), phoneDanger("e1", "alice"), connect.CodePermissionDenied, ""},
	}
	before, _ := f.Store.LastPosition(ctx)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.ReportDanger(ctx, withToken(&safetyv1.ReportDangerRequest{Event: tc.event}, tc.tok))
			if connect.CodeOf(err) != tc.code {
				t.Fatalf("code = %v (%v), want %v", connect.CodeOf(err), err, tc.code)
			}
			var ce *connect.Error
			if tc.field != "" && (!errors.As(err, &ce) || !strings.HasPrefix(ce.Message(), tc.field+":")) {
				t.Fatalf("error %q does not name field %q", err, tc.field)
			}
		})
	}
	if after, _ := f.Store.LastPosition(ctx); after != before {
		t.Fatalf("rejected reports appended %d commits", after-before)
	}
	for _, role := range []auth.Role{auth.Device, auth.Service, auth.Admin} {
		if _, err := c.ReportDanger(ctx, withToken(&safetyv1.ReportDangerRequest{Event: phoneDanger("by-"+string(role), "bob")}, f.Token(t, "x", role))); err != nil {
			t.Fatalf("%s reports for bob: %v", role, err)
		}
	}
}

func TestListAndAcknowledgeAlerts(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := safetyv1connect.NewSafetyServiceClient(h2c, f.URL)
	admin := f.Token(t, "ops", auth.Admin)
	svc := safety.NewService(f.Store) // raises as the reaction would
	raise := func(rider, first string) (string, uint64) {
		id := safety.AlertID(rider, first)
		res, err := svc.Raise(ctx, &safetyv1.AlertRaisedV2{AlertId: id, RiderId: rider, Reason: "severity HIGH fall",
			EventIds: []string{first}, Severity: safetyv1.Severity_SEVERITY_HIGH, RaisedAt: timestamppb.Now(),
			Rule: safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT}, es.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		return id, res.Position.Seq
	}
	a1, _ := raise("r1", "e1")
	a2, pos := raise("r2", "e2")

	list, err := c.ListAlerts(ctx, withToken(&safetyv1.ListAlertsRequest{OpenOnly: true, MinPosition: pos}, admin))
	if err != nil {
		t.Fatal(err)
	}
	if list.Msg.Total != 2 || len(list.Msg.Alerts) != 2 || list.Msg.Alerts[0].RaisedV2.GetAlertId() != a2 ||
		list.Msg.Alerts[0].RaisedV2.GetRule() != safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT ||
		list.Msg.Alerts[0].Raised.GetAlertId() != a2 { // raised: for the clients of before raised_v2
		t.Fatalf("open alerts = %v", list.Msg)
	}
	ack, err := c.AcknowledgeAlert(ctx, withToken(&safetyv1.AcknowledgeAlertRequest{AlertId: a1}, admin))
	if err != nil || ack.Msg.Already || ack.Msg.Position == 0 {
		t.Fatalf("ack = %v, %v", ack, err)
	}
	again, err := c.AcknowledgeAlert(ctx, withToken(&safetyv1.AcknowledgeAlertRequest{AlertId: a1}, admin))
	if err != nil || !again.Msg.Already {
		t.Fatalf("second ack = %v, %v", again, err)
	}
	open, err := c.ListAlerts(ctx, withToken(&safetyv1.ListAlertsRequest{OpenOnly: true, MinPosition: ack.Msg.Position}, admin))
	if err != nil || open.Msg.Total != 1 || open.Msg.Alerts[0].RaisedV2.GetAlertId() != a2 {
		t.Fatalf("open after ack = %v, %v", open, err)
	}
	mine, err := c.ListAlerts(ctx, withToken(&safetyv1.ListAlertsRequest{RiderId: "r1"}, admin))
	if err != nil || mine.Msg.Total != 1 || mine.Msg.Alerts[0].Acknowledged.GetBy() != "admin:ops" {
		t.Fatalf("r1 alerts = %v, %v", mine, err)
	}

	cases := []struct {
		name string
		call func() error
		code connect.Code
	}{
		{"ack_unknown_alert", func() error {
			_, err := c.AcknowledgeAlert(ctx, withToken(&safetyv1.AcknowledgeAlertRequest{AlertId: "alert-nope"}, admin))
			return err
		}, connect.CodeNotFound},
		{"ack_bad_id", func() error {
			_, err := c.AcknowledgeAlert(ctx, withToken(&safetyv1.AcknowledgeAlertRequest{AlertId: "a.b"}, admin))
			return err
		}, connect.CodeInvalidArgument},
		{"rider_cannot_ack", func() error {
			_, err := c.AcknowledgeAlert(ctx, withToken(&safetyv1.AcknowledgeAlertRequest{AlertId: a2}, f.Token(t, "r2", auth.Rider)))
			return err
		}, connect.CodePermissionDenied},
		{"rider_cannot_list", func() error {
			_, err := c.ListAlerts(ctx, withToken(&safetyv1.ListAlertsRequest{}, f.Token(t, "r2", auth.Rider)))
			return err
		}, connect.CodePermissionDenied},
		{"bad_limit", func() error {
			_, err := c.ListAlerts(ctx, withToken(&safetyv1.ListAlertsRequest{Limit: 5000}, admin))
			return err
		}, connect.CodeInvalidArgument},
		{"bad_rider", func() error {
			_, err := c.ListAlerts(ctx, withToken(&safetyv1.ListAlertsRequest{RiderId: "r*"}, admin))
			return err
		}, connect.CodeInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); connect.CodeOf(err) != tc.code {
				t.Fatalf("code = %v (%v), want %v", connect.CodeOf(err), err, tc.code)
			}
		})
	}
}
