package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	nserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/dirlock"
	"github.com/tideline/tideline/internal/freeport"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
	"github.com/tideline/tideline/wire"
)

// startNATSCluster starts n nats-servers with JetStream forming a cluster
// on loopback, accepting NATS clients without credentials, and returns
// their client URLs, comma-separated.
func startNATSCluster(tb testing.TB, n int) string {
	tb.Helper()
	ports := make([]int, n)
	var routes []*url.URL
	for i := range n {
		_, port, _ := net.SplitHostPort(freeport.Addr(tb))
		ports[i], _ = strconv.Atoi(port)
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	servers := make([]*nserver.Server, n)
	var urls []string
	for i := range n {
		opts := &nserver.Options{ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1, NoSigs: true,
			JetStream: true, StoreDir: tb.TempDir(), Routes: routes}
		opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = "import", "127.0.0.1", ports[i]
		s, err := nserver.NewServer(opts)
		if err != nil {
			tb.Fatal(err)
		}
		go s.Start()
		tb.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers[i] = s
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			tb.Fatal("nats node not ready")
		}
		for s.NumRoutes() < n-1 {
			if time.Now().After(deadline) {
				tb.Fatalf("cluster of %d not routed within 30s", n)
			}
			time.Sleep(10 * time.Millisecond) // poll interval
		}
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// rawMsg is a stored message as JetStream keeps it.
type rawMsg struct {
	Subject string
	Data    []byte
	Header  nats.Header
	Time    time.Time
}

// rawMessages returns every message of stream on nc, by sequence.
func rawMessages(tb testing.TB, nc *nats.Conn, stream string) map[uint64]rawMsg {
	tb.Helper()
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("stream %s: %v", stream, err)
	}
	state := st.CachedInfo().State
	msgs := map[uint64]rawMsg{}
	for seq := state.FirstSeq; seq <= state.LastSeq && state.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			tb.Fatalf("%s message %d: %v", stream, seq, err)
		}
		msgs[seq] = rawMsg{m.Subject, m.Data, m.Header, m.Time}
	}
	return msgs
}

// ackFloors returns the ack floor (stream sequence) of every durable
// consumer of stream on nc, by name.
func ackFloors(tb testing.TB, nc *nats.Conn, stream string) map[string]uint64 {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := js.Stream(context.Background(), stream)
	if err != nil {
		tb.Fatal(err)
	}
	floors := map[string]uint64{}
	l := st.ListConsumers(context.Background())
	for ci := range l.Info() {
		if ci.Config.Durable != "" { // not the runners' ordered consumers
			floors[ci.Name] = ci.AckFloor.Stream
		}
	}
	if err := l.Err(); err != nil {
		tb.Fatal(err)
	}
	return floors
}

// A store a server alone wrote (events through the API, a KV entry, an
// object) is copied into a three-node NATS cluster by 'tideline
// cluster-import': every message keeps its sequence, subject, headers and
// time, every stream gets three replicas, and a server on the cluster
// answers from it. The import refuses a data dir in use, one without a
// store, and a cluster that has the streams already; the dir is not
// served alone again.
func TestClusterImport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster")
	}
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, old, tok, last, want := aloneWithSteps(t, logger)
	seeds, err := tljs.OpenSeeds(ctx, old.Store.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := seeds.Seed(ctx, "raffle-1")
	if err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("tideline "), 40_000) // several object store chunks
	if _, err := old.Blobs.Put(ctx, "images", "a.bin", "application/octet-stream", bytes.NewReader(blob), 1<<20); err != nil {
		t.Fatal(err)
	}
	oldNC, err := nats.Connect("", nats.InProcessServer(old.NATS()))
	if err != nil {
		t.Fatal(err)
	}
	events := rawMessages(t, oldNC, wire.EventsStream)
	floors := ackFloors(t, oldNC, wire.EventsStream)
	oldNC.Close()
	if len(events) == 0 || events[last].Subject == "" {
		t.Fatalf("%d events, the last at %d: %+v", len(events), last, events[last])
	}

	urls := startNATSCluster(t, 3)
	err = run(ctx, []string{"cluster-import", "--data", dir, "--nats-url", urls}, io.Discard, io.Discard)
	if !errors.Is(err, dirlock.ErrHeld) {
		t.Fatalf("import while the server runs: %v, want %v", err, dirlock.ErrHeld)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"cluster-import", "--data", t.TempDir(), "--nats-url", urls}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "holds no Tideline store") {
		t.Fatalf("import of an empty dir: %v, want 'holds no Tideline store'", err)
	}

	var out bytes.Buffer
	start := time.Now()
	if err := run(ctx, []string{"cluster-import", "--data", dir, "--nats-url", urls}, &out, io.Discard); err != nil {
		t.Fatalf("import: %v\n%s", err, out.String())
	}
	t.Logf("import in %s:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	for _, name := range []string{wire.EventsStream, "KV_" + tljs.SeedsBucket, "OBJ_BLOBS_images"} {
		if !strings.Contains(out.String(), name+" ") {
			t.Errorf("the import's table names no %s", name)
		}
	}

	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	got := rawMessages(t, nc, wire.EventsStream)
	if len(got) != len(events) {
		t.Errorf("%d events in the cluster, want %d", len(got), len(events))
	}
	for seq, w := range events {
		g := got[seq]
		if g.Subject != w.Subject || !bytes.Equal(g.Data, w.Data) || !g.Time.Equal(w.Time) || fmt.Sprint(g.Header) != fmt.Sprint(w.Header) {
			t.Errorf("event %d in the cluster: %s at %s, want %s at %s (or its data or headers differ)", seq, g.Subject, g.Time, w.Subject, w.Time)
		}
	}
	if got := ackFloors(t, nc, wire.EventsStream); len(floors) == 0 || fmt.Sprint(got) != fmt.Sprint(floors) {
		t.Errorf("the reactions' consumers in the cluster: %v, want %v", got, floors)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}

	err = run(ctx, []string{"cluster-import", "--data", dir, "--nats-url", urls}, io.Discard, io.Discard)
	if es.KindOf(err) != es.FailedPrecondition || !strings.Contains(err.Error(), "already has stream") {
		t.Fatalf("a second import: %v, want FailedPrecondition 'already has stream'", err)
	}
	if after := rawMessages(t, nc, wire.EventsStream); len(after) != len(events) {
		t.Errorf("%d events after the refused import, want %d", len(after), len(events))
	}
	alone := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: logger}}
	if err := alone.Run(ctx); err == nil || !strings.Contains(err.Error(), "was copied into a cluster") {
		t.Fatalf("serving the imported dir alone: %v, want 'was copied into a cluster'", err)
	}

	// A server on the cluster, with the old dir's keys, answers from the
	// copied store and accepts the old server's tokens.
	m := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0", NATSURL: urls, Logger: logger}}
	if err := m.Run(ctx); err != nil {
		t.Fatalf("serve on the cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if m.Store.Replicas() != 3 {
		t.Errorf("the store on the cluster has %d replicas, want 3", m.Store.Replicas())
	}
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
	again, err := c.GetSteps(ctx, authed(&stepsv1.GetStepsRequest{UserIds: []string{"walker-0", "walker-3"}, FromDate: todayUTC(), MinPosition: last}, tok))
	if err != nil {
		t.Fatalf("steps through the cluster: %v", err)
	}
	if fmt.Sprint(again.Msg.Steps) != fmt.Sprint(want.Msg.Steps) {
		t.Errorf("steps through the cluster: %v, want %v", again.Msg.Steps, want.Msg.Steps)
	}
	res, err := c.RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: "walker-0", Date: todayUTC(), Steps: 1}, tok))
	if err != nil || res.Msg.Position != last+1 {
		t.Errorf("a write through the cluster: position %v, %v; want %d", res.Msg.GetPosition(), err, last+1)
	}
	seeds, err = tljs.OpenSeeds(ctx, m.Store.JetStream(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := seeds.Seed(ctx, "raffle-1"); err != nil || !bytes.Equal(s, seed) {
		t.Errorf("seed through the cluster: %x, %v; want %x", s, err, seed)
	}
	r, _, err := m.Blobs.Open(ctx, "images", "a.bin")
	if err != nil {
		t.Fatalf("object through the cluster: %v", err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(b, blob) {
		t.Errorf("object through the cluster: %d bytes, %v; want the %d put", len(b), err, len(blob))
	}
}

// aloneWithSteps runs a server alone on a new data dir, records 30 steps
// commits through its API, and returns it with an ingest token, the last
// position and walker-0's and walker-3's steps as it answers them.
func aloneWithSteps(t *testing.T, logger *slog.Logger) (string, *server.Main, string, uint64, *connect.Response[stepsv1.GetStepsResponse]) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	old := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: logger}}
	if err := old.Run(ctx); err != nil {
		t.Fatal(err)
	}
	tok := mainToken(t, old, "ingest", auth.Service)
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+old.Addr())
	var last uint64
	for i := range 30 {
		res, err := c.RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: fmt.Sprintf("walker-%d", i%7), Date: todayUTC(), Steps: int32(100 + i)}, tok))
		if err != nil {
			t.Fatalf("record: %v", err)
		}
		last = res.Msg.Position
	}
	want, err := c.GetSteps(ctx, authed(&stepsv1.GetStepsRequest{UserIds: []string{"walker-0", "walker-3"}, FromDate: todayUTC(), MinPosition: last}, tok))
	if err != nil {
		t.Fatal(err)
	}
	return dir, old, tok, last, want
}
