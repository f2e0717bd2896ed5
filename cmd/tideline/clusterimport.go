package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	nserver "github.com/nats-io/nats-server/v2/server"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/dirlock"
	"github.com/tideline/tideline/wire"
)

const clusterImportUsage = `usage: tideline cluster-import --data DIR --nats-url URL[,URL...] [--nats-creds FILE] [--replicas N]
       tideline cluster-import --data DIR --cluster-name NAME --routes URL[,URL...] --cluster-secret-file FILE [--replicas N]

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
--nats-url it may.

A cluster of 'tideline serve --cluster-name ...' nodes offers no
JetStream API on its client port, and creates its streams as it starts:
start each node with --await-import instead (it joins the cluster and
waits, not ready), and give cluster-import the cluster's --cluster-name,
--routes and --cluster-secret-file. It then joins the cluster through
its routes as a NATS node without JetStream (no replica lands on it),
copies, and leaves; the nodes open the store once every stream is
copied.`

func clusterImportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cluster-import", clusterImportUsage, stderr)
	data := fs.String("data", "./data", "the data directory of the stopped server alone")
	url := fs.String("nats-url", "", "the NATS cluster to copy into, e.g. nats://a:4222,nats://b:4222 (required)")
	creds := fs.String("nats-creds", "", "the credentials file (.creds) to connect to --nats-url with")
	replicas := fs.Int("replicas", 0, "replicas of every copied stream; 0: 3 when the cluster has three nodes or more, else 1")
	var cluster natsserver.Cluster
	fs.StringVar(&cluster.Name, "cluster-name", "", "instead of --nats-url: join the Tideline cluster of this name (nodes started with 'tideline serve --await-import') through its routes, with --routes and --cluster-secret-file")
	routes := fs.String("routes", "", "the cluster nodes' route URLs, comma-separated, as the nodes have them: nats-route://a:6222,nats-route://b:6222,nats-route://c:6222")
	secretFile := fs.String("cluster-secret-file", "", "a file holding the cluster's shared secret, the nodes' --cluster-secret-file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("cluster-import: unexpected %q", fs.Arg(0))
	}
	var err error
	if cluster.Routes, err = natsserver.ParseRoutes(*routes); err != nil {
		return fmt.Errorf("cluster-import: --routes: %w", err)
	}
	routed := cluster.Name != "" || len(cluster.Routes) > 0 || *secretFile != ""
	switch {
	case routed && *url != "":
		return errors.New("cluster-import: --nats-url or --cluster-name, --routes and --cluster-secret-file, not both: the first reach a NATS cluster's JetStream, the others a cluster of 'tideline serve' nodes")
	case !routed && *url == "":
		return errors.New("cluster-import: name the cluster to copy into: --nats-url, or --cluster-name, --routes and --cluster-secret-file (a cluster of 'tideline serve --await-import' nodes)")
	case routed && (cluster.Name == "" || len(cluster.Routes) == 0 || *secretFile == ""):
		return errors.New("cluster-import: reaching a cluster through its routes needs all of --cluster-name, --routes and --cluster-secret-file")
	case routed && *creds != "":
		return errors.New("cluster-import: --nats-creds goes with --nats-url; routes authenticate with --cluster-secret-file")
	}
	if routed {
		if cluster.Secret, err = readClusterSecret(*secretFile); err != nil {
			return fmt.Errorf("cluster-import: %w", err)
		}
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

	var dst *nats.Conn
	target := *url
	if routed {
		target = fmt.Sprintf("cluster %s through %s", cluster.Name, strings.Join(cluster.Routes, ","))
		node, err := joinCluster(cluster)
		if err != nil {
			return fmt.Errorf("cluster-import: %w", err)
		}
		defer func() { node.Shutdown(); node.WaitForShutdown() }()
		if dst, err = natsserver.Connect(node, "tideline cluster-import"); err != nil {
			return fmt.Errorf("cluster-import: %w", err)
		}
		defer dst.Close()
		if err := awaitJetStream(ctx, dst, joinWait); err != nil {
			return fmt.Errorf("cluster-import: reach the JetStream of %s: %w (are the nodes started, and --cluster-name and --cluster-secret-file theirs?)", target, err)
		}
		if *replicas == 0 { // as the nodes count themselves (server.Replicas)
			*replicas = 1
			if len(cluster.Routes) >= 3 {
				*replicas = 3
			}
		}
	} else {
		opts := []nats.Option{nats.Name("tideline cluster-import")}
		if *creds != "" {
			opts = append(opts, nats.UserCredentials(*creds))
		}
		if dst, err = nats.Connect(*url, opts...); err != nil {
			return fmt.Errorf("cluster-import: connect to %s: %w", *url, err)
		}
		defer dst.Close()
		if *replicas == 0 {
			*replicas = 1
			if dst.ConnectedClusterName() != "" {
				*replicas = 3
			}
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

	if !routed {
		target = dst.ConnectedUrlRedacted()
	}
	djs, err := natsjs.New(dst)
	if err != nil {
		return fmt.Errorf("cluster-import: %w", err)
	}
	if routed {
		// Nodes awaiting the import open the store once it is gone.
		if err := beginImport(ctx, djs); err != nil {
			return fmt.Errorf("cluster-import: %w", err)
		}
	}
	fmt.Fprintf(stdout, "copying %s into %s (%s), %d replicas\n", *data, target, clusterName(dst), *replicas)
	fmt.Fprintf(stdout, "%-28s %12s %14s %9s\n", "stream", "messages", "bytes", "seconds")
	copied, err := jetstream.CopyStreams(ctx, src, dst, *replicas, func(c jetstream.Copied) {
		fmt.Fprintf(stdout, "%-28s %12d %14d %9.2f\n", c.Name, c.Msgs, c.Bytes, c.Took.Seconds())
	})
	if routed {
		// Not when a failed copy left streams behind: the nodes would
		// open a part of the store.
		if copied != nil || es.KindOf(err) == es.FailedPrecondition || !hasStream(ctx, djs, wire.EventsStream) {
			err = errors.Join(err, endImport(ctx, djs))
		} else {
			err = fmt.Errorf("%w; the nodes keep waiting while stream %s is there: remove the streams copied, then it", err, wire.ImportingStream)
		}
	}
	if err != nil && copied == nil {
		return fmt.Errorf("cluster-import: %w", err)
	}
	// Copied (whatever the raise did): the old server must not take
	// writes the cluster would never see.
	mark := fmt.Sprintf("by tideline cluster-import into %s at %s, up to position %d\n",
		target, time.Now().UTC().Format(time.RFC3339), lastSeq(copied))
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
	if routed {
		fmt.Fprintf(stdout, "next: the nodes started with --await-import open the store now (with %s and %s copied into their --data before they started); keep %s stopped; later starts need no --await-import (it is harmless)\n",
			filepath.Join(*data, "keys"), filepath.Join(*data, "vapid.json"), *data)
		return nil
	}
	fmt.Fprintf(stdout, "next: copy %s and %s into each node's --data, start 'tideline serve --nats-url %s' there, and keep %s stopped\n",
		filepath.Join(*data, "keys"), filepath.Join(*data, "vapid.json"), *url, *data)
	return nil
}

// joinWait bounds how long cluster-import waits to reach the cluster's
// JetStream through its routes.
const joinWait = 30 * time.Second

// joinCluster starts a NATS server without JetStream, routed into
// cluster: its JetStream is reached through it, and it takes no replica.
// The caller shuts it down.
func joinCluster(cluster natsserver.Cluster) (*nserver.Server, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	cluster.Listen = "127.0.0.1:-1" // routes go out; none need come in
	return natsserver.Start(natsserver.Config{NoJetStream: true, Cluster: cluster,
		Name: fmt.Sprintf("cluster-import-%s-%d", strings.ReplaceAll(host, ".", "-"), os.Getpid())})
}

// awaitJetStream polls until nc's JetStream answers, or wait has passed.
func awaitJetStream(ctx context.Context, nc *nats.Conn, wait time.Duration) error {
	js, err := natsjs.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		tryCtx, tryCancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(tryCtx)
		tryCancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %w", wait, err)
		case <-tick.C:
		}
	}
}

// beginImport creates wire.ImportingStream, which keeps the nodes started
// with --await-import waiting (server.Main.Config.AwaitImport), or
// refuses when it is there already.
func beginImport(ctx context.Context, js natsjs.JetStream) error {
	host, _ := os.Hostname()
	// The description is this import's own: a create of the same name by
	// another fails, as the creates of one are idempotent.
	cfg := natsjs.StreamConfig{Name: wire.ImportingStream, Subjects: []string{"tideline.importing"}, Replicas: 1,
		Description: fmt.Sprintf("tideline cluster-import under way: pid %d on %s since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339Nano))}
	ctx, cancel := context.WithTimeout(ctx, joinWait)
	defer cancel()
	err := jetstream.WhileClusterForms(ctx, true, func(ctx context.Context) error {
		if st, err := js.Stream(ctx, cfg.Name); err == nil {
			if st.CachedInfo().Config.Description == cfg.Description {
				return nil // ours: a create that answered too late
			}
			return natsjs.ErrStreamNameAlreadyInUse
		} else if !errors.Is(err, natsjs.ErrStreamNotFound) {
			return err
		}
		_, err := js.CreateStream(ctx, cfg)
		return err
	})
	if errors.Is(err, natsjs.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("stream %s is on the cluster: another import is under way, or one was cut off (then remove the streams it copied, and it): nothing copied", wire.ImportingStream)
	}
	if err != nil {
		return fmt.Errorf("create stream %s: %w", wire.ImportingStream, err)
	}
	return nil
}

// endImport removes wire.ImportingStream: the nodes awaiting the import
// open the store.
func endImport(ctx context.Context, js natsjs.JetStream) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), joinWait)
	defer cancel()
	err := jetstream.WhileClusterForms(ctx, true, func(ctx context.Context) error {
		err := js.DeleteStream(ctx, wire.ImportingStream)
		if errors.Is(err, natsjs.ErrStreamNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("remove stream %s (the nodes wait while it is there): %w", wire.ImportingStream, err)
	}
	return nil
}

// hasStream reports whether js has stream name, or cannot tell.
func hasStream(ctx context.Context, js natsjs.JetStream, name string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := js.Stream(ctx, name)
	return !errors.Is(err, natsjs.ErrStreamNotFound)
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
