package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/internal/dirlock"
)

// A second agent on a data dir in use is refused at once, naming the
// holder; once the holder closes, the dir is free again.
func TestSecondAgentOnDataDirRefused(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	creds := filepath.Join(t.TempDir(), "d.creds")
	if err := edge.WriteCreds(creds, edge.Creds{DeviceID: "bike-1", RiderID: "r1", LeafUser: pub, NKeySeed: string(seed), HubDomain: "hub"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	newMain := func() *Main {
		return &Main{Config: Config{CredsFile: creds, Source: "none", Agent: edge.Config{
			Hub: "nats-leaf://127.0.0.1:1", DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}}
	}
	first := newMain()
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	second := newMain()
	err := second.Run(context.Background())
	if err == nil {
		second.Close()
		t.Fatal("a second agent started on a data dir in use")
	}
	second.Close()
	if !errors.Is(err, dirlock.ErrHeld) {
		t.Fatalf("second agent: %v, want the data dir reported in use", err)
	}
	for _, want := range []string{"pid " + strconv.Itoa(os.Getpid()), "bike-1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name the holder's %q", err, want)
		}
	}

	first.Close()
	third := newMain()
	if err := third.Run(context.Background()); err != nil {
		t.Fatalf("agent after the holder closed: %v", err)
	}
	third.Close()
}
