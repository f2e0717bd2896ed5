package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
)

// startClusterHubs runs three servers in process as one cluster, each
// accepting edge devices (--leaf-listen), with the signing keys shared.
func startClusterHubs(t *testing.T) []*deviceHub {
	t.Helper()
	root := t.TempDir()
	dirs := make([]string, 3)
	var routes []string
	listens := make([]string, 3)
	for i := range dirs {
		dirs[i] = filepath.Join(root, fmt.Sprintf("node%d", i))
		listens[i] = freeAddr(t)
		routes = append(routes, "nats-route://"+listens[i])
	}
	if _, err := api.LoadOrCreateTokens(dirs[0]); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs[1:] {
		if err := os.CopyFS(filepath.Join(d, "keys"), os.DirFS(filepath.Join(dirs[0], "keys"))); err != nil {
			t.Fatal(err)
		}
	}
	ms := make([]*server.Main, 3)
	errs := make(chan error, 3)
	for i := range ms {
		ms[i] = &server.Main{Config: server.Config{DataDir: dirs[i], Listen: "127.0.0.1:0", LeafListen: "127.0.0.1:-1",
			ServerName: fmt.Sprintf("node%d", i),
			Cluster:    natsserver.Cluster{Name: "tl-devices", Listen: listens[i], Routes: routes, Secret: "cluster-secret-0123456789abcdef"},
			Logger:     slog.New(slog.NewTextHandler(io.Discard, nil))}}
		go func() { errs <- ms[i].Run(context.Background()) }()
	}
	for range ms {
		if err := <-errs; err != nil {
			t.Fatalf("start a node: %v", err)
		}
	}
	hubs := make([]*deviceHub, 3)
	for i, m := range ms {
		t.Cleanup(func() { m.Close() })
		h := &deviceHub{m: m, url: "http://" + m.Addr(), admin: mainToken(t, m, "root", auth.Admin)}
		h.safety = safetyv1connect.NewSafetyServiceClient(http.DefaultClient, h.url)
		h.delivery = deliveryv1connect.NewDeliveryServiceClient(http.DefaultClient, h.url)
		h.board = dashboardv1connect.NewDashboardServiceClient(http.DefaultClient, h.url)
		hubs[i] = h
	}
	return hubs
}

// An edge device registered on every node of a cluster (its registry
// file copied, as the README says) may attach to any of them: what it
// sends through one node is listed through every node, and so is what it
// sends once it has attached to another.
func TestClusterDevicesAttachToAnyNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	t.Parallel()
	hubs := startClusterHubs(t)
	dev, seed, err := natsserver.AddDevice(server.DeviceDir(hubs[0].m.Config.DataDir), "bike-c", "carol")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hubs[1:] {
		if err := os.CopyFS(server.DeviceDir(h.m.Config.DataDir), os.DirFS(server.DeviceDir(hubs[0].m.Config.DataDir))); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hubs {
		if _, err := h.m.Devices.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	creds := edge.Creds{Format: edge.CredsFormat, DeviceID: "bike-c", RiderID: "carol", LeafUser: dev.NKey, NKeySeed: string(seed), HubDomain: natsserver.HubDomain}

	sent := 0
	for _, via := range []int{1, 2} {
		nc := hubs[via].rogueDevice(t, creds)
		id := fmt.Sprintf("via-node%d", via)
		if n := spray(t, nc, devCommit(t, dangerEv(id, "carol", "bike-c", safetyv1.Severity_SEVERITY_LOW)), nil, "in.danger.device.bike-c"); n != 1 {
			t.Fatalf("through node%d: %d of 1 acknowledged", via, n)
		}
		sent++
		nc.Close()
		for _, h := range hubs {
			poll.Until(t, 20*time.Second, fmt.Sprintf("%s listed through %s", id, h.m.Config.ServerName), func() bool {
				return len(h.dangerList(t, "carol", 0).Events) == sent
			})
		}
	}
}
