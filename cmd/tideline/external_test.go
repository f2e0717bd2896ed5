package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
	"github.com/tideline/tideline/wire"
)

// With --nats-url the server runs on an existing NATS server instead of
// its embedded one: the events are stored there, and the API works as
// ever. A wrong password is refused at start.
func TestServeOnExternalNATS(t *testing.T) {
	ext, err := nserver.NewServer(&nserver.Options{ServerName: "external", Host: "127.0.0.1", Port: -1, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "tideline", Password: "s3cret-pass"})
	if err != nil {
		t.Fatal(err)
	}
	go ext.Start()
	if !ext.ReadyForConnections(10 * time.Second) {
		t.Fatal("external nats not ready")
	}
	t.Cleanup(func() { ext.Shutdown(); ext.WaitForShutdown() })
	hostPort := strings.TrimPrefix(ext.ClientURL(), "nats://")

	bad := &server.Main{Config: server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", NATSURL: "nats://tideline:wrong@" + hostPort,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}}
	if err := bad.Run(context.Background()); err == nil {
		bad.Close()
		t.Fatal("ran with a wrong NATS password")
	}

	m := &server.Main{Config: server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", NATSURL: "nats://tideline:s3cret-pass@" + hostPort,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("run on external nats: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if m.NATS() != nil {
		t.Error("an embedded server was started")
	}
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
	tok := mainToken(t, m, "ingest", auth.Service)
	res, err := c.RecordSteps(context.Background(), authed(&stepsv1.RecordStepsRequest{UserId: "alice", Date: todayUTC(), Steps: 1234}, tok))
	if err != nil {
		t.Fatalf("record: %v", err)
	}
	got, err := c.GetSteps(context.Background(), authed(&stepsv1.GetStepsRequest{UserIds: []string{"alice"}, FromDate: todayUTC(), MinPosition: res.Msg.Position}, tok))
	if err != nil || len(got.Msg.Steps) != 1 || got.Msg.Steps[0].Steps != 1234 {
		t.Fatalf("get steps: %v %v, want alice at 1234", got, err)
	}

	nc, err := nats.Connect(ext.ClientURL(), nats.UserInfo("tideline", "s3cret-pass"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), wire.EventsStream)
	if err != nil {
		t.Fatalf("the events stream on the external server: %v", err)
	}
	if info := st.CachedInfo(); info.State.LastSeq != res.Msg.Position || info.Config.Replicas != 1 {
		t.Errorf("external %s: last %d, replicas %d; want %d, 1", wire.EventsStream, info.State.LastSeq, info.Config.Replicas, res.Msg.Position)
	}
}
