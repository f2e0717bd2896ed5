package dirlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tideline/tideline/internal/dirlock"
)

// TestMain doubles as the lock holder of TestKill9ReleasesLock: with
// DIRLOCK_HOLD=dir it locks dir, says so on stdout and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("DIRLOCK_HOLD"); dir != "" {
		if _, err := dirlock.Acquire(dir, dirlock.Holder{Program: "holder", Addr: "127.0.0.1:1234"}); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {}
	}
	os.Exit(m.Run())
}

func TestSecondOwnerRefused(t *testing.T) {
	dir := t.TempDir()
	first, err := dirlock.Acquire(dir, dirlock.Holder{Program: "tideline serve", Addr: "127.0.0.1:8080"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Acquire(dir, dirlock.Holder{Program: "tideline serve", Addr: "127.0.0.1:8081"})
	var held *dirlock.HeldError
	if !errors.As(err, &held) || !errors.Is(err, dirlock.ErrHeld) {
		t.Fatalf("second Acquire: got %v, want a HeldError", err)
	}
	if held.Holder.PID != os.Getpid() || held.Holder.Addr != "127.0.0.1:8080" {
		t.Fatalf("holder %+v, want pid %d at 127.0.0.1:8080", held.Holder, os.Getpid())
	}
	for _, want := range []string{dir, "pid " + strconv.Itoa(os.Getpid()), "127.0.0.1:8080"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	// The holder's address can change while it holds the lock.
	if err := first.Update(dirlock.Holder{PID: os.Getpid(), Program: "tideline serve", Addr: "127.0.0.1:9090"}); err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Acquire(dir, dirlock.Holder{})
	if !errors.As(err, &held) || held.Holder.Addr != "127.0.0.1:9090" {
		t.Fatalf("after Update: got %v, want the holder at 127.0.0.1:9090", err)
	}

	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := dirlock.Acquire(dir, dirlock.Holder{})
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	again.Release()
}

func TestKill9ReleasesLock(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DIRLOCK_HOLD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("holder said %q, %v", line, err)
	}

	_, err = dirlock.Acquire(dir, dirlock.Holder{})
	var held *dirlock.HeldError
	if !errors.As(err, &held) || held.Holder.PID != cmd.Process.Pid || held.Holder.Program != "holder" {
		t.Fatalf("while the holder runs: got %v, want a HeldError naming pid %d", err, cmd.Process.Pid)
	}
	if h, ok := dirlock.Owner(dir); !ok || h.PID != cmd.Process.Pid || h.Program != "holder" {
		t.Fatalf("Owner while the holder runs = %v, %v; want pid %d (holder)", h, ok, cmd.Process.Pid)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if h, ok := dirlock.Owner(dir); ok {
		t.Fatalf("Owner after the holder was killed and reaped = %v, want none alive", h)
	}
	// The kernel drops the lock with the process: no stale lock.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := dirlock.Acquire(dir, dirlock.Holder{})
		if err == nil {
			l.Release()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock still held after the holder was killed: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func TestOwnerWithoutLockFile(t *testing.T) {
	dir := t.TempDir()
	if h, ok := dirlock.Owner(dir); ok {
		t.Fatalf("Owner of a dir without LOCK = %v", h)
	}
	if err := os.WriteFile(dir+"/"+dirlock.FileName, []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	if h, ok := dirlock.Owner(dir); ok {
		t.Fatalf("Owner of an unreadable LOCK = %v", h)
	}
	l, err := dirlock.Acquire(dir, dirlock.Holder{Program: "tideline serve"})
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := dirlock.Owner(dir); !ok || h.PID != os.Getpid() {
		t.Fatalf("Owner while this process holds it = %v, %v", h, ok)
	}
	l.Release()
}
