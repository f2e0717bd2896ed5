package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/internal/poll"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

func natsUserRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"nats-user"}, args...), &out, &errb)
	return out.String(), err
}

// `tideline nats-user add/list/revoke` against a running `serve
// --nats-listen`: no one gets in without credentials, an added reader
// reads the events the API wrote (in an events stream of a configured
// name: the store's and the guard's), a revoked one is cut.
func TestNATSUserCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0", NATSListen: "127.0.0.1:-1",
		EventsStream: "TL_EVENTS", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := m.Store.StreamName(); got != "TL_EVENTS" {
		t.Fatalf("the store's stream is %q, want the configured TL_EVENTS", got)
	}
	url := m.NATS().ClientURL()

	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("connected to --nats-listen without credentials")
	}

	steps := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
	tok := mainToken(t, m, "ingest", auth.Service)
	for _, u := range []string{"alice", "bob"} {
		if _, err := steps.RecordSteps(context.Background(), authed(&stepsv1.RecordStepsRequest{UserId: u, Date: todayUTC(), Steps: 1000}, tok)); err != nil {
			t.Fatal(err)
		}
	}

	out, err := natsUserRun(t, "add", "analyst", "--data", dir)
	if err != nil {
		t.Fatal(err)
	}
	creds := strings.TrimSpace(out)
	if info, err := os.Stat(creds); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("creds file %s: %v %v, want mode 0600", creds, info.Mode(), err)
	}
	if _, err := natsUserRun(t, "add", "analyst", "--data", dir); !errors.Is(err, natsserver.ErrUserExists) {
		t.Fatalf("adding analyst twice: %v", err)
	}
	if _, err := natsUserRun(t, "add", "root", "--role", "admin", "--data", dir); err == nil {
		t.Fatal("added a user with an unknown role")
	}
	if _, err := natsUserRun(t, "add", "oncall", "--role", "ops", "--data", dir); err != nil {
		t.Fatal(err)
	}
	out, err = natsUserRun(t, "list", "--data", dir)
	if err != nil || !strings.Contains(out, "analyst  reader  active") || !strings.Contains(out, "oncall   ops     active") {
		t.Fatalf("list: %v\n%s", err, out)
	}

	// The server rereads the registry: the new user gets in without a restart.
	var nc *nats.Conn
	poll.Until(t, 10*time.Second, "the new user to be accepted", func() bool {
		nc, err = nats.Connect(url, nats.UserCredentials(creds), nats.CustomInboxPrefix(natsserver.UserInboxPrefix("analyst")), nats.NoReconnect())
		return err == nil
	})
	defer nc.Close()
	js, _ := jetstream.NewWithDomain(nc, natsserver.ReaderDomain)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, m.Store.StreamName(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{"ev.steps.>"}})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 2 {
		t.Fatalf("reader read %d step commits, want 2 (%v)", n, batch.Error())
	}

	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if out, err := natsUserRun(t, "revoke", "analyst", "--data", dir); err != nil || !strings.Contains(out, "revoked analyst") {
		t.Fatalf("revoke: %v %s", err, out)
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked user is still connected")
	}
	if out, _ := natsUserRun(t, "list", "--data", dir); !strings.Contains(out, "analyst  reader  revoked") {
		t.Fatalf("list after revoke:\n%s", out)
	}
	if _, err := natsUserRun(t, "revoke", "nobody", "--data", dir); !errors.Is(err, natsserver.ErrUserNotFound) {
		t.Fatalf("revoking an unknown user: %v", err)
	}
}
