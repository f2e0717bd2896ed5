package api_test

import (
	"context"
	"testing"

	"github.com/tideline/tideline/domain/auth"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
)

// A detector's CRITICAL upgrade reuses its detection's event id; sent
// through ReportDanger it must be recorded, not swallowed as a retry.
func TestReportDangerCriticalUpgradeIsRecorded(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := safetyv1connect.NewSafetyServiceClient(h2c, f.URL)
	rider := "rider-upgrade"
	tok := f.Token(t, rider, auth.Rider)
	admin := f.Token(t, "ops", auth.Admin)

	high := phoneDanger("crash-1", rider)
	first, err := c.ReportDanger(ctx, withToken(&safetyv1.ReportDangerRequest{Event: high}, tok))
	if err != nil {
		t.Fatal(err)
	}
	critical := phoneDanger("crash-1", rider)
	critical.Severity = safetyv1.Severity_SEVERITY_CRITICAL
	up, err := c.ReportDanger(ctx, withToken(&safetyv1.ReportDangerRequest{Event: critical}, tok))
	if err != nil {
		t.Fatal(err)
	}
	if up.Msg.Duplicate || up.Msg.Position <= first.Msg.Position {
		t.Fatalf("upgrade = %v after %v: swallowed as a duplicate", up.Msg, first.Msg)
	}
	again, err := c.ReportDanger(ctx, withToken(&safetyv1.ReportDangerRequest{Event: critical}, tok))
	if err != nil || !again.Msg.Duplicate || again.Msg.Position != up.Msg.Position {
		t.Fatalf("retry of the upgrade = %v, %v; want the upgrade's position as a duplicate", again.Msg, err)
	}
	list, err := c.ListDangerEvents(ctx, withToken(&safetyv1.ListDangerEventsRequest{RiderId: rider, MinPosition: up.Msg.Position}, admin))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Events) != 1 || list.Msg.Events[0].Severity != safetyv1.Severity_SEVERITY_CRITICAL {
		t.Fatalf("danger events = %v, want one CRITICAL", list.Msg.Events)
	}
}
