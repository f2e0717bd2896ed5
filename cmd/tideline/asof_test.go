package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// TestAsOfQueries: through the server, a leaderboard and the dashboard as
// of a past position or time, the refusals, and `tideline projections at`.
func TestAsOfQueries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, _ := startMain(t, dir)
	url := "http://" + m.Addr()
	ctx := context.Background()
	svc := mainToken(t, m, "ingest", auth.Service)
	admin := mainToken(t, m, "ops", auth.Admin)
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, url)
	date := todayUTC()
	var ends []uint64
	for round := 1; round <= 3; round++ {
		var last uint64
		for i, u := range []string{"u1", "u2", "u3"} {
			res, err := c.RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: u, Date: date, Steps: int32(round*1000 + i)}, svc))
			if err != nil {
				t.Fatalf("record: %v", err)
			}
			last = res.Msg.Position
		}
		ends = append(ends, last)
	}
	board := func(req *stepsv1.GetLeaderboardRequest) (*stepsv1.Leaderboard, error) {
		req.Date = date
		res, err := c.GetLeaderboard(ctx, authed(req, admin))
		if err != nil {
			return nil, err
		}
		return res.Msg.Leaderboard, nil
	}
	lb, err := board(&stepsv1.GetLeaderboardRequest{AsOfPosition: ends[0]})
	if err != nil {
		t.Fatal(err)
	}
	if lb.Position != ends[0] || len(lb.Top) != 3 || lb.Top[0].Steps != 1002 {
		t.Errorf("as of round 1: %v", lb)
	}
	if lb, err := board(&stepsv1.GetLeaderboardRequest{AsOfTime: timestamppb.New(time.Now().Add(time.Hour))}); err != nil || lb.Position != ends[2] || lb.Top[0].Steps != 3002 {
		t.Errorf("as of an hour from now: %v, %v", lb, err)
	}
	if lb, err := board(&stepsv1.GetLeaderboardRequest{AsOfTime: timestamppb.New(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))}); err != nil || lb.Total != 0 || len(lb.Top) != 0 {
		t.Errorf("as of before the first event: %v, %v", lb, err)
	}
	refusals := []struct {
		name string
		req  *stepsv1.GetLeaderboardRequest
		code connect.Code
		says string
	}{
		{"both", &stepsv1.GetLeaderboardRequest{AsOfPosition: 1, AsOfTime: timestamppb.Now()}, connect.CodeInvalidArgument, "as_of_time"},
		{"past_the_end", &stepsv1.GetLeaderboardRequest{AsOfPosition: ends[2] + 100}, connect.CodeOutOfRange, "as_of_position"},
		{"bad_time", &stepsv1.GetLeaderboardRequest{AsOfTime: &timestamppb.Timestamp{Seconds: -1 << 60}}, connect.CodeInvalidArgument, "as_of_time"},
	}
	for _, tc := range refusals {
		_, err := board(tc.req)
		if ce := new(connect.Error); !errors.As(err, &ce) || ce.Code() != tc.code || !strings.Contains(ce.Message(), tc.says) {
			t.Errorf("%s: %v, want %v naming %s", tc.name, err, tc.code, tc.says)
		}
	}

	d := dashboardv1connect.NewDashboardServiceClient(http.DefaultClient, url)
	if res, err := d.GetDashboard(ctx, authed(&dashboardv1.GetDashboardRequest{AsOfPosition: ends[1]}, admin)); err != nil || res.Msg.Dashboard.Position != ends[1] {
		t.Errorf("dashboard as of %d: %v", ends[1], err)
	}
	if _, err := d.GetDashboard(ctx, authed(&dashboardv1.GetDashboardRequest{AsOfPosition: ends[1]}, svc)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("dashboard as of, by a service: %v", err)
	}

	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"projections", "at", "steps", "--position", "4", "--server", url, "--data", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("projections at: %v (stderr %q)", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"total"`) || !strings.Contains(stderr.String(), "as of position 4") {
		t.Errorf("projections at printed %q, %q", stdout.String(), stderr.String())
	}
	if err := run(ctx, []string{"projections", "at", "steps", "--position", "4", "--time", "2026-01-01T00:00:00Z", "--server", url, "--data", dir}, &stdout, &stderr); err == nil {
		t.Error("projections at with both --position and --time succeeded")
	}
	// Every read model answers as of a position: one without a summary of
	// its own by its state (a JSON snapshot) or its snapshot's size.
	for name, want := range map[string]string{"alerts": `"state"`, "story": `"snapshot_bytes"`, "labeling": `"state"`, "delivery-nearby": `"position": 4`} {
		stdout.Reset()
		if err := run(ctx, []string{"projections", "at", name, "--position", "4", "--server", url, "--data", dir}, &stdout, &stderr); err != nil {
			t.Fatalf("projections at %s: %v (stderr %q)", name, err, stderr.String())
		}
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("projections at %s printed %q, want %s", name, stdout.String(), want)
		}
	}
}
