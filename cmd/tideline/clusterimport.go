package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/internal/dirlock"
	"github.com/tideline/tideline/wire"
)

const clusterImportUsage = `usage: tideline cluster-import --data DIR --nats-url URL[,URL...] [--nats-creds FILE] [--replicas N]

Copies the store of a server alone (DIR, written by 'tideline serve --data
DIR', which must be stopped) into a NATS cluster with JetStream, where
'tideline serve --nats-url URL' then runs on it: the events stream EVENTS
with every position and recorded time as they were, and the KV buckets and
object stores (KV_*, OBJ_*) beside it, with JetStream's stream snapshot and
restore. Each stream is then raised to --replicas and the copy is checked:
the same message count and first and last sequences as in DIR. DIR is only
read.

It refuses, copying nothing, when the cluster already has a stream of one
of those names (an import done already, or a server started on the
cluster first), when DIR is in use, or when DIR holds no Tideline store.
If a copy fails, the streams copied so far are removed again. Once all
are copied, DIR/IMPORTED says so, and 'tideline serve' refuses to serve
DIR alone again (it would take writes the cluster never sees); with
--nats-url it may.`

func clusterImportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cluster-import", clusterImportUsage, stderr)
	data := fs.String("data", "./data", "the data directory of the stopped server alone")
	url := fs.String("nats-url", "", "the NATS cluster to copy into, e.g. nats://a:4222,nats://b:4222 (required)")
	creds := fs.String("nats-creds", "", "the credentials file (.creds) to connect to --nats-url with")
	replicas := fs.Int("replicas", 0, "replicas of every copied stream; 0: 3 when --nats-url is a cluster, else 1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cluster-import: unexpected %q", fs.Arg(0))
	}
	if *url == "" {
		return errors.New("cluster-import: --nats-url names the cluster to copy into")
	}
	if *replicas < 0 || *replicas > 5 {
		return fmt.Errorf("cluster-import: --replicas: want 0 (automatic) to 5, got %d", *replicas)
	}
	store := filepath.Join(*data, "jetstream")
	if _, err := os.Stat(store); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cluster-import: %s holds no Tideline store (no %s)", *data, store)
	} else if err != nil {
		return fmt.Errorf("cluster-import: %w", err)
	}
	lock, err := dirlock.Acquire(*data, dirlock.Holder{Program: "tideline cluster-import"})
	if err != nil {
		return fmt.Errorf("cluster-import: %w", err)
	}
	defer lock.Release()

	opts := []nats.Option{nats.Name("tideline cluster-import")}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	dst, err := nats.Connect(*url, opts...)
	if err != nil {
		return fmt.Errorf("cluster-import: connect to %s: %w", *url, err)
	}
	defer dst.Close()
	if *replicas == 0 {
		*replicas = 1
		if dst.ConnectedClusterName() != "" {
			*replicas = 3
		}
	}

	ns, err := natsserver.Start(natsserver.Config{StoreDir: store})
	if err != nil {
		return fmt.Errorf("cluster-import: open %s: %w", store, err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	src, err := natsserver.Connect(ns, "tideline cluster-import")
	if err != nil {
		return fmt.Errorf("cluster-import: %w", err)
	}
	defer src.Close()
	sjs, err := natsjs.New(src)
	if err != nil {
		return fmt.Errorf("cluster-import: %w", err)
	}
	if _, err := sjs.Stream(ctx, wire.EventsStream); errors.Is(err, natsjs.ErrStreamNotFound) {
		return fmt.Errorf("cluster-import: %s holds no Tideline store (no %s stream)", *data, wire.EventsStream)
	} else if err != nil {
		return fmt.Errorf("cluster-import: %w", err)
	}

	fmt.Fprintf(stdout, "copying %s into %s (%s), %d replicas\n", *data, dst.ConnectedUrlRedacted(), clusterName(dst), *replicas)
	fmt.Fprintf(stdout, "%-28s %12s %14s %9s\n", "stream", "messages", "bytes", "seconds")
	copied, err := jetstream.CopyStreams(ctx, src, dst, *replicas, func(c jetstream.Copied) {
		fmt.Fprintf(stdout, "%-28s %12d %14d %9.2f\n", c.Name, c.Msgs, c.Bytes, c.Took.Seconds())
	})
	if err != nil && copied == nil {
		return fmt.Errorf("cluster-import: %w", err)
	}
	// Copied (whatever the raise did): the old server must not take
	// writes the cluster would never see.
	mark := fmt.Sprintf("by tideline cluster-import into %s at %s, up to position %d\n",
		dst.ConnectedUrlRedacted(), time.Now().UTC().Format(time.RFC3339), lastSeq(copied))
	if err := writeFile(filepath.Join(*data, server.ImportedFile), []byte(mark)); err != nil {
		return fmt.Errorf("cluster-import: copied, but %w: do not serve %s alone any more", err, *data)
	}
	if err != nil {
		return fmt.Errorf("cluster-import: every stream is copied, but %w; 'tideline serve --nats-url %s --replicas %d' raises them as it starts", err, *url, *replicas)
	}
	var msgs, bytes uint64
	var secs float64
	for _, c := range copied {
		msgs, bytes, secs = msgs+c.Msgs, bytes+c.Bytes, secs+c.Took.Seconds()
	}
	fmt.Fprintf(stdout, "%-28s %12d %14d %9.2f\n", fmt.Sprintf("total (%d streams)", len(copied)), msgs, bytes, secs)
	fmt.Fprintf(stdout, "checked: every stream has its messages and first and last sequences; %s up to position %d, %d replicas\n",
		wire.EventsStream, lastSeq(copied), *replicas)
	fmt.Fprintf(stdout, "next: copy %s and %s into each node's --data, start 'tideline serve --nats-url %s' there, and keep %s stopped\n",
		filepath.Join(*data, "keys"), filepath.Join(*data, "vapid.json"), *url, *data)
	return nil
}

// lastSeq returns the events stream's last sequence among copied.
func lastSeq(copied []jetstream.Copied) uint64 {
	i := slices.IndexFunc(copied, func(c jetstream.Copied) bool { return c.Name == wire.EventsStream })
	if i < 0 {
		return 0
	}
	return copied[i].LastSeq
}

// writeFile writes path whole or not at all.
func writeFile(path string, b []byte) error {
	tmp := path + ".partial"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func clusterName(nc *nats.Conn) string {
	if n := nc.ConnectedClusterName(); n != "" {
		return "cluster " + n
	}
	return "a server alone"
}
