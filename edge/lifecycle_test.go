package edge_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/internal/logtest"
	"github.com/tideline/tideline/internal/poll"
)

// Close, while Run is reading a source and alarm commands are still
// running, ends Run, kills the commands (their children too) and leaves
// no goroutine of the agent behind; a second Close returns at once.
func TestCloseEndsEverything(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	h := startHub(t, "", 0)
	creds := h.addDevice(t, "bike-9")
	trace, _ := crashTrace(t, "csv", 1)
	dir := t.TempDir()
	before := settledGoroutines(t)

	a, err := edge.Open(context.Background(), edge.Config{
		Creds: creds, Hub: h.leafURL, DataDir: t.TempDir(), Logger: testLogger(t),
		Source: holdOpen{&edge.Replay{Path: trace}}, Profile: safety.ProfileBike,
		AlarmCmd: fmt.Sprintf(`sleep 1000 & echo $! >> %q; wait`, dir+"/pids"), AlarmTimeout: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- a.Run(context.Background()) }()
	var pids []int
	poll.Until(t, 10*time.Second, "both alarm commands running", func() bool {
		pids = readPids(t, dir+"/pids")
		return len(pids) == 2
	})
	waitSynced(t, h, eventsDanger("bike-9"), 2, 10*time.Second)

	within(t, 20*time.Second, "Close", func() { a.Close() })
	// Close returns once Run's last deferred call has run; Run's result
	// then still has to reach runDone from its goroutine, which a loaded
	// machine may not schedule at once (CI once saw it not there yet).
	select {
	case err := <-runDone:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Run still running a second after Close returned")
	}
	for _, pid := range pids {
		poll.Until(t, 5*time.Second, fmt.Sprintf("alarm child %d killed", pid), func() bool { return !alive(pid) })
	}
	waitNoLeak(t, before)
	within(t, time.Second, "second Close", func() { a.Close() })
	if err := a.Run(context.Background()); err != edge.ErrClosed {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
}

// An alarm command that hangs is killed, with its whole process group,
// once it overruns AlarmTimeout, and does not hold up the next alarm's
// command.
func TestAlarmCommandTimeout(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	h := startHub(t, "", 0)
	creds := h.addDevice(t, "bike-8")
	trace, _ := crashTrace(t, "csv", 1) // HIGH, then CRITICAL
	dir := t.TempDir()
	// Whichever alarm's command comes first hangs (in a child it waits
	// for); the other reports.
	cmd := fmt.Sprintf(`if mkdir %[1]q 2>/dev/null; then sleep 1000 & echo $! > %[1]q/pid; wait; else echo "$TIDELINE_SEVERITY" >> %[2]q; fi`,
		dir+"/hung", dir+"/fired")
	const timeout = 3 * time.Second
	var logs logtest.Buffer
	a, err := edge.Open(context.Background(), edge.Config{
		Creds: creds, Hub: h.leafURL, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Source: &edge.Replay{Path: trace}, Profile: safety.ProfileBike, AlarmCmd: cmd, AlarmTimeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	start := time.Now()
	if err := a.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var hung int
	poll.Until(t, 10*time.Second, "the hung command's child", func() bool {
		p := readPids(t, dir+"/hung/pid")
		if len(p) == 1 {
			hung = p[0]
		}
		return hung != 0
	})
	poll.Until(t, 10*time.Second, "the other alarm's command", func() bool {
		b, _ := os.ReadFile(dir + "/fired")
		return strings.Count(string(b), "\n") == 1
	})
	if !alive(hung) {
		t.Fatalf("the hung command was gone before the other alarm's command ran (%v after Run began)", time.Since(start))
	}
	poll.Until(t, timeout+10*time.Second, "the hung command's child killed", func() bool { return !alive(hung) })
	if d := time.Since(start); d < timeout {
		t.Errorf("killed after %v, before its timeout %v", d, timeout)
	}
	poll.Until(t, 5*time.Second, "the timeout logged", func() bool {
		return strings.Contains(logs.String(), "alarm command timed out")
	})
}

// holdOpen runs a source, then waits for ctx: a sensor that goes quiet.
type holdOpen struct{ edge.Source }

func (s holdOpen) Run(ctx context.Context, emit func(safety.Sample) error) error {
	if err := s.Source.Run(ctx, emit); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

// within fails the test unless f returns within d.
func within(tb testing.TB, d time.Duration, what string, f func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		tb.Fatalf("%s did not return within %v:\n%s", what, d, stacks())
	}
}

func readPids(tb testing.TB, path string) []int {
	tb.Helper()
	b, _ := os.ReadFile(path)
	if !bytes.HasSuffix(b, []byte("\n")) {
		return nil // still being written
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			tb.Fatalf("%s: %q", path, b)
		}
		pids = append(pids, n)
	}
	return pids
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := bytes.Cut(b, []byte(") ")) // after the command name
	return len(rest) > 0 && rest[0] != 'Z'
}

// settledGoroutines returns the goroutine count once it has held still
// for 200 ms.
func settledGoroutines(tb testing.TB) int {
	tb.Helper()
	n, same := runtime.NumGoroutine(), 0
	poll.Until(tb, 10*time.Second, "goroutines to settle", func() bool {
		m := runtime.NumGoroutine()
		if m == n {
			same++
		} else {
			n, same = m, 0
		}
		return same >= 20
	})
	return n
}

// agentFrame matches a stack frame of the agent's code or of a command
// it started.
var agentFrame = regexp.MustCompile(`(?m)^(github\.com/tideline/tideline/edge(/ble|/frame|/sim)?\.|os/exec\.)`)

// waitNoLeak waits until no goroutine runs the agent's code and the
// count is back to before (give or take 2: the hub's leaf side winds
// down on its own).
func waitNoLeak(tb testing.TB, before int) {
	tb.Helper()
	var leaked []string
	var n int
	if !poll.Within(10*time.Second, func() bool {
		leaked, n = agentGoroutines(), runtime.NumGoroutine()
		return len(leaked) == 0 && n <= before+2
	}) {
		tb.Fatalf("goroutines: %d before Open, %d after Close; of the agent:\n%s", before, n, strings.Join(leaked, "\n\n"))
	}
}

func agentGoroutines() []string {
	var out []string
	for _, g := range strings.Split(stacks(), "\n\n") {
		if agentFrame.MatchString(g) {
			out = append(out, g)
		}
	}
	return out
}

func stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
