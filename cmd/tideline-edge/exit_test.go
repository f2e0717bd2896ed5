package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/wire"
)

func TestHelpAndVersion(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		var stderr bytes.Buffer
		err := run(context.Background(), []string{arg}, io.Discard, &stderr)
		if !errors.Is(err, flag.ErrHelp) || exitCode(err, &stderr) != 0 || !strings.Contains(stderr.String(), "usage: tideline-edge --creds FILE") {
			t.Fatalf("%s: err %v, printed %q; want the usage and status 0", arg, err, stderr.String())
		}
	}
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"--version"}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out := stdout.String(); !strings.HasPrefix(out, "tideline-edge ") || !strings.Contains(out, runtime.Version()) {
		t.Fatalf("--version printed %q", out)
	}
	var stderr bytes.Buffer
	if code := exitCode(errors.New("boom"), &stderr); code != 2 || stderr.String() != "tideline-edge: boom\n" {
		t.Fatalf("exitCode(error) = %d, printed %q", code, stderr.String())
	}
}

// A finite source (sim:) ends, the hub gets every event it produced, and
// the agent exits with status 0 by itself.
func TestSimScenarioEndsAndAgentExits(t *testing.T) {
	hubBin, edgeBin := binaries(t)
	h := startHubProc(t, hubBin, t.TempDir())
	creds := h.addDevice(t, "bike-5")
	a := start(t, edgeBin, "--device", "bike-5", "--creds", creds, "--hub", "nats-leaf://"+h.leaf,
		"--source", "sim:crash", "--speed", "0", "--data", t.TempDir())
	select {
	case <-a.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("agent still running 60s after a finite scenario:\n%s", a)
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("agent exited with status %d:\n%s", code, a)
	}
	m := storedRe.FindStringSubmatch(a.String())
	if m == nil || !strings.Contains(a.String(), "the hub has every event") {
		t.Fatalf("agent logs lack the source's end and the hub's ack:\n%s", a)
	}
	danger, _ := strconv.ParseUint(m[1], 10, 64)
	tel, _ := strconv.ParseUint(m[2], 10, 64)
	if danger == 0 || tel == 0 {
		t.Fatalf("sim:crash stored %d danger and %d telemetry events", danger, tel)
	}
	for sub, n := range map[string]uint64{wire.EventsSubject(safety.LaneDanger, "bike-5"): danger, wire.EventsSubject(safety.LaneTelemetry, "bike-5"): tel} {
		if got := h.checkContiguous(t, sub); got != n {
			t.Errorf("hub has %s 1..%d, the agent stored 1..%d", sub, got, n)
		}
	}
}

// Until the hub has the events, the agent stays (here: the hub is not
// there); Ctrl-C ends it with status 0 and keeps them for the next start.
func TestSimScenarioWaitsForTheHub(t *testing.T) {
	hubBin, edgeBin := binaries(t)
	h := startHubProc(t, hubBin, t.TempDir())
	creds := h.addDevice(t, "bike-6")
	h.p.kill(t)
	a := start(t, edgeBin, "--device", "bike-6", "--creds", creds, "--hub", "nats-leaf://"+h.leaf,
		"--source", "sim:fall", "--speed", "0", "--data", t.TempDir(), "--leaf-reconnect", "100ms")
	a.waitLog(t, storedRe, 60*time.Second)
	a.waitLog(t, regexp.MustCompile(`no link to the hub: connection refused`), 10*time.Second)
	select {
	case <-a.done:
		t.Fatalf("agent exited with its events not at the hub:\n%s", a)
	default:
	}
	if err := a.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("agent still running 20s after SIGINT:\n%s", a)
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("agent interrupted while waiting exited with status %d:\n%s", code, a)
	}
}
