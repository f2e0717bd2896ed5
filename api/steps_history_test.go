package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// TestStepsBeforeTheWindow: once a date has left the steps model's
// window, users' counts for it are read from the event store (late
// records too), and its leaderboard answers the top it had when it left.
func TestStepsBeforeTheWindow(t *testing.T) {
	f := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	legacy := stepconnect.NewStepServiceClient(h2c, f.URL)
	tok := f.Token(t, "sync", auth.Service)
	old := time.Now().UTC().AddDate(0, 0, -stepsmodel.DefaultWindow-5).Format("2006-01-02")
	record := func(user, date string, n int32) uint64 {
		t.Helper()
		res, err := c.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: user, Date: date, Steps: n}, tok))
		if err != nil {
			t.Fatalf("record %s %s %d: %v", user, date, n, err)
		}
		return res.Msg.Position
	}
	walker := func(i int) string { return fmt.Sprintf("walker-%03d", i) }
	for i := range 120 {
		record(walker(i), old, int32(1000+i))
	}
	record(walker(0), old, 50000)
	record(walker(1), old, 10) // lower: changes nothing
	last := record(walker(0), today(), 5)

	got, err := c.GetSteps(ctx, withToken(&stepsv1.GetStepsRequest{
		UserIds: []string{walker(0), walker(1), "nobody"}, FromDate: old, ToDate: today(), MinPosition: last,
	}, tok))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{walker(0) + " " + old + " 50000", walker(0) + " " + today() + " 5", walker(1) + " " + old + " 1001"}
	if len(got.Msg.Steps) != len(want) {
		t.Fatalf("GetSteps = %v, want %v", got.Msg.Steps, want)
	}
	for i, d := range got.Msg.Steps {
		if s := fmt.Sprintf("%s %s %d", d.UserId, d.Date, d.Steps); s != want[i] {
			t.Errorf("GetSteps[%d] = %s, want %s", i, s, want[i])
		}
	}

	late := record(walker(2), old, 90000) // after the date left: kept in the store only
	get := withToken(&steppb.GetStepsByUuidsInput{UserIds: []string{walker(2), walker(3), "nobody"}, Date: old}, tok)
	get.Header().Set(api.MinPositionHeader, strconv.FormatUint(late, 10))
	res, err := legacy.GetStepsByUuids(ctx, get)
	if err != nil {
		t.Fatal(err)
	}
	var counts map[string]int32
	if err := json.Unmarshal([]byte(res.Msg.Message), &counts); err != nil {
		t.Fatal(err)
	}
	if counts[walker(2)] != 90000 || counts[walker(3)] != 1003 || counts["nobody"] != 0 || len(counts) != 3 {
		t.Errorf("GetStepsByUuids = %v", counts)
	}

	watch, err := legacy.StreamSteps(ctx, withToken(&steppb.GetStepsByUuidsInput{UserIds: []string{walker(2)}, Date: old}, tok))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	if !watch.Receive() || watch.Msg().UserId != walker(2) || watch.Msg().Steps != 90000 {
		t.Errorf("StreamSteps sent %v (%v), want %s's 90000 from the store", watch.Msg(), watch.Err(), walker(2))
	}

	for _, tc := range []struct {
		user   string
		me     int64 // rank, 0 for none
		limit  int32
		topLen int
	}{
		{walker(119), 2, 1000, stepsmodel.SummaryTop},
		{walker(2), 0, 10, 10}, // below the top when the date left; raised later
	} {
		lb, err := c.GetLeaderboard(ctx, withToken(&stepsv1.GetLeaderboardRequest{Date: old, Limit: tc.limit, UserId: tc.user, MinPosition: late}, tok))
		if err != nil {
			t.Fatal(err)
		}
		b := lb.Msg.Leaderboard
		if len(b.Top) != tc.topLen || b.Top[0].UserId != walker(0) || b.Top[0].Steps != 50000 || b.Total != 120 || b.Me.GetRank() != tc.me {
			t.Errorf("leaderboard for %s: %d entries, first %v, total %d, me %v", tc.user, len(b.Top), b.Top[0], b.Total, b.Me)
		}
	}
}
