package edge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/devicegate"
	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/internal/poll"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
)

// A commit resent after its ack was lost, once the hub's duplicate window
// has passed, conflicts instead of landing twice; the forwarder then
// learns from the hub where to resume. And a local store that lost
// acknowledged writes (power cut) skips ahead of what the hub has.
func TestLostAckResendConflicts(t *testing.T) {
	dir := t.TempDir()
	devices, err := natsserver.OpenDevices(filepath.Join(dir, "devices"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ns, err := natsserver.Start(natsserver.Config{StoreDir: dir, JetStreamDomain: natsserver.HubDomain, LeafListen: "127.0.0.1:-1", Devices: devices})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, _ := natsserver.Connect(ns, "hub")
	defer nc.Close()
	if _, err := jetstream.Open(context.Background(), nc, jetstream.Config{DuplicateWindow: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	gate, err := devicegate.Open(context.Background(), devicegate.Config{Conn: nc, Registry: devices.Registered,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	gctx, stopGate := context.WithCancel(context.Background())
	gateDone := make(chan struct{})
	go func() { gate.Run(gctx); close(gateDone) }()
	defer func() { stopGate(); <-gateDone }()
	dev, seed, err := natsserver.AddDevice(filepath.Join(dir, "devices"), "d1", "r1")
	if err != nil {
		t.Fatal(err)
	}
	devices.Reload()
	a, err := Open(context.Background(), Config{
		Creds: Creds{Format: CredsFormat, DeviceID: "d1", RiderID: "r1", LeafUser: dev.NKey, NKeySeed: string(seed), HubDomain: "hub"},
		Hub:   natsserver.LeafURL(ns), DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.cancel() // drive the forwarder by hand
	a.wg.Wait()
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := a.RecordTelemetry(ctx, &telemetryv1.SamplesRecorded{DeviceId: "d1", OffsetMs: []uint32{0}}); err != nil {
			t.Fatal(err)
		}
	}
	f := a.telemetry
	poll.Until(t, 10*time.Second, "the hub to be reachable", func() bool { return f.resync(ctx) == nil })
	if sent, err := f.forwardOnce(ctx); !sent || err != nil {
		t.Fatalf("first send: %v %v", sent, err)
	}
	time.Sleep(300 * time.Millisecond) // past the EVENTS duplicate window
	f.forwarded.Store(0)               // as if the ack had been lost
	f.hubSeq.Store(0)
	if _, err := f.forwardOnce(ctx); !errors.Is(err, errResync) {
		t.Fatalf("resend: %v, want a conflict", err)
	}
	if err := f.resync(ctx); err != nil || f.forwarded.Load() != 10 {
		t.Fatalf("resync: %v, forwarded %d, want 10", err, f.forwarded.Load())
	}
	// The local store loses acknowledged writes (power cut): the next
	// events must not reuse sequences the hub already has.
	if err := a.telemetry.lane.js.DeleteStream(ctx, a.telemetry.lane.stream); err != nil {
		t.Fatal(err)
	}
	if err := a.telemetry.lane.provision(ctx, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.resync(ctx); err != nil {
		t.Fatal(err)
	}
	seq, err := a.RecordTelemetry(ctx, &telemetryv1.SamplesRecorded{DeviceId: "d1", OffsetMs: []uint32{0}})
	if err != nil || seq != 11 {
		t.Fatalf("after the loss the next event got local seq %d (%v), want 11", seq, err)
	}
	if sent, err := f.forwardOnce(ctx); !sent || err != nil {
		t.Fatalf("send after the loss: %v %v", sent, err)
	}
	m, err := nc.Request("$JS.API.STREAM.INFO.EVENTS", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		State struct {
			Msgs uint64 `json:"messages"`
		} `json:"state"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("hub has %d commits, want 2", info.State.Msgs)
	}
}
