package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/es"
)

// Copied is one stream CopyStreams copied, as the target reports it
// once restored: the same message count and first and last sequences
// as the source's snapshot.
type Copied struct {
	Name              string
	Msgs, Bytes       uint64
	FirstSeq, LastSeq uint64
	// Took is the snapshot and restore's time, not the raise's.
	Took time.Duration
}

// copyTimeout bounds each JetStream API request and chunk of a copy.
const copyTimeout = 30 * time.Second

// CopyStreams copies every stream of src's JetStream account (the events,
// KV buckets and object stores alike) into dst's with JetStream's stream
// snapshot and restore, which keep each message's sequence, subject,
// headers and time, and the streams' durable consumers with their
// state. It then raises each copied stream to replicas (a stream update;
// JetStream copies it to the new replicas) and waits until every replica
// is current. done, if not nil, is called as each stream is copied.
//
// Before copying anything it refuses with a FailedPrecondition error
// naming the stream when dst already has a stream of one of those names.
// When a copy fails, it deletes the streams it created, leaving dst as it
// found it. When only the raise fails, it returns the copied streams with
// the error. src must not change meanwhile (its server stopped, or alone).
func CopyStreams(ctx context.Context, src, dst *nats.Conn, replicas int, done func(Copied)) ([]Copied, error) {
	sjs, err := jetstream.New(src)
	if err != nil {
		return nil, fmt.Errorf("copy streams: %w", err)
	}
	djs, err := jetstream.New(dst)
	if err != nil {
		return nil, fmt.Errorf("copy streams: %w", err)
	}
	names, err := streamNames(ctx, sjs)
	if err != nil {
		return nil, fmt.Errorf("copy streams: list the source's: %w", err)
	}
	var exist []string
	err = WhileClusterForms(ctx, true, func(ctx context.Context) error {
		have, err := streamNames(ctx, djs)
		exist = slices.DeleteFunc(have, func(n string) bool { return !slices.Contains(names, n) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("copy streams: list the target's: %w", err)
	}
	if len(exist) > 0 {
		return nil, es.Errorf(es.FailedPrecondition, "copy streams: the target already has stream %s: nothing copied (an import done already, or a server started on the target first)", exist[0])
	}
	var copied []Copied
	rollback := func(cause error) error {
		for _, c := range copied {
			if err := djs.DeleteStream(context.WithoutCancel(ctx), c.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				cause = errors.Join(cause, fmt.Errorf("remove stream %s copied so far: %w", c.Name, err))
			}
		}
		return cause
	}
	for _, name := range names {
		c, started, err := copyStream(ctx, src, dst, djs, name)
		if err != nil {
			if started { // a restore that failed half-way may leave its stream
				copied = append(copied, Copied{Name: name})
			}
			return nil, rollback(fmt.Errorf("copy stream %s: %w", name, err))
		}
		copied = append(copied, c)
		if done != nil {
			done(c)
		}
	}
	if replicas <= 1 {
		return copied, nil
	}
	// Raised all at once, the streams' new replicas catch up together.
	for _, c := range copied {
		if err := raiseReplicas(ctx, dst, c.Name, replicas); err != nil {
			return copied, fmt.Errorf("copy streams: raise %s to %d replicas: %w", c.Name, replicas, err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, c := range copied {
		if err := awaitReplicas(ctx, djs, c.Name, replicas, deadline); err != nil {
			return copied, fmt.Errorf("copy streams: raise %s to %d replicas: %w", c.Name, replicas, err)
		}
	}
	return copied, nil
}

func streamNames(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	l := js.StreamNames(ctx)
	var names []string
	for n := range l.Name() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, l.Err()
}

// apiRequest sends a JetStream API request and decodes its response into
// resp, returning the response's error, if any.
func apiRequest(ctx context.Context, nc *nats.Conn, subject string, req any, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, copyTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	var e struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if e.Error != nil {
		return fmt.Errorf("%s: %w", subject, e.Error)
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	return nil
}

// copyStream snapshots stream name on src and restores it on dst chunk by
// chunk: nats-server's streamSnapshot sends each chunk with a reply
// subject to acknowledge it by (its flow control), and an empty message,
// status 204, at the end; processStreamRestore acknowledges each chunk it
// has written with an empty reply, and answers the empty message that
// ends the restore with the new stream's info.
func copyStream(ctx context.Context, src, dst *nats.Conn, djs jetstream.JetStream, name string) (c Copied, started bool, err error) {
	start := time.Now()
	chunks, err := src.SubscribeSync(src.NewInbox())
	if err != nil {
		return Copied{}, started, err
	}
	defer chunks.Unsubscribe()
	// The snapshot's window (8 MiB) is what may be pending at once.
	if err := chunks.SetPendingLimits(-1, 64<<20); err != nil {
		return Copied{}, started, err
	}
	var snap struct {
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	if err := apiRequest(ctx, src, "$JS.API.STREAM.SNAPSHOT."+name, map[string]any{"deliver_subject": chunks.Subject}, &snap); err != nil {
		return Copied{}, started, fmt.Errorf("snapshot: %w", err)
	}
	var want struct {
		Msgs     uint64 `json:"messages"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
	}
	if err := json.Unmarshal(snap.State, &want); err != nil {
		return Copied{}, started, fmt.Errorf("snapshot state: %w", err)
	}
	// The source's first chunk before the restore: the destination gives
	// up on a restore that gets no chunk for 5 s (nats-server's
	// activityInterval), and on a loaded machine the first chunk has come
	// later than that (TestClusterImport in ci81).
	chunk, err := chunks.NextMsg(copyTimeout)
	if err != nil {
		return Copied{}, started, fmt.Errorf("snapshot chunk: %w", err)
	}
	var restored struct {
		DeliverSubject string `json:"deliver_subject"`
	}
	restoreReq := map[string]json.RawMessage{"config": snap.Config, "state": snap.State}
	// Not bounded per try (ctx, not the try's): a restore is not
	// idempotent, so a try that timed out after the request was taken
	// would fail the next with "already in use".
	err = WhileClusterForms(ctx, true, func(context.Context) error {
		return apiRequest(ctx, dst, "$JS.API.STREAM.RESTORE."+name, restoreReq, &restored)
	})
	if err != nil {
		return Copied{}, false, err
	}
	started = true
	for ; ; chunk, err = chunks.NextMsg(copyTimeout) {
		if err != nil {
			return Copied{}, started, fmt.Errorf("snapshot chunk: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return Copied{}, started, err
		}
		if len(chunk.Data) == 0 {
			if st := chunk.Header.Get("Status"); st != "" && st != "204" {
				return Copied{}, started, fmt.Errorf("snapshot: %s %s", st, chunk.Header.Get("Description"))
			}
			break
		}
		if err := restoreChunk(ctx, dst, restored.DeliverSubject, chunk.Data); err != nil {
			return Copied{}, started, err
		}
		if chunk.Reply != "" {
			if err := chunk.Respond(nil); err != nil {
				return Copied{}, started, fmt.Errorf("acknowledge snapshot chunk: %w", err)
			}
		}
	}
	if err := restoreChunk(ctx, dst, restored.DeliverSubject, nil); err != nil {
		return Copied{}, started, err
	}
	took := time.Since(start)
	st, err := djs.Stream(ctx, name)
	if err != nil {
		return Copied{}, started, fmt.Errorf("restored stream: %w", err)
	}
	got := st.CachedInfo().State
	// An empty stream's first sequence is its next one: 0 or last+1.
	if got.Msgs != want.Msgs || got.LastSeq != want.LastSeq || got.Msgs > 0 && got.FirstSeq != want.FirstSeq {
		return Copied{}, started, fmt.Errorf("restored %d messages, sequences %d to %d; the source had %d, %d to %d",
			got.Msgs, got.FirstSeq, got.LastSeq, want.Msgs, want.FirstSeq, want.LastSeq)
	}
	return Copied{Name: name, Msgs: got.Msgs, Bytes: got.Bytes, FirstSeq: got.FirstSeq, LastSeq: got.LastSeq, Took: took}, true, nil
}

// restoreChunk sends one chunk of a restore (an empty one ends it) and
// waits for the server's answer: empty once written, else an error (the
// end's answer is the new stream's info or an error).
func restoreChunk(ctx context.Context, nc *nats.Conn, subject string, chunk []byte) error {
	ctx, cancel := context.WithTimeout(ctx, copyTimeout)
	defer cancel()
	// In a cluster the restore's subscription is on the stream's first
	// leader, and the interest may reach this client's server after the
	// answer naming it: no responders means nothing was delivered.
	var msg *nats.Msg
	var err error
	for wait := time.Now().Add(5 * time.Second); ; {
		msg, err = nc.RequestWithContext(ctx, subject, chunk)
		if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(wait) {
			break
		}
		time.Sleep(20 * time.Millisecond) // poll interval for the interest
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if len(msg.Data) == 0 {
		return nil
	}
	var e struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &e); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if e.Error != nil {
		return fmt.Errorf("restore: %w", e.Error)
	}
	return nil
}

// raiseReplicas updates stream name on nc to replicas. The update sends
// back the stream's own configuration, as JSON, so no field a client
// library does not know is lost.
func raiseReplicas(ctx context.Context, nc *nats.Conn, name string, replicas int) error {
	var info struct {
		Config map[string]json.RawMessage `json:"config"`
	}
	if err := apiRequest(ctx, nc, "$JS.API.STREAM.INFO."+name, struct{}{}, &info); err != nil {
		return err
	}
	info.Config["num_replicas"] = json.RawMessage(fmt.Sprint(replicas))
	var updated struct{}
	return WhileClusterForms(ctx, true, func(ctx context.Context) error {
		return apiRequest(ctx, nc, "$JS.API.STREAM.UPDATE."+name, info.Config, &updated)
	})
}

// awaitReplicas polls until stream name has a leader and replicas-1
// current followers, or deadline.
func awaitReplicas(ctx context.Context, js jetstream.JetStream, name string, replicas int, deadline time.Time) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := js.Stream(ctx, name)
		if err == nil && current(st.CachedInfo(), replicas) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replicas not current in time (%v)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// current reports whether info shows a leader and replicas-1 current
// followers.
func current(info *jetstream.StreamInfo, replicas int) bool {
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != replicas-1 {
		return false
	}
	for _, p := range info.Cluster.Replicas {
		if !p.Current {
			return false
		}
	}
	return true
}
