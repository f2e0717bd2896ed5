package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/edge"
)

func TestRunRejectsBadInvocations(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	creds := filepath.Join(t.TempDir(), "d.creds")
	if err := edge.WriteCreds(creds, edge.Creds{DeviceID: "d1", RiderID: "r1", LeafUser: pub, NKeySeed: string(seed), HubDomain: "hub"}); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.creds")
	os.WriteFile(bad, []byte(`{"format":"tideline-device-creds/v1","device_id":"d1","rider_id":"r1","leaf_user":"UX","nkey_seed":"nope","hub_domain":"hub"}`), 0o600)
	base := []string{"--hub", "nats-leaf://127.0.0.1:1", "--data", t.TempDir()}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no_source", []string{"--creds", creds}, "required"},
		{"unknown_source", []string{"--creds", creds, "--source", "usb:0"}, "want ble:ADDR"},
		{"unknown_scenario", []string{"--creds", creds, "--source", "sim:skydive"}, "scenarios"},
		{"bad_ble_address", []string{"--creds", creds, "--source", "ble:nope"}, "ble"},
		{"device_mismatch", []string{"--creds", creds, "--device", "d2", "--source", "none"}, "credentials are for"},
		{"bad_creds", []string{"--creds", bad, "--source", "none"}, "nkey_seed"},
		{"missing_creds", []string{"--creds", "/nonexistent", "--source", "none"}, "no such file"},
		{"tiny_max_disk", []string{"--creds", creds, "--source", "none", "--max-disk", "10KB"}, "too small"},
		{"bad_max_disk", []string{"--creds", creds, "--source", "none", "--max-disk", "lots"}, "bad size"},
		{"unknown_profile", []string{"--creds", creds, "--source", "none", "--profile", "car"}, "want body or bike"},
		{"zero_alarm_timeout", []string{"--creds", creds, "--source", "none", "--alarm-timeout", "0s"}, "--alarm-timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(context.Background(), append(tc.args, base...), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512MB": 512e6, "64MiB": 64 << 20, "1G": 1 << 30, "2048": 2048, "1.5GiB": 3 << 29} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// The agent stops when Run's ctx ends, and Close may be called twice.
func TestMainStopsWithContextAndClosesTwice(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	creds := filepath.Join(t.TempDir(), "d.creds")
	if err := edge.WriteCreds(creds, edge.Creds{DeviceID: "d1", RiderID: "r1", LeafUser: pub, NKeySeed: string(seed), HubDomain: "hub"}); err != nil {
		t.Fatal(err)
	}
	m := &Main{Config: Config{CredsFile: creds, Source: "none", Agent: edge.Config{
		Hub: "nats-leaf://127.0.0.1:1", DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-m.SourceDone:
		if err != nil {
			t.Errorf("agent's Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's Run did not end when Run's ctx ended")
	}
	for i := range 2 {
		done := make(chan error, 1)
		go func() { done <- m.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Close #%d: %v", i+1, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Close #%d did not return", i+1)
		}
	}
}
