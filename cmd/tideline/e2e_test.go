package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// buildTideline builds this package's binary into a temp dir, once per
// test run (each link of it takes seconds); TestMain removes it.
func buildTideline(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "tideline-e2e"); buildErr != nil {
			return
		}
		if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", filepath.Join(binDir, "tideline"), ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return filepath.Join(binDir, "tideline")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// e2eServer is a `tideline serve` child process.
type e2eServer struct {
	cmd  *exec.Cmd
	url  string
	logs *serveLog
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // Wait's result; read after done
}

// serveLog keeps a child's stderr and reports the URL it logs once serving.
type serveLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	url  chan string
	sent bool
}

// servingURL finds the API's URL in the log (other listeners log theirs).
var servingURL = regexp.MustCompile(`msg="tideline serving[^"]*" url=(http://\S+)`)

func (l *serveLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.sent {
		if m := servingURL.FindStringSubmatch(l.buf.String()); m != nil {
			l.sent = true
			l.url <- m[1]
		}
	}
	return len(p), nil
}

func (l *serveLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startServe starts `tideline serve` on dir and a free port and returns
// once it answers health checks. The test's cleanup kills it if it is
// still running.
func startServe(tb testing.TB, bin, dir string) *e2eServer {
	tb.Helper()
	s := spawnServe(tb, bin, "--data", dir, "--listen", "127.0.0.1:0", "--log-level", "info")
	s.waitServing(tb, 30*time.Second)
	return s
}

// spawnServe starts `tideline serve args...` and returns at once. The
// test's cleanup kills it if it is still running.
func spawnServe(tb testing.TB, bin string, args ...string) *e2eServer {
	tb.Helper()
	return spawnServeEnv(tb, bin, nil, args...)
}

// spawnServeEnv is spawnServe with env added to the environment.
func spawnServeEnv(tb testing.TB, bin string, env []string, args ...string) *e2eServer {
	tb.Helper()
	s := &e2eServer{logs: &serveLog{url: make(chan string, 1)}, done: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"serve"}, args...)...)
	if env != nil {
		s.cmd.Env = append(os.Environ(), env...)
	}
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("start serve: %v", err)
	}
	go func() { s.err = s.cmd.Wait(); close(s.done) }()
	tb.Cleanup(func() { s.kill(tb) })
	return s
}

// waitServing returns once s has logged its URL (unless it already has)
// and answers health checks with SERVING, failing tb if that takes longer
// than within.
func (s *e2eServer) waitServing(tb testing.TB, within time.Duration) {
	tb.Helper()
	deadline := time.After(within)
	if s.url == "" {
		select {
		case s.url = <-s.logs.url:
		case <-s.done:
			tb.Fatalf("serve exited before serving: %v\n%s", s.err, s.logs)
		case <-deadline:
			tb.Fatalf("serve logged no url within %v\n%s", within, s.logs)
		}
	}
	health := healthv1connect.NewHealthClient(http.DefaultClient, s.url)
	for {
		res, err := health.Check(context.Background(), connect.NewRequest(&healthv1.HealthCheckRequest{}))
		if err == nil && res.Msg.Status == healthv1.HealthCheckResponse_SERVING {
			return
		}
		select {
		case <-s.done:
			tb.Fatalf("serve exited: %v\n%s", s.err, s.logs)
		case <-deadline:
			tb.Fatalf("serve not healthy within %v: %v\n%s", within, err, s.logs)
		case <-time.After(10 * time.Millisecond): // poll interval
		}
	}
}

// stop sends SIGTERM and waits, up to within, for the process to shut
// down cleanly; it returns how long that took. A process still running
// then is sent SIGQUIT, so that its goroutines' stacks are in the logs
// the failure shows.
func (s *e2eServer) stop(tb testing.TB, within time.Duration) time.Duration {
	tb.Helper()
	began := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatalf("stop: %v", err)
	}
	select {
	case <-s.done:
		if s.err != nil {
			tb.Fatalf("serve exited with %v after SIGTERM\n%s", s.err, s.logs)
		}
		return time.Since(began)
	case <-time.After(within):
	}
	s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
	}
	tb.Fatalf("serve did not exit %v after SIGTERM\n%s", within, s.logs)
	return 0
}

// kill sends SIGKILL and reaps the process.
func (s *e2eServer) kill(tb testing.TB) {
	tb.Helper()
	select {
	case <-s.done:
		return
	default:
	}
	if err := s.cmd.Process.Kill(); err != nil {
		tb.Fatalf("kill: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		tb.Fatalf("serve did not exit 10s after SIGKILL")
	}
}

// tidelineToken runs `tideline token` and returns the token it prints.
func tidelineToken(tb testing.TB, bin, dir, sub, role string) string {
	tb.Helper()
	out, err := exec.Command(bin, "token", "--data", dir, "--sub", sub, "--role", role).Output()
	if err != nil {
		tb.Fatalf("tideline token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// ackedRecord is a RecordSteps the server acknowledged.
type ackedRecord struct {
	user, date string
	steps      int32
	position   uint64
}

// failedRecord is a RecordSteps that failed, with the key a retry must reuse.
type failedRecord struct {
	user, date, key string
	steps           int32
	err             error
}

// loadResult is one burst of concurrent writes cut short by a kill.
type loadResult struct {
	acks   []ackedRecord
	failed []failedRecord
}

// recordUntilKilled runs one writer per user, each recording increasing
// cumulative counts (next[user], next[user]+1, ...) with an idempotency
// key, and SIGKILLs s once killAfter writes are acknowledged. Every ack
// received, also after the kill, is returned; a writer stops at its first
// error. next is advanced past every count attempted.
func recordUntilKilled(tb testing.TB, s *e2eServer, hc *http.Client, tok, date string, users []string, next map[string]int32, killAfter int64) loadResult {
	tb.Helper()
	c := stepsv1connect.NewStepsServiceClient(hc, s.url, connect.WithInterceptors(bearerAuth(tok)))
	var (
		mu      sync.Mutex
		res     loadResult
		acked   atomic.Int64
		killing atomic.Bool
		reached = make(chan struct{})
		wg      sync.WaitGroup
	)
	stopped := make([]int32, len(users)) // per writer, the count after its last attempt
	for i, u := range users {
		wg.Add(1)
		go func(from int32) {
			defer wg.Done()
			n := from
			defer func() { stopped[i] = n }()
			for ; !killing.Load(); n++ {
				key := fmt.Sprintf("e2e-%s-%d", u, n)
				r, err := c.RecordSteps(context.Background(), connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: u, Date: date, Steps: n, IdempotencyKey: key}))
				if err != nil {
					if !killing.Load() {
						tb.Errorf("%s: write failed before the kill: %v", key, err)
					}
					mu.Lock()
					res.failed = append(res.failed, failedRecord{user: u, date: date, key: key, steps: n, err: err})
					mu.Unlock()
					n++
					return
				}
				mu.Lock()
				res.acks = append(res.acks, ackedRecord{user: u, date: date, steps: n, position: r.Msg.Position})
				mu.Unlock()
				if acked.Add(1) == killAfter {
					close(reached)
				}
			}
		}(next[u])
	}
	var failure string
	select {
	case <-reached:
	case <-s.done:
		failure = fmt.Sprintf("serve exited under load: %v\n%s", s.err, s.logs)
	case <-time.After(30 * time.Second):
		failure = fmt.Sprintf("%d of %d writes acknowledged within 30s", acked.Load(), killAfter)
	}
	killing.Store(true)
	s.kill(tb)
	wg.Wait()
	if failure != "" {
		tb.Fatal(failure)
	}
	for i, u := range users {
		next[u] = stopped[i]
	}
	return res
}

func TestE2EKill9LosesNoAckedWrite(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary and SIGKILLs it under load")
	}
	const writers = 16
	killAfter := []int64{1000, 3000} // acks before each cycle's SIGKILL (two cycles: a restart after a restart; CI's time)
	testStart := time.Now()
	bin := buildTideline(t)
	t.Logf("go build: %v", time.Since(testStart).Round(time.Millisecond))
	dir := t.TempDir()
	s := startServe(t, bin, dir)
	svcTok := tidelineToken(t, bin, dir, "loadgen", "service")
	adminTok := tidelineToken(t, bin, dir, "e2e", "admin")

	hc := &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: writers},
	}
	withAuth := connect.WithInterceptors(bearerAuth(svcTok))
	date := todayUTC()
	users := make([]string, writers)
	next := make(map[string]int32, writers)
	for i := range users {
		users[i] = fmt.Sprintf("walker-%02d", i)
		next[users[i]] = 1
	}
	highest := map[string]int32{} // per user, the highest acknowledged count
	var maxAcked uint64
	totalAcks := 0
	var streamLast uint64 // the stream's last position after the previous cycle

	for i, n := range killAfter {
		cycle := i + 1
		loadStart := time.Now()
		load := recordUntilKilled(t, s, hc, svcTok, date, users, next, n)
		loadTime := time.Since(loadStart)
		for _, a := range load.acks {
			highest[a.user] = max(highest[a.user], a.steps)
			maxAcked = max(maxAcked, a.position)
		}
		totalAcks += len(load.acks)

		restartStart := time.Now()
		s = startServe(t, bin, dir)
		restart := time.Since(restartStart)
		steps := stepsv1connect.NewStepsServiceClient(hc, s.url, withAuth)
		admin := adminv1connect.NewAdminServiceClient(hc, s.url)

		// (a) Every acknowledged write survived: the stream reaches the
		// highest acked position and each user's count is at least the
		// highest acked.
		l := listProjections(t, admin, adminTok)
		if l.LastPosition < maxAcked {
			t.Fatalf("cycle %d: stream last position %d after restart, below acked position %d", cycle, l.LastPosition, maxAcked)
		}
		view := captureModel(t, steps, svcTok, users, date, l.LastPosition)
		got := map[string]int32{}
		for _, d := range view.Steps.Steps {
			got[d.UserId] = d.Steps
		}
		lost := 0
		for _, u := range users {
			if got[u] < highest[u] {
				lost++
				t.Errorf("cycle %d: %s has %d steps after restart, but %d was acknowledged", cycle, u, got[u], highest[u])
			}
		}

		// Writes cut off by the kill may or may not be stored; a retry
		// with the same key must not record them twice.
		persisted := 0
		for _, f := range load.failed {
			stored := got[f.user] == f.steps // f.steps is above every count acked for f.user
			if stored {
				persisted++
			}
			r, err := steps.RecordSteps(context.Background(), connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: f.user, Date: f.date, Steps: f.steps, IdempotencyKey: f.key}))
			if err != nil {
				t.Fatalf("cycle %d: retry %s: %v", cycle, f.key, err)
			}
			if r.Msg.Duplicate != stored {
				t.Errorf("cycle %d: retry of %s (stored before retry: %v) returned duplicate=%v", cycle, f.key, stored, r.Msg.Duplicate)
			}
			highest[f.user] = max(highest[f.user], f.steps)
			maxAcked = max(maxAcked, r.Msg.Position)
		}

		// Exactly once: every attempt of this cycle is in the stream once,
		// stored before the kill or by its retry.
		l = listProjections(t, admin, adminTok)
		if want := streamLast + uint64(len(load.acks)+len(load.failed)); l.LastPosition != want {
			t.Errorf("cycle %d: stream last position %d after retries, want %d (%d before + %d acked + %d retried)",
				cycle, l.LastPosition, want, streamLast, len(load.acks), len(load.failed))
		}
		streamLast = l.LastPosition

		// (b) The read model equals a rebuild from the stream.
		before := captureModel(t, steps, svcTok, users, date, l.LastPosition)
		if _, err := admin.RebuildProjection(context.Background(), authed(&adminv1.RebuildProjectionRequest{Name: "steps"}, adminTok)); err != nil {
			t.Fatalf("cycle %d: rebuild: %v", cycle, err)
		}
		after := captureModel(t, steps, svcTok, users, date, l.LastPosition)
		if !after.equal(before) {
			t.Fatalf("cycle %d: the read model differs from its rebuild\nlive:    %v\nrebuilt: %v", cycle, before, after)
		}
		if n := len(after.Board.Top); n != writers {
			t.Fatalf("cycle %d: leaderboard has %d users, want %d", cycle, n, writers)
		}
		t.Logf("cycle %d: acked %d in %v (%.0f/s; total %d), lost %d, in flight at kill %d (of which stored %d; retries ok), restart to healthy %v, stream at %d",
			cycle, len(load.acks), loadTime.Round(time.Millisecond), float64(len(load.acks))/loadTime.Seconds(), totalAcks,
			lost, len(load.failed), persisted, restart.Round(time.Millisecond), l.LastPosition)
		if t.Failed() {
			t.FailNow()
		}
	}
	// A clean stop still works after all that.
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.done:
		if s.err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", s.err, s.logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve still running 20s after SIGTERM\n%s", s.logs)
	}
	t.Logf("total %v", time.Since(testStart).Round(time.Millisecond))
}

// bearerAuth is a client interceptor that sends tok on every unary call.
type bearerAuth string

func (b bearerAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Header().Get("Authorization") == "" {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}

func (b bearerAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (b bearerAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
