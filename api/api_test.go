package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// h2c is an HTTP client speaking HTTP/2 cleartext, as gRPC needs.
var h2c = func() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}()

// start starts a server for tb. Its cleanup first closes the idle
// connections of h2c, shared by the tests: otherwise the server's
// graceful shutdown gives each one a second (HTTP/2's GOAWAY grace) to
// go away by itself.
func start(tb testing.TB, opts ...servertest.Option) *servertest.Server {
	tb.Helper()
	f := servertest.Start(tb, opts...)
	tb.Cleanup(h2c.CloseIdleConnections)
	return f
}

var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"connect", nil},
	{"grpc", []connect.ClientOption{connect.WithGRPC()}},
	{"grpcweb", []connect.ClientOption{connect.WithGRPCWeb()}},
}

func withToken[T any](msg *T, tok string) *connect.Request[T] {
	r := connect.NewRequest(msg)
	if tok != "" {
		r.Header().Set("Authorization", "Bearer "+tok)
	}
	return r
}

func today() string { return time.Now().UTC().Format("2006-01-02") }

func TestStepsServiceOverEveryProtocol(t *testing.T) {
	t.Parallel()
	f := start(t)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := stepsv1connect.NewStepsServiceClient(h2c, f.URL, p.opts...)
			user := "walker-" + p.name
			tok := f.Token(t, user, auth.Walker)
			ctx := context.Background()
			rec, err := c.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: user, Date: today(), Steps: 1234}, tok))
			if err != nil {
				t.Fatalf("record: %v", err)
			}
			if rec.Msg.Position == 0 {
				t.Fatal("record returned no position")
			}
			got, err := c.GetSteps(ctx, withToken(&stepsv1.GetStepsRequest{UserIds: []string{user}, FromDate: today(), MinPosition: rec.Msg.Position}, tok))
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if len(got.Msg.Steps) != 1 || got.Msg.Steps[0].Steps != 1234 || got.Msg.Position < rec.Msg.Position {
				t.Fatalf("get after own write = %v", got.Msg)
			}
		})
	}
}

func TestRecordStepsRejects(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	alice := f.Token(t, "alice", auth.Walker)
	tomorrow2 := time.Now().UTC().Add(72 * time.Hour).Format("2006-01-02")
	cases := []struct {
		name  string
		tok   string
		req   *stepsv1.RecordStepsRequest
		code  connect.Code
		field string
	}{
		{"no_token", "", &stepsv1.RecordStepsRequest{UserId: "alice", Date: today(), Steps: 1}, connect.CodeUnauthenticated, ""},
		{"bad_token", "x.y.z", &stepsv1.RecordStepsRequest{UserId: "alice", Date: today(), Steps: 1}, connect.CodeUnauthenticated, ""},
		{"empty_user", alice, &stepsv1.RecordStepsRequest{UserId: "", Date: today(), Steps: 1}, connect.CodeInvalidArgument, "user_id"},
		{"user_with_dot", alice, &stepsv1.RecordStepsRequest{UserId: "a.b", Date: today(), Steps: 1}, connect.CodeInvalidArgument, "user_id"},
		{"user_too_long", alice, &stepsv1.RecordStepsRequest{UserId: string(make([]byte, 65)), Date: today(), Steps: 1}, connect.CodeInvalidArgument, "user_id"},
		{"bad_date", alice, &stepsv1.RecordStepsRequest{UserId: "alice", Date: "2024-13-01", Steps: 1}, connect.CodeInvalidArgument, "date"},
		{"future_date", alice, &stepsv1.RecordStepsRequest{UserId: "alice", Date: tomorrow2, Steps: 1}, connect.CodeInvalidArgument, "date"},
		{"negative_steps", alice, &stepsv1.RecordStepsRequest{UserId: "alice", Date: today(), Steps: -1}, connect.CodeInvalidArgument, "steps"},
		{"too_many_steps", alice, &stepsv1.RecordStepsRequest{UserId: "alice", Date: today(), Steps: 200001}, connect.CodeInvalidArgument, "steps"},
		{"walker_records_other", alice, &stepsv1.RecordStepsRequest{UserId: "bob", Date: today(), Steps: 1}, connect.CodePermissionDenied, ""},
		{"rider_cannot_record", f.Token(t, "alice", auth.Rider), &stepsv1.RecordStepsRequest{UserId: "alice", Date: today(), Steps: 1}, connect.CodePermissionDenied, ""},
	}
	ctx := context.Background()
	before, err := f.Store.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.RecordSteps(ctx, withToken(tc.req, tc.tok))
			if connect.CodeOf(err) != tc.code {
				t.Fatalf("code = %v (%v), want %v", connect.CodeOf(err), err, tc.code)
			}
			var ce *connect.Error
			if tc.field != "" && (!errors.As(err, &ce) || len(ce.Message()) < len(tc.field) || ce.Message()[:len(tc.field)] != tc.field) {
				t.Fatalf("error %q does not name field %q", err, tc.field)
			}
		})
	}
	after, err := f.Store.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("rejected requests appended %d commits", after-before)
	}
	// admin and service may record anyone's steps.
	for _, role := range []auth.Role{auth.Admin, auth.Service} {
		if _, err := c.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "bob", Date: today(), Steps: 5}, f.Token(t, "ops", role))); err != nil {
			t.Fatalf("%s records for bob: %v", role, err)
		}
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	tok := f.Token(t, "alice", auth.Walker)
	ctx := context.Background()
	req := &stepsv1.RecordStepsRequest{UserId: "alice", Date: today(), Steps: 10, IdempotencyKey: "phone-1:42"}
	first, err := c.RecordSteps(ctx, withToken(req, tok))
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.RecordSteps(ctx, withToken(req, tok))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Msg.Duplicate || again.Msg.Position != first.Msg.Position {
		t.Fatalf("retry = %v, want duplicate of position %d", again.Msg, first.Msg.Position)
	}
}

func TestLeaderboard(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	svc := f.Token(t, "shop", auth.Service)
	ctx := context.Background()
	var last uint64
	for i, n := range []int32{300, 100, 500, 200, 400} {
		r, err := c.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "u" + strconv.Itoa(i), Date: today(), Steps: n}, svc))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Msg.Position
	}
	res, err := c.GetLeaderboard(ctx, withToken(&stepsv1.GetLeaderboardRequest{Date: today(), Limit: 3, MinPosition: last}, f.Token(t, "u3", auth.Walker)))
	if err != nil {
		t.Fatal(err)
	}
	lb := res.Msg.Leaderboard
	if len(lb.Top) != 3 || lb.Top[0].UserId != "u2" || lb.Top[1].UserId != "u4" || lb.Top[2].UserId != "u0" || lb.Total != 5 {
		t.Fatalf("top = %v total %d", lb.Top, lb.Total)
	}
	if lb.Me == nil || lb.Me.UserId != "u3" || lb.Me.Rank != 4 {
		t.Fatalf("me = %v, want u3 rank 4", lb.Me)
	}
	if _, err := c.GetLeaderboard(ctx, withToken(&stepsv1.GetLeaderboardRequest{Date: today(), Limit: 5000}, svc)); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("limit 5000: %v", err)
	}
}

func TestWatchLeaderboardPushesChanges(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	tok := f.Token(t, "alice", auth.Walker)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := c.WatchLeaderboard(ctx, withToken(&stepsv1.WatchLeaderboardRequest{Date: today(), Limit: 5}, tok))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatalf("no initial leaderboard: %v", stream.Err())
	}
	if n := len(stream.Msg().Leaderboard.Top); n != 0 {
		t.Fatalf("initial top has %d entries", n)
	}
	if _, err := c.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "alice", Date: today(), Steps: 77}, tok)); err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("no update: %v", stream.Err())
	}
	lb := stream.Msg().Leaderboard
	if len(lb.Top) != 1 || lb.Top[0].Steps != 77 || lb.Me.GetRank() != 1 {
		t.Fatalf("update = %v", lb)
	}
}

func TestLegacyStepService(t *testing.T) {
	t.Parallel()
	f := start(t)
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			c := stepconnect.NewStepServiceClient(h2c, f.URL, p.opts...)
			user := "legacy-" + p.name
			tok := f.Token(t, user, auth.Walker)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			watch, err := c.StreamSteps(ctx, withToken(&steppb.GetStepsByUuidsInput{UserIds: []string{user, "nobody"}, Date: today()}, tok))
			if err != nil {
				t.Fatal(err)
			}
			defer watch.Close()
			initial := map[string]int32{}
			for range 2 {
				if !watch.Receive() {
					t.Fatalf("initial values: %v", watch.Err())
				}
				initial[watch.Msg().UserId] = watch.Msg().Steps
			}
			if len(initial) != 2 || initial[user] != 0 || initial["nobody"] != 0 {
				t.Fatalf("initial = %v", initial)
			}

			rec, err := c.RecordSteps(ctx, withToken(&steppb.StepInput{UserId: user, Steps: 4321, Date: today()}, tok))
			if err != nil {
				t.Fatal(err)
			}
			if rec.Msg.Message != "ok" || rec.Header().Get(api.PositionHeader) == "" {
				t.Fatalf("record = %q, position header %q", rec.Msg.Message, rec.Header().Get(api.PositionHeader))
			}
			if !watch.Receive() {
				t.Fatalf("no change pushed: %v", watch.Err())
			}
			if m := watch.Msg(); m.UserId != user || m.Steps != 4321 || m.Date != today() {
				t.Fatalf("pushed %v", m)
			}

			get := withToken(&steppb.GetStepsByUuidsInput{UserIds: []string{user, "nobody"}, Date: today()}, tok)
			get.Header().Set(api.MinPositionHeader, rec.Header().Get(api.PositionHeader))
			res, err := c.GetStepsByUuids(ctx, get)
			if err != nil {
				t.Fatal(err)
			}
			var counts map[string]int32
			if err := json.Unmarshal([]byte(res.Msg.Message), &counts); err != nil {
				t.Fatalf("message %q is not a JSON object: %v", res.Msg.Message, err)
			}
			if counts[user] != 4321 || counts["nobody"] != 0 || len(counts) != 2 {
				t.Fatalf("counts = %v", counts)
			}
		})
	}
}

func TestStreamUserSteps(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := stepconnect.NewStepServiceClient(h2c, f.URL, connect.WithGRPC())
	tok := f.Token(t, "carol", auth.Walker)
	ctx := context.Background()

	stream := c.StreamUserSteps(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+tok)
	for _, n := range []int32{10, 20, 30} {
		if err := stream.Send(&steppb.StepInput{UserId: "carol", Steps: n, Date: today()}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := stream.CloseAndReceive()
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.Message != "ok: 3 recorded" {
		t.Fatalf("message = %q", res.Msg.Message)
	}

	bad := c.StreamUserSteps(ctx)
	bad.RequestHeader().Set("Authorization", "Bearer "+tok)
	bad.Send(&steppb.StepInput{UserId: "carol", Steps: 40, Date: today()})
	bad.Send(&steppb.StepInput{UserId: "carol", Steps: -5, Date: today()})
	_, err = bad.CloseAndReceive()
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("bad update: %v", err)
	}
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Message()[:len("update[1].steps")] != "update[1].steps" {
		t.Fatalf("error does not name update[1].steps: %v", err)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	f := start(t)
	h := healthv1connect.NewHealthClient(h2c, f.URL, connect.WithGRPC())
	res, err := h.Check(context.Background(), connect.NewRequest(&healthv1.HealthCheckRequest{Service: stepconnect.StepServiceName}))
	if err != nil || res.Msg.Status != healthv1.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", res, err)
	}
	if _, err := h.Check(context.Background(), connect.NewRequest(&healthv1.HealthCheckRequest{Service: "nope"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("unknown service: %v", err)
	}
}

// A browser's preflight for the headers the README recommends is
// allowed, and the actual response exposes Tideline-Position to scripts.
func TestCORSAllowsTidelineHeaders(t *testing.T) {
	t.Parallel()
	f := start(t)
	const origin = "https://dashboard.example"
	for _, tc := range []struct{ path, headers string }{
		{"/tideline.steps.v1.StepsService/GetSteps", "authorization,connect-protocol-version,content-type"},
		{"/step.StepService/RecordSteps", "authorization,content-type,idempotency-key"},
		{"/step.StepService/GetStepsByUuids", "authorization,content-type,tideline-min-position"},
	} {
		req, _ := http.NewRequest(http.MethodOptions, f.URL+tc.path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", tc.headers)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
		if resp.Header.Get("Access-Control-Allow-Origin") == "" {
			t.Fatalf("preflight for %s with %s refused: %d %v", tc.path, tc.headers, resp.StatusCode, resp.Header)
		}
		for _, h := range strings.Split(tc.headers, ",") {
			if !strings.Contains(allowed, h) {
				t.Errorf("preflight for %s: Access-Control-Allow-Headers %q lacks %s", tc.path, allowed, h)
			}
		}
	}

	tok := f.Token(t, "alice", auth.Walker)
	req, _ := http.NewRequest(http.MethodPost, f.URL+"/step.StepService/RecordSteps",
		strings.NewReader(`{"userId":"alice","date":"`+today()+`","steps":10}`))
	req.Header.Set("Origin", origin)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set(api.IdempotencyKeyHeader, "cors-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(api.PositionHeader) == "" {
		t.Fatalf("RecordSteps from a browser: %d, headers %v", resp.StatusCode, resp.Header)
	}
	if exposed := strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers")); !strings.Contains(exposed, "tideline-position") {
		t.Fatalf("Access-Control-Expose-Headers %q lacks Tideline-Position", exposed)
	}
}

func TestAdminNeedsAdmin(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := adminv1connect.NewAdminServiceClient(h2c, f.URL)
	ctx := context.Background()
	if _, err := c.ListProjections(ctx, withToken(&adminv1.ListProjectionsRequest{}, f.Token(t, "alice", auth.Walker))); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("walker lists projections: %v", err)
	}
	if _, err := c.ListProjections(ctx, withToken(&adminv1.ListProjectionsRequest{}, f.Token(t, "root", auth.Admin))); err != nil {
		t.Fatalf("admin lists projections: %v", err)
	}
	for _, role := range []auth.Role{auth.Walker, auth.Service, auth.Rider} {
		tok := f.Token(t, "someone", role)
		if _, err := c.ResumeProjection(ctx, withToken(&adminv1.ResumeProjectionRequest{Name: "steps"}, tok)); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s resumes a projection: %v", role, err)
		}
		if _, err := c.SkipProjectionCommit(ctx, withToken(&adminv1.SkipProjectionCommitRequest{Name: "steps", Position: 1, Reason: "x"}, tok)); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s skips a commit: %v", role, err)
		}
	}
}

// TestMinPositionPastTheEnd: a min_position no write returned is refused
// at once, by every kind of query, and the read model keeps answering
// real positions.
func TestMinPositionPastTheEnd(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	tok := f.Token(t, "walker-1", auth.Walker)
	admin := f.Token(t, "root", auth.Admin)
	steps := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	rec, err := steps.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "walker-1", Date: today(), Steps: 10}, tok))
	if err != nil {
		t.Fatal(err)
	}
	safety := safetyv1connect.NewSafetyServiceClient(h2c, f.URL)
	legacy := stepconnect.NewStepServiceClient(h2c, f.URL)
	for _, bogus := range []uint64{rec.Msg.Position + 1, 1 << 40, ^uint64(0)} {
		queries := map[string]func() error{
			"GetSteps": func() error {
				_, err := steps.GetSteps(ctx, withToken(&stepsv1.GetStepsRequest{UserIds: []string{"walker-1"}, FromDate: today(), MinPosition: bogus}, tok))
				return err
			},
			"ListDangerEvents": func() error {
				_, err := safety.ListDangerEvents(ctx, withToken(&safetyv1.ListDangerEventsRequest{RiderId: "r1", MinPosition: bogus}, admin))
				return err
			},
			"legacy_header": func() error {
				req := withToken(&steppb.GetStepsByUuidsInput{UserIds: []string{"walker-1"}, Date: today()}, tok)
				req.Header().Set(api.MinPositionHeader, strconv.FormatUint(bogus, 10))
				_, err := legacy.GetStepsByUuids(ctx, req)
				return err
			},
		}
		for name, query := range queries {
			start := time.Now()
			err := query()
			if connect.CodeOf(err) != connect.CodeOutOfRange || !strings.Contains(strings.ToLower(err.Error()), "min_position") && !strings.Contains(err.Error(), api.MinPositionHeader) {
				t.Errorf("%s with min_position %d: %v, want OutOfRange naming min_position", name, bogus, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s with min_position %d answered after %v, want at once", name, bogus, d)
			}
		}
	}
	if p := f.Runner(stepsmodel.Name).Position(); p > rec.Msg.Position {
		t.Fatalf("the runner's position became %d, past the stream's end %d", p, rec.Msg.Position)
	}
	got, err := steps.GetSteps(ctx, withToken(&stepsv1.GetStepsRequest{UserIds: []string{"walker-1"}, FromDate: today(), MinPosition: rec.Msg.Position}, tok))
	if err != nil || len(got.Msg.Steps) != 1 || got.Msg.Steps[0].Steps != 10 {
		t.Fatalf("GetSteps at the written position: %v, %v", got, err)
	}
	more, err := steps.RecordSteps(ctx, withToken(&stepsv1.RecordStepsRequest{UserId: "walker-1", Date: today(), Steps: 20}, tok))
	if err != nil {
		t.Fatal(err)
	}
	got, err = steps.GetSteps(ctx, withToken(&stepsv1.GetStepsRequest{UserIds: []string{"walker-1"}, FromDate: today(), MinPosition: more.Msg.Position}, tok))
	if err != nil || got.Msg.Steps[0].Steps != 20 {
		t.Fatalf("GetSteps after a write following the refused positions: %v, %v", got, err)
	}
}

func TestListDangerEvents(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	detected := time.Now().Add(-time.Minute).UTC()
	var last uint64
	for i, id := range []string{"dev1-crash-1", "dev1-crash-1", "dev1-fall-2"} {
		res, err := f.Store.Append(ctx, es.StreamID{Context: "safety", Type: "device", ID: "dev1"}, []proto.Message{&safetyv1.DangerDetected{
			EventId: id, DeviceId: "dev1", RiderId: "rider7", Kind: safetyv1.DangerKind_DANGER_KIND_CRASH,
			Severity: safetyv1.Severity_SEVERITY_HIGH, PeakAccelG: 5, DetectedAt: timestamppb.New(detected.Add(time.Duration(i) * time.Second)),
		}}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position.Seq
	}
	c := safetyv1connect.NewSafetyServiceClient(h2c, f.URL, connect.WithGRPC())
	admin := f.Token(t, "ops", auth.Admin)
	res, err := c.ListDangerEvents(ctx, withToken(&safetyv1.ListDangerEventsRequest{RiderId: "rider7", MinPosition: last}, admin))
	if err != nil {
		t.Fatal(err)
	}
	got := res.Msg.Events
	if len(got) != 2 || got[0].EventId != "dev1-fall-2" || got[1].EventId != "dev1-crash-1" || res.Msg.Total != 2 {
		t.Fatalf("events = %v", got)
	}
	if got[0].ReceivedAt == nil || got[0].ReceivedAt.AsTime().Before(detected) {
		t.Fatalf("received_at = %v", got[0].ReceivedAt)
	}
	rejects := []struct {
		name string
		tok  string
		req  *safetyv1.ListDangerEventsRequest
		code connect.Code
	}{
		{"rider_may_not_list", f.Token(t, "rider7", auth.Rider), &safetyv1.ListDangerEventsRequest{RiderId: "rider7"}, connect.CodePermissionDenied},
		{"bad_rider_id", admin, &safetyv1.ListDangerEventsRequest{RiderId: "a b"}, connect.CodeInvalidArgument},
		{"limit_too_big", admin, &safetyv1.ListDangerEventsRequest{RiderId: "rider7", Limit: 5000}, connect.CodeInvalidArgument},
	}
	for _, tc := range rejects {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.ListDangerEvents(ctx, withToken(tc.req, tc.tok)); connect.CodeOf(err) != tc.code {
				t.Fatalf("code = %v (%v), want %v", connect.CodeOf(err), err, tc.code)
			}
		})
	}
}
