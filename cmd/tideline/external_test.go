package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

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

	st := eventsStreamOn(t, ext.ClientURL(), nats.UserInfo("tideline", "s3cret-pass"))
	if info := st.CachedInfo(); info.State.LastSeq != res.Msg.Position || info.Config.Replicas != 1 {
		t.Errorf("external %s: last %d, replicas %d; want %d, 1", wire.EventsStream, info.State.LastSeq, info.Config.Replicas, res.Msg.Position)
	}
}

// With --nats-creds the server logs in to a NATS server that runs in
// operator (JWT) mode with a user's credentials file: the events are
// stored in that user's account. Credentials the server does not trust
// are refused at start.
func TestServeOnExternalNATSWithCreds(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	opPub, _ := operator.PublicKey()
	opClaims := jwt.NewOperatorClaims(opPub)
	opJWT, err := opClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	if opClaims, err = jwt.DecodeOperatorClaims(opJWT); err != nil {
		t.Fatal(err)
	}
	resolver := &nserver.MemAccResolver{}
	account := func(js bool) (nkeys.KeyPair, string) {
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		acJWT, err := ac.Encode(operator)
		if err != nil {
			t.Fatal(err)
		}
		if err := resolver.Store(pub, acJWT); err != nil {
			t.Fatal(err)
		}
		return kp, pub
	}
	_, sysPub := account(false)
	tenant, _ := account(true)
	creds := func(signer nkeys.KeyPair) string {
		user, _ := nkeys.CreateUser()
		pub, _ := user.PublicKey()
		userJWT, err := jwt.NewUserClaims(pub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := user.Seed()
		file, err := jwt.FormatUserConfig(userJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "user.creds")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ext, err := nserver.NewServer(&nserver.Options{ServerName: "operated", Host: "127.0.0.1", Port: -1, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), TrustedOperators: []*jwt.OperatorClaims{opClaims},
		AccountResolver: resolver, SystemAccount: sysPub})
	if err != nil {
		t.Fatal(err)
	}
	go ext.Start()
	if !ext.ReadyForConnections(10 * time.Second) {
		t.Fatal("external nats not ready")
	}
	t.Cleanup(func() { ext.Shutdown(); ext.WaitForShutdown() })
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))

	stranger, _ := nkeys.CreateAccount() // an account the operator never signed
	bad := &server.Main{Config: server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", NATSURL: ext.ClientURL(), NATSCreds: creds(stranger), Logger: logger}}
	if err := bad.Run(context.Background()); err == nil {
		bad.Close()
		t.Fatal("ran with credentials of an account the server does not know")
	}

	tenantCreds := creds(tenant)
	m := &server.Main{Config: server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", NATSURL: ext.ClientURL(), NATSCreds: tenantCreds, Logger: logger}}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("run on external nats with creds: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
	tok := mainToken(t, m, "ingest", auth.Service)
	res, err := c.RecordSteps(context.Background(), authed(&stepsv1.RecordStepsRequest{UserId: "alice", Date: todayUTC(), Steps: 77}, tok))
	if err != nil {
		t.Fatalf("record: %v", err)
	}

	// The events are in the tenant's account, seen with the same creds.
	st := eventsStreamOn(t, ext.ClientURL(), nats.UserCredentials(tenantCreds))
	if last := st.CachedInfo().State.LastSeq; last != res.Msg.Position {
		t.Errorf("external %s: last %d, want %d", wire.EventsStream, last, res.Msg.Position)
	}
}

// eventsStreamOn reads the events stream's info on the NATS server at url,
// logged in with login.
func eventsStreamOn(t *testing.T, url string, login nats.Option) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(url, login)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), wire.EventsStream)
	if err != nil {
		t.Fatalf("the events stream on %s: %v", url, err)
	}
	return st
}
