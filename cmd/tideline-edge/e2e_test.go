package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/edge/edgetest"
	"github.com/tideline/tideline/internal/freeport"
	"github.com/tideline/tideline/internal/logtest"
	"github.com/tideline/tideline/internal/poll"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
	"github.com/tideline/tideline/wire"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds tideline and tideline-edge once per test run.
func binaries(tb testing.TB) (hubBin, edgeBin string) {
	tb.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tideline-e2e")
		if buildErr != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{{"tideline", "../tideline"}, {"tideline-edge", "."}} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return filepath.Join(binDir, "tideline"), filepath.Join(binDir, "tideline-edge")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func freePort(tb testing.TB) string {
	tb.Helper()
	return freeport.Addr(tb)
}

// proc is a child process with its stderr kept.
type proc struct {
	cmd *exec.Cmd
	logtest.Buffer
	done chan struct{}
}

func start(tb testing.TB, bin string, args ...string) *proc {
	tb.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stderr = p
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	tb.Cleanup(func() { p.kill(tb) })
	return p
}

// kill sends SIGKILL and reaps the process.
func (p *proc) kill(tb testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		tb.Fatalf("process did not exit 10s after SIGKILL")
	}
}

// waitLog waits for a log line matching re and returns its submatches.
func (p *proc) waitLog(tb testing.TB, re *regexp.Regexp, d time.Duration) []string {
	tb.Helper()
	var m []string
	if !poll.Within(d, func() bool {
		if m = re.FindStringSubmatch(p.String()); m != nil {
			return true
		}
		select {
		case <-p.done:
			tb.Fatalf("process exited before logging %s:\n%s", re, p)
		default:
		}
		return false
	}) {
		tb.Fatalf("no log matching %s within %v:\n%s", re, d, p)
	}
	return m
}

// hubProc is `tideline serve --leaf-listen` on fixed ports, restartable.
type hubProc struct {
	bin, dir, leaf, nats string
	p                    *proc
	nc                   *nats.Conn // a NATS reader ("e2e", its creds in creds)
	creds                string
}

func startHubProc(tb testing.TB, bin, dir string) *hubProc {
	tb.Helper()
	h := &hubProc{bin: bin, dir: dir, leaf: freePort(tb), nats: freePort(tb)}
	h.start(tb)
	return h
}

var servingRe = regexp.MustCompile(`tideline serving`)

func (h *hubProc) start(tb testing.TB) {
	tb.Helper()
	if h.creds == "" {
		out, err := exec.Command(h.bin, "nats-user", "add", "e2e", "--role", "reader", "--data", h.dir).Output()
		if err != nil {
			tb.Fatalf("nats-user add: %v", err)
		}
		h.creds = strings.TrimSpace(string(out))
	}
	h.p = start(tb, h.bin, "serve", "--data", h.dir, "--listen", "127.0.0.1:0", "--leaf-listen", h.leaf, "--nats-listen", h.nats)
	h.p.waitLog(tb, servingRe, 30*time.Second)
	var err error
	h.nc, err = nats.Connect("nats://"+h.nats, nats.UserCredentials(h.creds), nats.CustomInboxPrefix("_INBOX.e2e"),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.nc.Close)
}

func (h *hubProc) addDevice(tb testing.TB, id string) string {
	tb.Helper()
	out, err := exec.Command(h.bin, "device", "add", id, "--rider", "rider-"+id, "--data", h.dir).Output()
	if err != nil {
		tb.Fatalf("device add: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// commits reads every commit on subject from the hub, in order, and
// checks that their local sequences run 1..n with no gap or overlap:
// no loss, no duplicate, in order. It returns n.
func (h *hubProc) checkContiguous(tb testing.TB, subject string) uint64 {
	tb.Helper()
	var seq, next uint64 = 0, 1
	for {
		req, _ := json.Marshal(wire.DirectGetRequest{Seq: seq + 1, NextBySubject: subject})
		m, err := h.nc.Request("$JS.read.API.DIRECT.GET.EVENTS", req, 5*time.Second)
		if err != nil {
			tb.Fatal(err)
		}
		r, err := wire.ReadDirectGet(m)
		if err != nil {
			tb.Fatalf("%s: %v", subject, err)
		}
		if !r.Found {
			return next - 1
		}
		seq = r.Seq
		first, _ := strconv.ParseUint(m.Header.Get(wire.HeaderEdgeFirstSeq), 10, 64)
		last, _ := strconv.ParseUint(m.Header.Get(wire.HeaderEdgeSeq), 10, 64)
		if first != next {
			tb.Fatalf("%s: commit at hub seq %d holds local %d..%d, want it to start at %d (loss or duplicate)", subject, seq, first, last, next)
		}
		if n := strings.Count(m.Header.Get("Tl-Event-Types"), ",") + 1; uint64(n) != last-first+1 {
			tb.Fatalf("%s: commit at %d has %d events for local %d..%d", subject, seq, n, first, last)
		}
		next = last + 1
	}
}

// lastEdgeSeq is the local sequence of the hub's last commit on subject.
func (h *hubProc) lastEdgeSeq(subject string) uint64 {
	m, err := h.nc.Request("$JS.read.API.DIRECT.GET.EVENTS."+subject, nil, time.Second)
	if err != nil {
		return 0
	}
	if r, err := wire.ReadDirectGet(m); err != nil || !r.Found {
		return 0
	}
	n, _ := strconv.ParseUint(m.Header.Get(wire.HeaderEdgeSeq), 10, 64)
	return n
}

// writeTrace writes a CSV trace of riding with crashes, 100 Hz.
func writeTrace(tb testing.TB, crashes int) string {
	tb.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	b.WriteString("t,ax,ay,az,gx,gy,gz\n")
	n := 0
	row := func(a, g [3]float64) {
		fmt.Fprintf(&b, "%.2f,%.3f,%.3f,%.3f,%.1f,%.1f,%.1f\n", float64(n)/100, a[0], a[1], a[2], g[0], g[1], g[2])
		n++
	}
	for c := 0; c < crashes; c++ {
		for i := 0; i < 3500; i++ {
			v := func() float64 { return (rng.Float64() - 0.5) * 0.1 }
			row([3]float64{v(), v(), 1 + v()}, [3]float64{v() * 10, v() * 10, v() * 10})
		}
		for i := 0; i < 30; i++ {
			row([3]float64{0.5, 0.5, 0.8}, [3]float64{300, 100, 50})
		}
		for i := 0; i < 6; i++ {
			row([3]float64{4, 3, 2}, [3]float64{250, 50, 50})
		}
		for i := 0; i < 900; i++ {
			row([3]float64{0, 1, 0}, [3]float64{0, 0, 0})
		}
	}
	path := filepath.Join(tb.TempDir(), "trace.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

var storedRe = regexp.MustCompile(`msg="source ended".* danger_stored=(\d+) telemetry_stored=(\d+)`)

// kill -9 of the agent right after it acknowledged everything locally (link
// down), then again right after its first commits reach the hub: after a
// final restart the hub has every event exactly once, in order.
func TestAgentKilled(t *testing.T) {
	hubBin, edgeBin := binaries(t)
	h := startHubProc(t, hubBin, t.TempDir())
	creds := h.addDevice(t, "bike-9")
	p := edgetest.NewProxy(t, h.leaf)
	p.Cut()
	trace := writeTrace(t, 40)
	data := t.TempDir()
	agent := func(source string) *proc {
		return start(t, edgeBin, "--device", "bike-9", "--creds", creds, "--hub", "nats-leaf://"+p.Addr(),
			"--source", source, "--speed", "0", "--data", data, "--leaf-reconnect", "200ms", "--profile", "bike")
	}
	a1 := agent("replay:" + trace)
	m := a1.waitLog(t, storedRe, 60*time.Second)
	a1.kill(t) // right after the last local ack, nothing forwarded yet
	danger, _ := strconv.ParseUint(m[1], 10, 64)
	tel, _ := strconv.ParseUint(m[2], 10, 64)
	if danger < 40 || tel < 1000 {
		t.Fatalf("stored %d danger, %d telemetry", danger, tel)
	}

	p.Restore()
	a2 := agent("none")
	dsub, tsub := wire.EventsSubject(safety.LaneDanger, "bike-9"), wire.EventsSubject(safety.LaneTelemetry, "bike-9")
	poll.Until(t, 20*time.Second, "first commit at the hub", func() bool { return h.lastEdgeSeq(tsub) > 0 })
	a2.kill(t) // mid-sync, right after a send
	mid := h.lastEdgeSeq(tsub)
	t.Logf("agent killed with telemetry %d/%d at the hub", mid, tel)

	agent("none")
	poll.Until(t, 30*time.Second, "all events at the hub", func() bool {
		return h.lastEdgeSeq(dsub) == danger && h.lastEdgeSeq(tsub) == tel
	})
	if n := h.checkContiguous(t, dsub); n != danger {
		t.Fatalf("hub has danger 1..%d, want 1..%d", n, danger)
	}
	if n := h.checkContiguous(t, tsub); n != tel {
		t.Fatalf("hub has telemetry 1..%d, want 1..%d", n, tel)
	}
}

// kill -9 of the hub mid-sync: once it is back, every event the device
// acknowledged locally is there exactly once, in order.
func TestHubKilledMidSync(t *testing.T) {
	hubBin, _ := binaries(t)
	h := startHubProc(t, hubBin, t.TempDir())
	credsPath := h.addDevice(t, "bike-8")
	creds, err := edge.LoadCreds(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	p := edgetest.NewProxy(t, h.leaf)
	p.Cut()
	a, err := edge.Open(context.Background(), edge.Config{Creds: creds, Hub: "nats-leaf://" + p.Addr(), DataDir: t.TempDir(),
		LeafReconnect: 200 * time.Millisecond, RetryMax: 500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	n := uint64(30000)
	if raceEnabled { // still far more than one commit: the kill lands mid-sync
		n = 10000
	}
	batch := make([]*telemetryv1.SamplesRecorded, 0, 500)
	var last uint64
	for i := range int(n) {
		w := &telemetryv1.SamplesRecorded{DeviceId: "bike-8", OffsetMs: make([]uint32, 25), AccelXMg: make([]int32, 25)}
		w.OffsetMs[0] = uint32(i)
		batch = append(batch, w)
		if len(batch) == cap(batch) {
			if last, err = a.RecordTelemetry(context.Background(), batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	tsub := wire.EventsSubject(safety.LaneTelemetry, "bike-8")
	p.Restore()
	var mid uint64
	poll.Until(t, 20*time.Second, "first commit at the hub", func() bool { mid = h.lastEdgeSeq(tsub); return mid > 0 })
	h.p.kill(t)
	t.Logf("hub killed with about %d/%d at the hub", mid, n)
	h.start(t)
	poll.Until(t, 30*time.Second, "all events at the hub", func() bool { return h.lastEdgeSeq(tsub) == last })
	if got := h.checkContiguous(t, tsub); got != n {
		t.Fatalf("hub has 1..%d, want 1..%d", got, n)
	}
}
