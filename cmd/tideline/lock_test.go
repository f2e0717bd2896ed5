package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/internal/dirlock"
)

// A second server on a data dir in use is refused at once, naming the
// holder; the admin commands that only add files keep working; once the
// holder stops, the dir is free again.
func TestSecondServerOnDataDirRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, stop := startMain(t, dir)

	second := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	err := second.Run(context.Background())
	if err == nil {
		second.Close()
		t.Fatal("a second server started on a data dir in use")
	}
	if !errors.Is(err, dirlock.ErrHeld) {
		t.Fatalf("second server: %v, want the data dir reported in use", err)
	}
	for _, want := range []string{"pid " + strconv.Itoa(os.Getpid()), first.Addr()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name the holder's %q", err, want)
		}
	}

	// Commands that write into the dir without serving still work.
	if out, err := deviceRun(t, "add", "bike-1", "--rider", "alice", "--data", dir); err != nil {
		t.Fatalf("device add while serving: %v", err)
	} else if _, err := os.Stat(strings.TrimSpace(out)); err != nil {
		t.Fatalf("device add while serving wrote no creds: %v", err)
	}
	if _, err := natsUserRun(t, "add", "analyst", "--role", "reader", "--data", dir); err != nil {
		t.Fatalf("nats-user add while serving: %v", err)
	}

	stop()
	third := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := third.Run(context.Background()); err != nil {
		t.Fatalf("server after the holder stopped: %v", err)
	}
	third.Close()
}

// The real binary: a second `tideline serve` on the same --data exits at
// once with an error naming the first's PID and address, and SIGKILL of
// the first frees the dir.
func TestE2ESecondServeRefusedUntilHolderKilled(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildTideline(t)
	dir := filepath.Join(t.TempDir(), "data")
	first := startServe(t, bin, dir)

	out, err := exec.Command(bin, "serve", "--data", dir, "--listen", "127.0.0.1:0").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("second serve: %v, want exit status 2\n%s", err, out)
	}
	addr := strings.TrimPrefix(first.url, "http://")
	for _, want := range []string{"pid " + strconv.Itoa(first.cmd.Process.Pid), addr, "in use"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("second serve said %q; want it to name %q", out, want)
		}
	}

	first.kill(t) // SIGKILL: no clean shutdown, the kernel drops the lock
	startServe(t, bin, dir)
}
