package api_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/domain/steps"
	alertsmodel "github.com/tideline/tideline/projections/alerts"
	safetymodel "github.com/tideline/tideline/projections/safety"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
)

type alertsFixture struct {
	url    string
	tokens *api.Tokens
	store  *jetstream.Store
	svc    *safety.Service
	model  *alertsmodel.Model
}

// startAlerts serves the API with the alert services (no reactions: the
// tests raise alerts through the service as the reaction would).
func startAlerts(t *testing.T) *alertsFixture {
	t.Helper()
	_, nc := natstest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	store, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	stepsM, safetyM, alertsM := stepsmodel.New(), safetymodel.New(), alertsmodel.New(alertsmodel.Rules{})
	runners := []*jetstream.Runner{
		jetstream.NewRunner(store, stepsM, jetstream.RunnerOptions{}),
		jetstream.NewRunner(store, safetyM, jetstream.RunnerOptions{}),
		jetstream.NewRunner(store, alertsM, jetstream.RunnerOptions{}),
	}
	done := make(chan struct{}, len(runners))
	for _, r := range runners {
		go func() { r.Run(ctx); done <- struct{}{} }()
	}
	tokens, err := api.LoadOrCreateTokens(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := safety.NewService(store)
	a, err := api.New(api.Deps{
		Tokens: tokens, Steps: &steps.Service{Store: store},
		StepsModel: stepsM, StepsFeed: runners[0],
		SafetyModel: safetyM, SafetyFeed: runners[1],
		Safety: svc, AlertsModel: alertsM, AlertsFeed: runners[2],
		Projections:  map[string]api.ProjectionControl{},
		LastPosition: store.LastPosition,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a.Handler())
	srv.Config = api.NewServer(a.Handler())
	srv.Start()
	t.Cleanup(func() {
		a.Close()
		srv.Close()
		cancel()
		for range runners {
			<-done
		}
	})
	return &alertsFixture{url: srv.URL, tokens: tokens, store: store, svc: svc, model: alertsM}
}

func (f *alertsFixture) token(t *testing.T, sub string, role auth.Role) string {
	t.Helper()
	tok, err := f.tokens.Issue(auth.Principal{Subject: sub, Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func phoneDanger(id, rider string) *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{EventId: id, RiderId: rider, DeviceId: "phone-" + rider,
		Kind: safetyv1.DangerKind_DANGER_KIND_FALL, Severity: safetyv1.Severity_SEVERITY_HIGH,
		PeakAccelG: 5, PeakGyroDps: 300, DurationMs: 800,
		Location:   &safetyv1.Location{Lat: 37.5665, Lng: 126.978},
		DetectedAt: timestamppb.New(time.Now().Add(-time.Minute))}
}

func TestReportDangerOverEveryProtocol(t *testing.T) {
	f := startAlerts(t)
	ctx := context.Background()
	admin := f.token(t, "ops", auth.Admin)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := safetyv1connect.NewSafetyServiceClient(h2c, f.url, p.opts...)
			rider := "rider-" + p.name
			tok := f.token(t, rider, auth.Rider)
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
	f := startAlerts(t)
	ctx := context.Background()
	c := safetyv1connect.NewSafetyServiceClient(h2c, f.url)
	alice := f.token(t, "alice", auth.Rider)
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
		{"walker_cannot_report", f.token(t, "alice", auth.Walker), phoneDanger("e1", "alice"), connect.CodePermissionDenied, ""},
	}
	before, _ := f.store.LastPosition(ctx)
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
	if after, _ := f.store.LastPosition(ctx); after != before {
		t.Fatalf("rejected reports appended %d commits", after-before)
	}
	for _, role := range []auth.Role{auth.Device, auth.Service, auth.Admin} {
		if _, err := c.ReportDanger(ctx, withToken(&safetyv1.ReportDangerRequest{Event: phoneDanger("by-"+string(role), "bob")}, f.token(t, "x", role))); err != nil {
			t.Fatalf("%s reports for bob: %v", role, err)
		}
	}
}

func TestListAndAcknowledgeAlerts(t *testing.T) {
	f := startAlerts(t)
	ctx := context.Background()
	c := safetyv1connect.NewSafetyServiceClient(h2c, f.url)
	admin := f.token(t, "ops", auth.Admin)
	raise := func(rider, first string) (string, uint64) {
		id := safety.AlertID(rider, first)
		res, err := f.svc.Raise(ctx, &safetyv1.AlertRaised{AlertId: id, RiderId: rider, Reason: "severity HIGH fall",
			EventIds: []string{first}, Severity: safetyv1.Severity_SEVERITY_HIGH, RaisedAt: timestamppb.Now()}, es.Metadata{})
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
	if list.Msg.Total != 2 || len(list.Msg.Alerts) != 2 || list.Msg.Alerts[0].Raised.AlertId != a2 {
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
	if err != nil || open.Msg.Total != 1 || open.Msg.Alerts[0].Raised.AlertId != a2 {
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
			_, err := c.AcknowledgeAlert(ctx, withToken(&safetyv1.AcknowledgeAlertRequest{AlertId: a2}, f.token(t, "r2", auth.Rider)))
			return err
		}, connect.CodePermissionDenied},
		{"rider_cannot_list", func() error {
			_, err := c.ListAlerts(ctx, withToken(&safetyv1.ListAlertsRequest{}, f.token(t, "r2", auth.Rider)))
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
