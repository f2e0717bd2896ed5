package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
	"github.com/tideline/tideline/wire"
)

// Names shared with the hub (subjects, headers, the largest commit the
// device gate takes) live in package wire.
const (
	// LocalDomain is the JetStream domain of every agent's embedded server:
	// its API stays on the device and never crosses the leaf link.
	LocalDomain = "edge"
	// commitHeaderBytes is kept free in a commit (at most
	// wire.MaxDeviceCommitBytes) for its headers.
	commitHeaderBytes = 1 << 10
)

// LaneStatus is a snapshot of one lane.
type LaneStatus struct {
	Name string
	// Stored is the last local sequence stored (acknowledged locally).
	Stored uint64
	// Forwarded is the last local sequence the hub has acknowledged.
	Forwarded uint64
	// HubSeq is the hub's sequence of the last forwarded commit.
	HubSeq uint64
	// Dropped counts events evicted before forwarding (telemetry only).
	Dropped uint64
	// Commits counts commits the hub acknowledged in this run.
	Commits uint64
	// Refused counts, of those, the commits the hub refused: it keeps them
	// in its quarantine, with the reason, and their events reach no read
	// model there.
	Refused uint64
}

// lane is one local stream and the hub subject it is forwarded to.
type lane struct {
	name      string // "danger" or "telemetry"
	device    string
	stream    string // local stream name
	local     string // local subject
	hub       string // the gate's subject for the lane's commits
	epoch     string
	nc        *nats.Conn // the lane's own connection: danger never queues behind telemetry
	js        jetstream.JetStream
	st        jetstream.Stream
	wake      chan struct{}
	maxEvents int
	maxBytes  int // a commit's payload: wire.MaxDeviceCommitBytes less its headers
}

func newEpoch() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// provision creates or updates the lane's stream, keeping its epoch.
// maxBytes < 0 means unlimited (the danger lane).
func (l *lane) provision(ctx context.Context, maxBytes int64) error {
	cfg := jetstream.StreamConfig{
		Name:        l.stream,
		Subjects:    []string{l.local},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxBytes:    maxBytes,
		MaxMsgs:     -1,
		AllowDirect: true,
		Duplicates:  time.Minute,
	}
	st, err := l.js.Stream(ctx, l.stream)
	switch {
	case err == nil:
		l.epoch = st.CachedInfo().Config.Metadata["tl_epoch"]
	case errors.Is(err, jetstream.ErrStreamNotFound):
	default:
		return fmt.Errorf("stream %s: %w", l.stream, err)
	}
	if l.epoch == "" {
		l.epoch = newEpoch()
	}
	cfg.Metadata = map[string]string{"tl_epoch": l.epoch}
	if l.st, err = l.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("provision stream %s: %w", l.stream, err)
	}
	return nil
}

// record stores local messages (from localMsg) durably in the lane, in
// order, and returns the local sequence of the last. Returning nil means
// acknowledged locally. Retrying with the same messages cannot store them
// twice: their Nats-Msg-Id dedups within the local duplicate window.
func (l *lane) record(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	for _, msg := range msgs {
		if n := wire.EncodedEventSize(len(msg.Data)); n > l.maxBytes {
			return 0, fmt.Errorf("record %s: event of %d bytes: a hub commit holds at most %d", l.name, n, l.maxBytes)
		}
	}
	futs := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, msg := range msgs {
		f, err := l.js.PublishMsgAsync(msg)
		if err != nil {
			return 0, fmt.Errorf("record %s: %w", l.name, err)
		}
		futs = append(futs, f)
	}
	var last uint64
	for _, f := range futs {
		select {
		case ack := <-f.Ok():
			last = max(last, ack.Sequence)
		case err := <-f.Err():
			return 0, fmt.Errorf("record %s: %w", l.name, err)
		case <-ctx.Done():
			return 0, fmt.Errorf("record %s: %w", l.name, ctx.Err())
		}
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return last, nil
}

// localMsg wraps one event as a tideline.es.v1.Event with a fresh ULID (a
// hub commit is then just these bytes concatenated, see encodeCommit).
// The ULID is also the local message id. Not the payload's own ids: a
// danger incident's first report and its CRITICAL upgrade share event_id.
func localMsg(subject string, e proto.Message) (*nats.Msg, error) {
	data, err := proto.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("marshal event: %w", err)
	}
	typ := string(e.ProtoReflect().Descriptor().FullName())
	id := ulid.Make().String()
	ev := &esv1.Event{Id: id, Type: typ, OccurredAt: timestamppb.Now(), Data: data}
	b, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("marshal event: %w", err)
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, id)
	h.Set(wire.HeaderEventType, typ)
	return &nats.Msg{Subject: subject, Header: h, Data: b}, nil
}

// serverOptions builds the embedded leaf server's options.
func serverOptions(cfg *Config) (*server.Options, error) {
	u, err := url.Parse(cfg.Hub)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--hub %q: want a URL like nats-leaf://host:7422", cfg.Hub)
	}
	switch u.Scheme {
	case "nats-leaf", "nats", "tls":
	default: // nats-server would dial any scheme and fail obscurely
		return nil, fmt.Errorf("--hub %q: scheme %q is not a NATS leaf URL; want nats-leaf://HOST:PORT, the address of the hub's --leaf-listen (e.g. nats-leaf://hub.example:7422)", cfg.Hub, u.Scheme)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(server.DEFAULT_LEAFNODE_PORT))
	}
	opts := &server.Options{
		ServerName:         "edge-" + cfg.Creds.DeviceID,
		JetStream:          true,
		JetStreamDomain:    LocalDomain,
		StoreDir:           cfg.storeDir(),
		SyncInterval:       cfg.SyncInterval,
		SyncAlways:         cfg.SyncAlways,
		DontListen:         true,
		NoSigs:             true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 64 << 20,
		// Every failed attempt reaches linkLog, which says why once per
		// problem (nats-server reports a first connect's failures hourly).
		ConnectErrorReports:   1,
		ReconnectErrorReports: 1,
		LeafNode: server.LeafNodeOpts{
			ReconnectInterval: cfg.LeafReconnect,
			Remotes: []*server.RemoteLeafOpts{{
				URLs:                    []*url.URL{u},
				Nkey:                    cfg.Creds.NKeySeed,
				IgnoreDiscoveredServers: true,
			}},
		},
	}
	return opts, nil
}
