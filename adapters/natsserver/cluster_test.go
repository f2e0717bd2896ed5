package natsserver_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/natsserver"
)

func TestClusterSize(t *testing.T) {
	three := []string{"nats-route://10.0.0.1:6222", "nats-route://10.0.0.2:6222", "nats-route://10.0.0.3:6222"}
	for name, c := range map[string]struct {
		cluster natsserver.Cluster
		want    int
	}{
		"routes_name_every_node":   {natsserver.Cluster{Name: "tl", Listen: "10.0.0.1:6222", Routes: three}, 3},
		"routes_name_the_others":   {natsserver.Cluster{Name: "tl", Listen: "10.0.0.1:6222", Routes: three[1:]}, 3},
		"advertised_self":          {natsserver.Cluster{Name: "tl", Listen: "0.0.0.0:7000", Advertise: "10.0.0.1:6222", Routes: three}, 3},
		"every_interface_loopback": {natsserver.Cluster{Name: "tl", Listen: "0.0.0.0:6222", Routes: []string{"nats-route://127.0.0.1:6222", "nats-route://10.0.0.2:6222"}}, 2},
		"first_node_no_routes":     {natsserver.Cluster{Name: "tl", Listen: "10.0.0.1:6222"}, 1},
	} {
		t.Run(name, func(t *testing.T) {
			if got := c.cluster.Size(); got != c.want {
				t.Errorf("Size() = %d, want %d", got, c.want)
			}
		})
	}
}

func TestParseRoutes(t *testing.T) {
	got, err := natsserver.ParseRoutes(" nats-route://a:6222, nats-route://b:6222 ,")
	if err != nil || len(got) != 2 || got[1] != "nats-route://b:6222" {
		t.Fatalf("ParseRoutes: %v %v", got, err)
	}
	for _, bad := range []string{"nats://a:6222", "nats-route://a", "nats-route://u:p@a:6222", "a:6222"} {
		if _, err := natsserver.ParseRoutes(bad); err == nil {
			t.Errorf("ParseRoutes(%q) accepted", bad)
		}
	}
}

// A store a server alone wrote is refused as a cluster node's: nats-server
// would delete its streams as orphans.
func TestClusterRefusesStandaloneStore(t *testing.T) {
	dir := t.TempDir()
	s, err := natsserver.Start(natsserver.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := natsserver.Connect(s, "t")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}}); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	_, err = natsserver.Start(natsserver.Config{StoreDir: dir, Name: "n1",
		Cluster: natsserver.Cluster{Name: "tl", Listen: "127.0.0.1:-1", Secret: "0123456789abcdef0123"}})
	if !errors.Is(err, natsserver.ErrStandaloneStore) {
		t.Fatalf("cluster node on a standalone store: %v, want ErrStandaloneStore", err)
	}
}
