package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/internal/poll"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// startMain runs a Main on dir and a free loopback port. The returned
// stop closes it once; the test's cleanup calls it too.
func startMain(tb testing.TB, dir string) (*server.Main, func()) {
	tb.Helper()
	m := &server.Main{Config: server.Config{
		DataDir: dir,
		Listen:  "127.0.0.1:0",
		Logger:  slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}}
	if err := m.Run(context.Background()); err != nil {
		tb.Fatalf("run: %v", err)
	}
	stop := sync.OnceFunc(func() {
		if err := m.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	tb.Cleanup(stop)
	return m, stop
}

func mainToken(tb testing.TB, m *server.Main, sub string, role auth.Role) string {
	tb.Helper()
	tok, err := m.Tokens.Issue(auth.Principal{Subject: sub, Role: role}, time.Hour)
	if err != nil {
		tb.Fatalf("issue token: %v", err)
	}
	return tok
}

func authed[T any](msg *T, tok string) *connect.Request[T] {
	r := connect.NewRequest(msg)
	r.Header().Set("Authorization", "Bearer "+tok)
	return r
}

func todayUTC() string { return time.Now().UTC().Format("2006-01-02") }

// modelView is what the steps read model answers: every listed user's
// count for one date and that date's leaderboard.
type modelView struct {
	Steps *stepsv1.GetStepsResponse
	Board *stepsv1.Leaderboard
}

// captureModel reads the steps model once it has applied minPos.
func captureModel(tb testing.TB, c stepsv1connect.StepsServiceClient, tok string, users []string, date string, minPos uint64) modelView {
	tb.Helper()
	ctx := context.Background()
	got, err := c.GetSteps(ctx, authed(&stepsv1.GetStepsRequest{UserIds: users, FromDate: date, MinPosition: minPos}, tok))
	if err != nil {
		tb.Fatalf("get steps at %d: %v", minPos, err)
	}
	lb, err := c.GetLeaderboard(ctx, authed(&stepsv1.GetLeaderboardRequest{Date: date, Limit: 1000, MinPosition: minPos}, tok))
	if err != nil {
		tb.Fatalf("get leaderboard at %d: %v", minPos, err)
	}
	return modelView{Steps: got.Msg, Board: lb.Msg.Leaderboard}
}

func (v modelView) equal(w modelView) bool {
	return proto.Equal(v.Steps, w.Steps) && proto.Equal(v.Board, w.Board)
}

func listProjections(tb testing.TB, c adminv1connect.AdminServiceClient, adminTok string) *adminv1.ListProjectionsResponse {
	tb.Helper()
	res, err := c.ListProjections(context.Background(), authed(&adminv1.ListProjectionsRequest{}, adminTok))
	if err != nil {
		tb.Fatalf("list projections: %v", err)
	}
	return res.Msg
}

func projectionPosition(tb testing.TB, l *adminv1.ListProjectionsResponse, name string) uint64 {
	tb.Helper()
	for _, p := range l.Projections {
		if p.Name == name {
			return p.Position
		}
	}
	tb.Fatalf("no projection %q in %v", name, l.Projections)
	return 0
}

func TestMainServeRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, stop := startMain(t, dir)
	url := "http://" + m.Addr()
	svc := mainToken(t, m, "ingest", auth.Service)
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, url)
	users := []string{"alice", "bob", "carol"}
	date := todayUTC()
	var last uint64
	for i, u := range users {
		res, err := c.RecordSteps(context.Background(), authed(&stepsv1.RecordStepsRequest{UserId: u, Date: date, Steps: int32(1000 * (i + 1))}, svc))
		if err != nil {
			t.Fatalf("record %s: %v", u, err)
		}
		last = res.Msg.Position
	}
	before := captureModel(t, c, svc, users, date, last)
	stop()

	m, _ = startMain(t, dir)
	url = "http://" + m.Addr()
	c = stepsv1connect.NewStepsServiceClient(http.DefaultClient, url)
	after := captureModel(t, c, mainToken(t, m, "ingest", auth.Service), users, date, last)
	if !after.equal(before) {
		t.Fatalf("after restart the model answers\n%v\nwant\n%v", after, before)
	}
	if len(after.Steps.Steps) != len(users) {
		t.Fatalf("after restart GetSteps = %v, want one count per user", after.Steps.Steps)
	}
	admin := adminv1connect.NewAdminServiceClient(http.DefaultClient, url)
	l := listProjections(t, admin, mainToken(t, m, "ops", auth.Admin))
	if pos := projectionPosition(t, l, "steps"); pos < last {
		t.Fatalf("steps projection at %d after restart, want >= %d", pos, last)
	}
	if l.LastPosition < last {
		t.Fatalf("stream last position %d after restart, want >= %d", l.LastPosition, last)
	}
}

func TestTokenCommand(t *testing.T) {
	dir := t.TempDir()
	m, _ := startMain(t, dir)
	ctx := context.Background()

	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"token", "--data", dir, "--sub", "alice", "--role", "walker"}, &stdout, &stderr); err != nil {
		t.Fatalf("token: %v (stderr %q)", err, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	if tok == "" || strings.Contains(tok, "\n") {
		t.Fatalf("token printed %q, want one line", stdout.String())
	}
	p, err := m.Tokens.Verify(tok)
	if err != nil || p != (auth.Principal{Subject: "alice", Role: auth.Walker}) {
		t.Fatalf("server verifies token as %v, %v; want walker:alice", p, err)
	}
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
	if _, err := c.RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: "alice", Date: todayUTC(), Steps: 42}, tok)); err != nil {
		t.Fatalf("server rejects the printed token: %v", err)
	}

	rejects := []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"bad_role", []string{"--sub", "alice", "--role", "wizard"}, []string{`"wizard"`, "admin", "walker", "rider", "labeler", "enterprise", "device", "service"}},
		{"missing_sub", []string{"--role", "walker"}, []string{"--sub"}},
		{"missing_role", []string{"--sub", "alice"}, []string{"--role"}},
		{"bad_sub", []string{"--sub", "a.b", "--role", "walker"}, []string{"--sub"}},
	}
	t.Run("data_dir_without_key", func(t *testing.T) {
		typo := filepath.Join(t.TempDir(), "typo")
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"token", "--data", typo, "--sub", "alice", "--role", "walker"}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "no signing key") {
			t.Fatalf("token on a dir the server never used: err %v, printed %q", err, stdout.String())
		}
		if _, err := os.Stat(typo); !os.IsNotExist(err) {
			t.Fatalf("token created %s (stat err %v)", typo, err)
		}
	})
	for _, tc := range rejects {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(ctx, append([]string{"token", "--data", dir}, tc.args...), &stdout, &stderr)
			if err == nil {
				t.Fatalf("token %v succeeded, printing %q", tc.args, stdout.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q on error", stdout.String())
			}
		})
	}
}

func TestProjectionsRebuildCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, _ := startMain(t, dir)
	url := "http://" + m.Addr()
	ctx := context.Background()
	svc := mainToken(t, m, "ingest", auth.Service)
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, url)
	date := todayUTC()
	users := []string{"u1", "u2", "u3", "u4"}
	var last uint64
	for round := 1; round <= 3; round++ {
		for i, u := range users {
			res, err := c.RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: u, Date: date, Steps: int32(round * (i + 1) * 100)}, svc))
			if err != nil {
				t.Fatalf("record: %v", err)
			}
			last = res.Msg.Position
		}
	}
	before := captureModel(t, c, svc, users, date, last)

	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"projections", "rebuild", "steps", "--server", url, "--data", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("projections rebuild: %v (stderr %q)", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "rebuilt steps") {
		t.Fatalf("projections rebuild printed %q", stdout.String())
	}
	after := captureModel(t, c, svc, users, date, last)
	if !after.equal(before) {
		t.Fatalf("after rebuild the model answers\n%v\nwant\n%v", after, before)
	}

	stdout.Reset()
	if err := run(ctx, []string{"projections", "list", "--server", url, "--data", dir}, &stdout, &stderr); err != nil {
		t.Fatalf("projections list: %v", err)
	}
	if !strings.Contains(stdout.String(), "steps") {
		t.Fatalf("projections list printed %q", stdout.String())
	}
	if err := run(ctx, []string{"projections", "rebuild", "nosuch", "--server", url, "--data", dir}, &stdout, &stderr); err == nil {
		t.Fatal("rebuilding an unknown projection succeeded")
	}
}

// runCLI runs the tideline CLI with args and returns what it printed.
func runCLI(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return stdout.String(), err
}

// TestProjectionsStopAtUndecodableCommit: the steps projection stops at a
// commit it cannot decode instead of losing it, says so in `projections
// list`, and goes on only by the operator's resume or recorded skip, which
// holds across restarts and rebuilds.
func TestProjectionsStopAtUndecodableCommit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, stop := startMain(t, dir)
	url := "http://" + m.Addr()
	ctx := context.Background()
	svc := mainToken(t, m, "ingest", auth.Service)
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, url)
	date := todayUTC()
	record := func(user string, steps int32) uint64 {
		t.Helper()
		res, err := c.RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: user, Date: date, Steps: steps}, svc))
		if err != nil {
			t.Fatalf("record: %v", err)
		}
		return res.Msg.Position
	}
	before := record("alice", 100)
	ack, err := m.Store.JetStream().Publish(ctx, "ev.steps.day.mallory", []byte("\xff\xff not a commit"))
	if err != nil {
		t.Fatal(err)
	}
	bad := ack.Sequence
	after := record("bob", 200)
	cli := func(args ...string) (string, error) {
		return runCLI(t, append(args, "--server", url, "--data", dir)...)
	}

	var out string
	poll.Within(10*time.Second, func() bool { // what it shows is checked below
		if out, err = cli("projections", "list"); err != nil {
			t.Fatalf("projections list: %v", err)
		}
		return strings.Contains(out, "stopped")
	})
	t.Logf("projections list:\n%s", out)
	waitHealth(t, url, healthv1.HealthCheckResponse_NOT_SERVING)
	// NAME VERSION STATE POSITION LAG STOPPED_AT REASON...
	f := strings.Fields(lineOf(out, "steps "))
	if len(f) < 7 || f[2] != "stopped" || f[3] != fmt.Sprint(before) || f[4] != fmt.Sprint(after-before) || f[5] != fmt.Sprint(bad) || f[6] != "decode" {
		t.Fatalf("projections list shows steps as %q, want stopped at %d, position %d, lag %d, a decode error", f, bad, before, after-before)
	}
	if _, err := c.GetSteps(ctx, authed(&stepsv1.GetStepsRequest{UserIds: []string{"bob"}, FromDate: date, MinPosition: after}, svc)); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("GetSteps past the stop: %v, want Unavailable", err)
	}
	got, err := c.GetSteps(ctx, authed(&stepsv1.GetStepsRequest{UserIds: []string{"alice"}, FromDate: date, MinPosition: before}, svc))
	if err != nil || len(got.Msg.Steps) != 1 {
		t.Fatalf("GetSteps before the stop: %v, %v", got, err)
	}

	refusals := [][]string{
		{"projections", "resume", "steps"},
		{"projections", "skip", "steps", "--position", fmt.Sprint(bad + 1), "--reason", "wrong one"},
		{"projections", "skip", "steps", "--position", fmt.Sprint(bad)},
		{"projections", "skip", "nosuch", "--position", fmt.Sprint(bad), "--reason", "x"},
	}
	for _, args := range refusals {
		if out, err := cli(args...); err == nil {
			t.Errorf("%v succeeded: %s", args, out)
		}
	}
	if out, err = cli("projections", "skip", "--position", fmt.Sprint(bad), "--reason", "mallory's test bytes", "steps"); err != nil {
		t.Fatalf("projections skip: %v", err)
	}
	if !strings.Contains(out, "skips the commit at "+fmt.Sprint(bad)) || !strings.Contains(out, "running") {
		t.Fatalf("projections skip printed %q", out)
	}
	bobs := func(minPos uint64) int32 {
		t.Helper()
		got, err := c.GetSteps(ctx, authed(&stepsv1.GetStepsRequest{UserIds: []string{"bob"}, FromDate: date, MinPosition: minPos}, svc))
		if err != nil || len(got.Msg.Steps) != 1 {
			t.Fatalf("GetSteps bob at %d: %v, %v", minPos, got, err)
		}
		return got.Msg.Steps[0].Steps
	}
	if n := bobs(after); n != 200 {
		t.Fatalf("bob has %d steps after the skip, want 200", n)
	}
	waitHealth(t, url, healthv1.HealthCheckResponse_SERVING)

	// The decision holds after a restart and through a rebuild from 1.
	stop()
	m, _ = startMain(t, dir)
	url = "http://" + m.Addr()
	c = stepsv1connect.NewStepsServiceClient(http.DefaultClient, url)
	svc = mainToken(t, m, "ingest", auth.Service)
	if out, err = cli("projections", "rebuild", "steps"); err != nil {
		t.Fatalf("projections rebuild after the skip: %v", err)
	}
	if n := bobs(after); n != 200 {
		t.Fatalf("bob has %d steps after restart and rebuild, want 200", n)
	}
	if out, err = cli("projections", "list"); err != nil || !strings.HasPrefix(strings.Join(strings.Fields(lineOf(out, "steps ")), " "), "steps 2 running") {
		t.Fatalf("projections list after rebuild: %v\n%s", err, out)
	}
}

// waitHealth polls the health service until it answers want.
func waitHealth(tb testing.TB, url string, want healthv1.HealthCheckResponse_ServingStatus) {
	tb.Helper()
	h := healthv1connect.NewHealthClient(http.DefaultClient, url)
	var got healthv1.HealthCheckResponse_ServingStatus
	poll.Until(tb, 10*time.Second, "health "+want.String(), func() bool {
		res, err := h.Check(context.Background(), connect.NewRequest(&healthv1.HealthCheckRequest{}))
		if err != nil {
			tb.Fatalf("health check: %v", err)
		}
		got = res.Msg.Status
		return got == want
	})
}

func lineOf(out, prefix string) string {
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestServeRejectsBadHardeningFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--reflection", "yes"}, "--reflection"},
		{[]string{"--max-conns", "0"}, "--max-conns"},
		{[]string{"--idle-timeout", "0s"}, "--idle-timeout"},
		{[]string{"--steps-window", "0"}, "--steps-window"},
		{[]string{"--raffle-tick", "0s"}, "--raffle-tick"},
		{[]string{"--ready-lag", "0"}, "--ready-lag"},
		{[]string{"--reaction-max-age", "-1s"}, "--reaction-max-age"},
		{[]string{"--memory-limit", "3GB"}, "--memory-limit"},
		{[]string{"--memory-limit", "1KiB"}, "--memory-limit"},
		{[]string{"--metrics=false", "--metrics-listen", "127.0.0.1:0"}, "--metrics-listen"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, tc.args...), &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("serve %v: %v, want an error naming %s", tc.args, err, tc.flag)
		}
	}
}

func TestServeRejectsBadBlobFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TIDELINE_S3_ACCESS_KEY", "")
	t.Setenv("TIDELINE_S3_SECRET_KEY", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--s3-endpoint", "https://s3.example"}, "--s3-bucket"},
		{[]string{"--s3-bucket", "blobs"}, "--s3-endpoint"},
		{[]string{"--s3-endpoint", "https://s3.example", "--s3-bucket", "blobs"}, "TIDELINE_S3_SECRET_KEY"},
		{[]string{"--public-url", "tideline.example"}, "public URL"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, tc.args...), &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// TestServeReflectionAuto: on a loopback listener reflection is open;
// every service still needs a token.
func TestServeReflectionAuto(t *testing.T) {
	t.Parallel()
	m, _ := startMain(t, t.TempDir())
	url := "http://" + m.Addr()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p}}
	s := grpcreflect.NewClient(hc, url).NewStream(context.Background())
	names, err := s.ListServices()
	s.Close()
	if err != nil || len(names) == 0 {
		t.Fatalf("reflection on loopback without a token: %v %v", names, err)
	}
	_, err = adminv1connect.NewAdminServiceClient(hc, url).ListProjections(context.Background(), connect.NewRequest(&adminv1.ListProjectionsRequest{}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("admin call without a token: %v", err)
	}
}
