package natsserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/internal/poll"
)

// A node that steps down hands the streams and consumers it leads to the
// others, which elect new leaders at once; a server alone has none to
// hand over.
func TestStepDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	servers, conns := natstest.StartCluster(t, 3)
	ctx := context.Background()
	js, err := jetstream.New(conns[0])
	if err != nil {
		t.Fatal(err)
	}
	var st jetstream.Stream
	poll.Until(t, 30*time.Second, "the cluster's JetStream ready", func() bool { // a meta leader elected
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err = js.CreateStream(cctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3})
		return err == nil
	})
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "d", AckPolicy: jetstream.AckExplicitPolicy, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leaderOf := func() string {
		info, err := st.Info(ctx)
		if err != nil || info.Cluster == nil {
			return ""
		}
		return info.Cluster.Leader
	}
	poll.Until(t, 10*time.Second, "a stream leader", func() bool { return leaderOf() != "" })
	var leader int
	for i, s := range servers {
		if s.Name() == leaderOf() {
			leader = i
		}
	}
	moved, pending := natsserver.StepDown(servers[leader], 5*time.Second)
	if moved < 1 || pending != 0 {
		t.Fatalf("step down: %d groups moved, %d without a new leader; want at least the stream, 0", moved, pending)
	}
	if now := leaderOf(); now == "" || now == servers[leader].Name() {
		t.Fatalf("stream leader after %s stepped down: %q", servers[leader].Name(), now)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("x")); err != nil {
		t.Fatalf("publish after the step-down: %v", err)
	}

	alone, err := natsserver.Start(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { alone.Shutdown(); alone.WaitForShutdown() }()
	if moved, pending := natsserver.StepDown(alone, time.Second); moved != 0 || pending != 0 {
		t.Fatalf("a server alone: %d moved, %d pending", moved, pending)
	}
}
