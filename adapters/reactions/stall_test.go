package reactions_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/logtest"
	"github.com/tideline/tideline/internal/poll"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/wire"
)

// stallServer hands out in-process connections whose reads a test can
// stall: while stalled, what the server sends piles up, and when the
// stall ends the client reads it all in one go, as after a client starved
// of CPU or a connection busy with a bulk read.
type stallServer struct {
	*server.Server
	mu    sync.Mutex
	conns []*stallConn
}

func (s *stallServer) InProcessConn() (net.Conn, error) {
	c, err := s.Server.InProcessConn()
	if err != nil {
		return nil, err
	}
	sc := &stallConn{Conn: c}
	sc.cond = sync.NewCond(&sc.mu)
	go sc.pump()
	s.mu.Lock()
	s.conns = append(s.conns, sc)
	s.mu.Unlock()
	return sc, nil
}

// stall stalls (on) or releases every connection.
func (s *stallServer) stall(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.mu.Lock()
		c.stalled = on
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// pending reports whether what a stalled connection holds contains sub.
func (s *stallServer) pending(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.mu.Lock()
		found := bytes.Contains(c.buf.Bytes(), []byte(sub))
		c.mu.Unlock()
		if found {
			return true
		}
	}
	return false
}

type stallConn struct {
	net.Conn
	mu      sync.Mutex
	cond    *sync.Cond
	buf     bytes.Buffer
	stalled bool
	err     error
}

// pump reads from the server as it sends, stalled or not.
func (c *stallConn) pump() {
	p := make([]byte, 64<<10)
	for {
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		c.buf.Write(p[:n])
		if err != nil {
			c.err = err
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *stallConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.stalled && c.err == nil || c.buf.Len() == 0 && c.err == nil {
		c.cond.Wait()
	}
	if c.buf.Len() > 0 {
		return c.buf.Read(p)
	}
	return 0, c.err
}

// TestReactionAfterAStall: a reaction's client stalls while its pull
// waits, long enough for the pull's heartbeats to pile up behind it, and
// a commit comes meanwhile. When the stall ends all of it arrives at
// once: the commit is handled at once, not redelivered after AckWait, and
// the client drops nothing on the way (a pull's buffer of one message
// would drop the commit behind a heartbeat).
func TestReactionAfterAStall(t *testing.T) {
	e := setup(t)
	ss := &stallServer{Server: e.ns}
	logs := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	nc, err := nats.Connect("", nats.InProcessServer(ss), natsserver.LogAsyncErrors(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	t.Cleanup(func() { ss.stall(false) })
	handled := make(chan time.Time, 1)
	eng, err := reactions.New(context.Background(), reactions.Config{Conn: nc, Decode: wire.DecodeCommit, Logger: log, AckWait: 30 * time.Second},
		reactions.Reaction{Name: "stalled", Subjects: []string{"ev.safety.>"}, Handle: func(context.Context, es.Commit) error {
			select {
			case handled <- time.Now():
			default:
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, eng)

	ss.stall(true)
	time.Sleep(4300 * time.Millisecond) // the stall itself: two of a pull's heartbeats (every 2 s)
	if _, err := e.store.Append(context.Background(), es.StreamID{Context: "safety", Type: "rider", ID: "r1"},
		[]proto.Message{&safetyv1.DangerDetected{EventId: "e1"}}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !ss.pending("ev.safety.rider.r1") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	released := time.Now()
	ss.stall(false)
	select {
	case at := <-handled:
		if d := at.Sub(released); d > 3*time.Second {
			t.Errorf("the commit was handled %v after the stall ended", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the commit was not handled within 15 s of the stall's end (AckWait is 30 s)")
	}
	if n := logs.Count("slow consumer"); n > 0 {
		t.Errorf("the client dropped messages %d times:\n%s", n, logs)
	}
}

// TestReactionWarnsWhenItCannotPull: with its consumer gone a reaction
// says so, once, and keeps trying; once the consumer is back it says so
// too, and handles what comes.
func TestReactionWarnsWhenItCannotPull(t *testing.T) {
	e := setup(t)
	nc, err := natsserver.Connect(e.ns, "reactions")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	logs := &logtest.Buffer{}
	handled := make(chan struct{}, 1)
	eng, err := reactions.New(context.Background(), reactions.Config{Conn: nc, Decode: wire.DecodeCommit, Logger: slog.New(slog.NewTextHandler(logs, nil))},
		reactions.Reaction{Name: "gone", Subjects: []string{"ev.safety.>"}, Handle: func(context.Context, es.Commit) error {
			select {
			case handled <- struct{}{}:
			default:
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, eng)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(context.Background(), e.store.StreamName(), "reaction-gone")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	if err := js.DeleteConsumer(context.Background(), e.store.StreamName(), "reaction-gone"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "a warning that the reaction cannot pull", func() bool { return logs.Count("reaction cannot pull; trying again") > 0 })
	if _, err := js.CreateConsumer(context.Background(), e.store.StreamName(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Append(context.Background(), es.StreamID{Context: "safety", Type: "rider", ID: "r1"},
		[]proto.Message{&safetyv1.DangerDetected{EventId: "e1"}}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-time.After(10 * time.Second):
		t.Fatalf("the commit was not handled once the consumer was back:\n%s", logs)
	}
	if n := logs.Count("reaction cannot pull; trying again"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs)
	}
	if n := logs.Count("reaction pulls again"); n != 1 {
		t.Errorf("%d notes that it pulls again, want 1:\n%s", n, logs)
	}
}
