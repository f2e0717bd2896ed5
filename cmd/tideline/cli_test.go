package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// Every command and subcommand answers -h (and --help) with its usage
// and exit status 0.
func TestHelpExitsZero(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the output
	}{
		{[]string{"-h"}, "tideline serve"},
		{[]string{"--help"}, "tideline serve"},
		{[]string{"help"}, "tideline serve"},
		{[]string{"help", "token"}, "tideline token revoke"},
		{[]string{"serve", "-h"}, "usage: tideline serve"},
		{[]string{"serve", "--help"}, "-leaf-listen"},
		{[]string{"token", "-h"}, "tideline token --sub ID --role ROLE"},
		{[]string{"token", "revoke", "--help"}, "tideline token revoke JTI|TOKEN"},
		{[]string{"projections", "-h"}, "tideline projections list"},
		{[]string{"projections", "list", "-h"}, "tideline projections list"},
		{[]string{"projections", "skip", "-h"}, "-reason"},
		{[]string{"device", "-h"}, "tideline device add ID"},
		{[]string{"device", "add", "-h"}, "-rider"},
		{[]string{"device", "revoke", "--help"}, "tideline device revoke ID"},
		{[]string{"device", "list", "-h"}, "tideline device list"},
		{[]string{"nats-user", "--help"}, "tideline nats-user add NAME"},
		{[]string{"nats-user", "add", "-h"}, "-role"},
		{[]string{"nats-user", "list", "-h"}, "tideline nats-user list"},
		{[]string{"export", "-h"}, "tideline export [--format jsonl|parquet]"},
		{[]string{"cluster-import", "-h"}, "usage: tideline cluster-import"},
		{[]string{"bench", "-h"}, "usage: tideline bench"},
		{[]string{"demo", "-h"}, "usage: tideline demo"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stdout, &stderr)
			if code := exitCode(err, &stderr); code != 0 {
				t.Fatalf("exit %d (err %v)\n%s", code, err, stderr.String())
			}
			if out := stdout.String() + stderr.String(); !strings.Contains(out, tc.want) {
				t.Fatalf("help does not mention %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	var stderr bytes.Buffer
	if code := exitCode(errors.New("boom"), &stderr); code != 2 || stderr.String() != "tideline: boom\n" {
		t.Fatalf("exitCode(error) = %d, printed %q", code, stderr.String())
	}
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"serve", "--no-such-flag"}, &stdout, &stderr)
	if exitCode(err, &stderr) != 2 || !strings.Contains(stderr.String(), "usage: tideline serve") {
		t.Fatalf("a bad flag: err %v, output %q; want status 2 and the usage", err, stderr.String())
	}
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"version", "--version"} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{arg}, &stdout, &stderr); err != nil {
			t.Fatal(err)
		}
		if out := stdout.String(); !strings.HasPrefix(out, "tideline ") || !strings.Contains(out, runtime.Version()) {
			t.Fatalf("%s printed %q, want the program and %s", arg, out, runtime.Version())
		}
	}
}

// The real binary: -h exits 0, a bad flag 2, and a `go build` in this
// checkout knows its VCS revision.
func TestBinaryHelpAndVersion(t *testing.T) {
	t.Parallel()
	bin := buildTideline(t)
	for _, args := range [][]string{{"-h"}, {"serve", "-h"}, {"token", "revoke", "--help"}, {"device", "-h"}} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil || !strings.Contains(string(out), "usage:") {
			t.Errorf("tideline %v: %v\n%s", args, err, out)
		}
	}
	var exit *exec.ExitError
	if out, err := exec.Command(bin, "serve", "--bogus").CombinedOutput(); !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("tideline serve --bogus: %v, want exit status 2\n%s", err, out)
	}

	// buildTideline stamps the build (-buildvcs=auto, whatever GOFLAGS
	// says), as a release build is.
	stamped := bin
	out, err := exec.Command(stamped, "version").Output()
	if err != nil || !strings.Contains(string(out), runtime.Version()) {
		t.Fatalf("tideline version = %q, %v; want %s", out, err, runtime.Version())
	}
	// What the toolchain embedded (nothing outside a git checkout, and
	// nothing in some git worktrees) is what version must show.
	meta, err := exec.Command("go", "version", "-m", stamped).Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, after, ok := strings.Cut(string(meta), "vcs.revision="); ok {
		if rev := "(rev " + after[:12]; !strings.Contains(string(out), rev) {
			t.Errorf("tideline version = %q, want %q", out, rev)
		}
	} else {
		t.Logf("the toolchain embedded no VCS revision here; version says %q", out)
	}
}
