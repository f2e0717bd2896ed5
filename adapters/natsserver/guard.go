package natsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits on what readers may create through the guard.
const (
	maxGuardedConsumers = 1024            // ephemeral consumers alive at once, all readers together
	maxInactive         = time.Hour       // a reader's consumer is gone this long after its last pull
	maxGuardRequest     = 64 << 10        // bytes of one API request
	guardTimeout        = 5 * time.Second // for the requests the guard makes itself
)

// guard is the JetStream API of NATS users. Subject permissions cannot
// make JetStream safe for an untrusted client, for two reasons this code
// exists for:
//
//   - Every JetStream API request names its reply subject, and the server
//     publishes the response there in the hub's account. A reply of
//     ev.<anything> is stored in EVENTS like an event: a client allowed
//     only $JS.API.STREAM.INFO.EVENTS can append to the store. So users
//     get no $JS.API subject at all, and the guard forwards only requests
//     whose reply is a registered user's inbox.
//   - Which consumer a request creates, and whether it is durable or
//     updates an existing one, is in its JSON body. A client allowed
//     $JS.API.CONSUMER.CREATE.EVENTS.> can rewrite the hub's reaction
//     durables (their filter, say) or pull their messages away. So the
//     guard reads the body: a reader creates only ephemeral pull consumers
//     without acks, never over an existing one, and uses only the
//     consumers it created.
//
// Readers reach it as the JetStream domain ReaderDomain, ops users as
// OpsDomain; stream, the event store's (Config.EventsStream), is the only
// one readers may read. It is safe for concurrent use.
type guard struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	users  *Users
	stream string
	log    *slog.Logger

	mu    sync.Mutex
	owned map[string]struct{} // consumers of stream created through the guard
}

// startGuard subscribes the guard on an in-process connection of its own,
// which closes when the server shuts down.
func startGuard(s *server.Server, users *Users, stream string) (*guard, error) {
	nc, err := nats.Connect("", nats.InProcessServer(s), nats.Name("tideline-guard"), nats.NoReconnect())
	if err != nil {
		return nil, fmt.Errorf("nats guard: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats guard: %w", err)
	}
	g := &guard{nc: nc, js: js, users: users, stream: stream, log: users.log, owned: map[string]struct{}{}}
	for prefix, serve := range map[string]nats.MsgHandler{
		"$JS." + ReaderDomain + ".API.": g.serveReader,
		"$JS." + OpsDomain + ".API.":    g.serveOps,
	} {
		if _, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
			op := strings.TrimPrefix(m.Subject, prefix)
			if !g.replyOK(m.Reply) {
				g.log.Warn("nats api request dropped: reply is not a user's inbox", "op", op, "reply", m.Reply)
				return
			}
			if len(m.Data) > maxGuardRequest {
				g.deny(m, op, "request too large")
				return
			}
			serve(&nats.Msg{Subject: op, Reply: m.Reply, Data: m.Data})
		}); err != nil {
			nc.Close()
			return nil, fmt.Errorf("nats guard: %w", err)
		}
	}
	if err := nc.Flush(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats guard: %w", err)
	}
	return g, nil
}

// replyOK accepts _INBOX.<active user>.<token...>: where a user, and only
// that user, may receive.
func (g *guard) replyOK(reply string) bool {
	rest, ok := strings.CutPrefix(reply, "_INBOX.")
	if !ok || strings.ContainsAny(reply, "*> \t\r\n") {
		return false
	}
	name, tail, ok := strings.Cut(rest, ".")
	if !ok || tail == "" || strings.HasSuffix(tail, ".") || strings.Contains(tail, "..") {
		return false
	}
	_, ok = g.users.active(name)
	return ok
}

// serveReader handles one reader request; m.Subject is the API operation
// (what follows $JS.<domain>.API.).
func (g *guard) serveReader(m *nats.Msg) {
	op, stream := m.Subject, g.stream
	t := strings.Split(op, ".")
	switch {
	case op == "STREAM.INFO."+stream,
		op == "STREAM.MSG.GET."+stream,
		op == "DIRECT.GET."+stream,
		strings.HasPrefix(op, "DIRECT.GET."+stream+"."):
		g.forward(m, m.Data)
	case len(t) >= 4 && t[0] == "CONSUMER" && t[1] == "CREATE" && t[2] == stream:
		g.create(m, t[3])
	case len(t) == 4 && t[0] == "CONSUMER" && t[1] == "INFO" && t[2] == stream && g.isOwned(t[3]):
		g.forward(m, m.Data)
	case len(t) == 4 && t[0] == "CONSUMER" && t[1] == "DELETE" && t[2] == stream && g.isOwned(t[3]):
		g.disown(t[3])
		g.forward(m, m.Data)
	case len(t) == 5 && t[0] == "CONSUMER" && t[1] == "MSG" && t[2] == "NEXT" && t[3] == stream && g.isOwned(t[4]):
		g.forward(m, m.Data)
	default:
		g.deny(m, op, "not allowed for role "+RoleReader)
	}
}

// serveOps handles one ops request: information and listings, no data.
func (g *guard) serveOps(m *nats.Msg) {
	op := m.Subject
	t := strings.Split(op, ".")
	switch {
	case op == "INFO", op == "STREAM.NAMES", op == "STREAM.LIST":
		g.forward(m, m.Data)
	case len(t) == 3 && t[0] == "STREAM" && t[1] == "INFO":
		g.forward(m, nil) // no subjects_filter: subject names carry ids
	case len(t) == 3 && t[0] == "CONSUMER" && (t[1] == "NAMES" || t[1] == "LIST"):
		g.forward(m, m.Data)
	case len(t) == 4 && t[0] == "CONSUMER" && t[1] == "INFO":
		g.forward(m, nil)
	default:
		g.deny(m, op, "not allowed for role "+RoleOps)
	}
}

// forward sends the request on to JetStream with the user's reply: the
// answer (or the messages of a pull) go straight to the user.
func (g *guard) forward(m *nats.Msg, data []byte) {
	if err := g.nc.PublishMsg(&nats.Msg{Subject: "$JS.API." + m.Subject, Reply: m.Reply, Data: data}); err != nil {
		g.log.Error("nats guard forward", "op", m.Subject, "err", err)
	}
}

// Fields of a consumer config a reader may set: what an ordered consumer
// or a plain ephemeral pull consumer needs. Anything else (durable_name,
// deliver_subject, priority groups, pause, fields newer than this list)
// is refused.
var readerConsumerFields = map[string]bool{
	"name": true, "description": true, "deliver_policy": true, "opt_start_seq": true,
	"opt_start_time": true, "ack_policy": true, "filter_subject": true, "filter_subjects": true,
	"replay_policy": true, "max_waiting": true, "headers_only": true, "max_batch": true,
	"max_expires": true, "max_bytes": true, "inactive_threshold": true, "num_replicas": true,
	"mem_storage": true, "metadata": true,
}

// create checks a reader's consumer creation and makes it with action
// "create", so an existing consumer (a hub durable, another reader's) is
// never updated; the consumer is the reader's only once JetStream says it
// was created.
func (g *guard) create(m *nats.Msg, name string) {
	req, err := readerConsumerRequest(m.Data, name)
	if err != nil {
		g.deny(m, m.Subject, err.Error())
		return
	}
	if !g.reserve() {
		g.deny(m, m.Subject, fmt.Sprintf("too many reader consumers (%d)", maxGuardedConsumers))
		return
	}
	resp, err := g.nc.Request("$JS.API."+m.Subject, req, guardTimeout)
	if err != nil {
		g.deny(m, m.Subject, "jetstream unavailable")
		return
	}
	var res struct {
		Name  string          `json:"name"`
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(resp.Data, &res) == nil && len(res.Error) == 0 && res.Name == name {
		g.mu.Lock()
		g.owned[name] = struct{}{}
		g.mu.Unlock()
	}
	if err := g.nc.Publish(m.Reply, resp.Data); err != nil {
		g.log.Error("nats guard reply", "op", m.Subject, "err", err)
	}
}

// readerConsumerRequest validates a consumer create request's body and
// returns it with action "create".
func readerConsumerRequest(body []byte, name string) ([]byte, error) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, errors.New("bad request")
	}
	for k := range req {
		if k != "stream_name" && k != "config" && k != "action" && k != "pedantic" {
			return nil, fmt.Errorf("request field %q not allowed", k)
		}
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(req["config"], &cfg); err != nil || cfg == nil {
		return nil, errors.New("bad consumer config")
	}
	for k := range cfg {
		if !readerConsumerFields[k] {
			return nil, fmt.Errorf("consumer config field %q not allowed (readers create ephemeral pull consumers)", k)
		}
	}
	var c struct {
		Name     *string `json:"name"`
		Ack      *string `json:"ack_policy"`
		Replicas int     `json:"num_replicas"`
		Inactive int64   `json:"inactive_threshold"`
	}
	if err := json.Unmarshal(req["config"], &c); err != nil {
		return nil, errors.New("bad consumer config")
	}
	switch {
	case c.Name != nil && *c.Name != name:
		return nil, errors.New("consumer name does not match the subject")
	case c.Ack == nil || *c.Ack != "none":
		return nil, errors.New(`ack_policy must be "none"`)
	case c.Replicas > 1:
		return nil, errors.New("num_replicas must be at most 1")
	case c.Inactive < 0 || time.Duration(c.Inactive) > maxInactive:
		return nil, fmt.Errorf("inactive_threshold must be at most %v", maxInactive)
	}
	req["action"] = json.RawMessage(`"create"`)
	return json.Marshal(req)
}

func (g *guard) isOwned(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.owned[name]
	return ok
}

func (g *guard) disown(name string) {
	g.mu.Lock()
	delete(g.owned, name)
	g.mu.Unlock()
}

// reserve reports whether one more reader consumer may be created: at the
// limit, it forgets the ones JetStream has since removed (inactive).
func (g *guard) reserve() bool {
	g.mu.Lock()
	n := len(g.owned)
	g.mu.Unlock()
	if n < maxGuardedConsumers {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), guardTimeout)
	defer cancel()
	st, err := g.js.Stream(ctx, g.stream)
	if err != nil {
		return false
	}
	alive := map[string]struct{}{}
	names := st.ConsumerNames(ctx)
	for name := range names.Name() {
		alive[name] = struct{}{}
	}
	if names.Err() != nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for name := range g.owned {
		if _, ok := alive[name]; !ok {
			delete(g.owned, name)
		}
	}
	return len(g.owned) < maxGuardedConsumers
}

// deny answers a refused request the way its client expects an error:
// a status header for Direct Get, a JetStream API error otherwise.
func (g *guard) deny(m *nats.Msg, op, why string) {
	g.log.Warn("nats api request refused", "op", op, "reply", m.Reply, "why", why)
	desc := "tideline: " + op + ": " + why
	out := &nats.Msg{Subject: m.Reply}
	if strings.HasPrefix(op, "DIRECT.GET") {
		out.Header = nats.Header{"Status": {"403"}, "Description": {desc}}
	} else {
		out.Data, _ = json.Marshal(map[string]any{
			"type":  "io.nats.jetstream.api.v1.error",
			"error": map[string]any{"code": 403, "description": desc},
		})
	}
	if err := g.nc.PublishMsg(out); err != nil {
		g.log.Error("nats guard reply", "op", op, "err", err)
	}
}
