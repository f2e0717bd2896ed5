package edge_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/edge/edgetest"
	"github.com/tideline/tideline/internal/poll"
)

// BenchmarkSourcingResume measures the alternative the agent does not use:
// the hub's stream sourcing the device's stream over the leaf link (NATS's
// own store-and-forward). After an outage of the given length, how long
// from the link's return until sourcing resumes. nats-server backs off
// failed source consumers by 10 s per failure up to 2 min and checks
// stalled sources every 10 s (server/stream.go, v2.15.2), not
// configurable. Slow: run it on its own.
//
//	go test ./edge -run '^$' -bench SourcingResume -benchtime 1x -timeout 30m
func BenchmarkSourcingResume(b *testing.B) {
	for _, outage := range []time.Duration{15 * time.Second, 60 * time.Second, 180 * time.Second} {
		b.Run(fmt.Sprintf("outage_%v", outage), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				resume := sourcingResume(b, outage)
				b.ReportMetric(resume.Seconds(), "s-to-resume")
				b.Logf("outage %v: sourcing resumed %v after the link returned", outage, resume.Round(100*time.Millisecond))
			}
		})
	}
}

func sourcingResume(b *testing.B, outage time.Duration) time.Duration {
	hub, err := server.NewServer(&server.Options{ServerName: "hub", JetStream: true, JetStreamDomain: "hub", StoreDir: b.TempDir(),
		DontListen: true, NoSigs: true, LeafNode: server.LeafNodeOpts{Host: "127.0.0.1", Port: -1, NoAdvertise: true}})
	if err != nil {
		b.Fatal(err)
	}
	go hub.Start()
	hub.ReadyForConnections(10 * time.Second)
	defer func() { hub.Shutdown(); hub.WaitForShutdown() }()
	v, _ := hub.Varz(nil)
	p := edgetest.NewProxy(b, fmt.Sprintf("127.0.0.1:%d", v.LeafNode.Port))
	u, _ := url.Parse("nats-leaf://" + p.Addr())
	dev, err := server.NewServer(&server.Options{ServerName: "dev", JetStream: true, JetStreamDomain: "edge", StoreDir: b.TempDir(),
		DontListen: true, NoSigs: true, LeafNode: server.LeafNodeOpts{ReconnectInterval: 250 * time.Millisecond,
			Remotes: []*server.RemoteLeafOpts{{URLs: []*url.URL{u}, IgnoreDiscoveredServers: true}}}})
	if err != nil {
		b.Fatal(err)
	}
	go dev.Start()
	dev.ReadyForConnections(10 * time.Second)
	defer func() { dev.Shutdown(); dev.WaitForShutdown() }()
	ctx := context.Background()
	dnc, _ := nats.Connect("", nats.InProcessServer(dev))
	defer dnc.Close()
	djs, _ := jetstream.New(dnc)
	if _, err := djs.CreateStream(ctx, jetstream.StreamConfig{Name: "DEV", Subjects: []string{"dev.>"}}); err != nil {
		b.Fatal(err)
	}
	hnc, _ := nats.Connect("", nats.InProcessServer(hub))
	defer hnc.Close()
	hjs, _ := jetstream.New(hnc)
	poll.Until(b, 10*time.Second, "leaf up", func() bool { return hub.NumLeafNodes() == 1 })
	hs, err := hjs.CreateStream(ctx, jetstream.StreamConfig{Name: "HUB", Sources: []*jetstream.StreamSource{{
		Name: "DEV", External: &jetstream.ExternalStream{APIPrefix: "$JS.edge.API"}}}})
	if err != nil {
		b.Fatal(err)
	}
	count := func() uint64 {
		info, err := hs.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	djs.Publish(ctx, "dev.x", []byte("1"))
	poll.Until(b, 30*time.Second, "sourcing", func() bool { return count() == 1 })
	p.Cut()
	deadline := time.Now().Add(outage)
	for time.Now().Before(deadline) { // events keep coming during the outage
		djs.Publish(ctx, "dev.x", []byte("x"))
		time.Sleep(time.Second)
	}
	back := time.Now()
	p.Restore()
	poll.Until(b, 5*time.Minute, "sourcing to resume", func() bool { return count() > 1 })
	return time.Since(back)
}
