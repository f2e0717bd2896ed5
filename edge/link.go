package edge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"
)

// linkLogEvery is how often a link problem that goes on is logged again,
// with how many attempts failed the same way since.
const linkLogEvery = 30 * time.Second

// linkLog is the embedded server's logger. nats-server says why the leaf
// link to the hub fails in its own words, one line per attempt; linkLog
// turns that into one line per problem saying what is wrong and what to
// check (the hub refuses the device's key, nothing listens there, the
// address is a NATS client port or a web port, ...), repeated at most
// every linkLogEvery with a count of the failed attempts. Other errors
// and warnings of the local server pass through; its notices do not.
// Safe for concurrent use.
type linkLog struct {
	log   *slog.Logger
	host  string // the hub's host:port
	every time.Duration
	now   func() time.Time
	// probe reports whether addr answers HTTP; it runs on its own
	// goroutine (probes), until ctx ends.
	probe  func(ctx context.Context, addr string) bool
	ctx    context.Context
	probes sync.WaitGroup

	mu      sync.Mutex
	key     string    // the current problem; "" while the link is fine
	what    string    // its description, once logged
	logged  time.Time // when it was last logged
	repeats int       // attempts that failed the same way since
	// explained holds the leaf connections (lid) whose failure was logged
	// from an error: the notice of their closing says nothing new.
	explained map[string]bool
}

// newLinkLog returns the logger of a link to host; its probes end with ctx.
func newLinkLog(ctx context.Context, log *slog.Logger, host string) *linkLog {
	return &linkLog{log: log, host: host, every: linkLogEvery, now: time.Now, probe: speaksHTTP, ctx: ctx, explained: map[string]bool{}}
}

// The server's messages about the leaf link (server/leafnode.go,
// server/client.go); connection messages start "HOST:PORT - lid:N - ".
var (
	dialFailed = regexp.MustCompile(`^Error trying to connect as leafnode to remote server "[^"]*" \(attempt \d+\): (.*)$`)
	leafError  = regexp.MustCompile(`lid:(\d+) - Leafnode Error '(.*)'$`)
	wrongPort  = regexp.MustCompile(`lid:(\d+) - attempted to connect to wrong port`)
	leafClosed = regexp.MustCompile(`lid:(\d+) - Leafnode connection closed: (.*)$`)
)

// problem is a link failure: a key for counting repeats, what the
// operator reads, and what to check.
type problem struct{ key, what, check string }

const checkLeafPort = "point --hub at the hub's --leaf-listen address, e.g. nats-leaf://HOST:7422"

// classify explains an error the server logged about the leaf link, and
// returns the connection it concerns ("" for a failed dial).
func (l *linkLog) classify(msg string) (p problem, lid string, ok bool) {
	h := l.host
	if m := dialFailed.FindStringSubmatch(msg); m != nil {
		switch err := m[1]; {
		case strings.Contains(err, "connection refused"):
			return problem{"refused", "connection refused by " + h, "nothing listens there: is the hub running, with --leaf-listen on this port?"}, "", true
		case strings.Contains(err, "no such host"):
			return problem{"no-host", "unknown host in --hub " + h, "the name does not resolve: check its spelling and the device's DNS"}, "", true
		case strings.Contains(err, "i/o timeout"):
			return problem{"timeout", "no answer from " + h + " (timeout)", "the network is down, a firewall drops the connection, or the address is wrong"}, "", true
		case strings.Contains(err, "network is unreachable"), strings.Contains(err, "no route to host"):
			return problem{"unreachable", h + " is unreachable", "the device has no route there: is its network up?"}, "", true
		default:
			return problem{"dial", "cannot connect to " + h + ": " + err, "check --hub"}, "", true
		}
	}
	if m := leafError.FindStringSubmatch(msg); m != nil {
		if strings.EqualFold(m[2], "Authorization Violation") {
			return problem{"unauthorized", "the hub refuses this device (nats: authorization violation)",
				"the device was revoked (tideline device revoke), is not registered on this hub, or --creds is another hub's: register it with tideline device add"}, m[1], true
		}
		return problem{"hub-error:" + m[2], "the hub refuses the link: " + m[2], "see the hub's log"}, m[1], true
	}
	if m := wrongPort.FindStringSubmatch(msg); m != nil {
		return problem{"client-port", h + " is a NATS client port, not the hub's leaf port", checkLeafPort}, m[1], true
	}
	return problem{}, "", false
}

func (l *linkLog) Errorf(format string, v ...any) {
	l.other(slog.LevelError, fmt.Sprintf(format, v...))
}

func (l *linkLog) Warnf(format string, v ...any) { l.other(slog.LevelWarn, fmt.Sprintf(format, v...)) }

func (l *linkLog) Fatalf(format string, v ...any) {
	l.log.Error("local nats server: "+fmt.Sprintf(format, v...), "component", "nats")
}

func (l *linkLog) Debugf(string, ...any) {}

func (l *linkLog) Tracef(string, ...any) {}

func (l *linkLog) other(level slog.Level, msg string) {
	p, lid, ok := l.classify(msg)
	if !ok {
		l.log.Log(context.Background(), level, "local nats server: "+msg, "component", "nats")
		return
	}
	if lid != "" {
		l.mu.Lock()
		if len(l.explained) > 64 { // their closing notices never came
			clear(l.explained)
		}
		l.explained[lid] = true
		l.mu.Unlock()
	}
	if l.attempt(p.key) {
		l.emit(p)
	}
}

// Noticef catches a leaf connection closed before the peer said a word
// of NATS (its notice names no remote server) with no error to explain
// it: the hub's address is not a NATS port. A probe tells whether it is
// a web server.
func (l *linkLog) Noticef(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	m := leafClosed.FindStringSubmatch(msg)
	if m == nil || strings.Contains(m[2], " - Remote: ") || l.ctx.Err() != nil { // named hub, or shutting down
		return
	}
	l.mu.Lock()
	explained := l.explained[m[1]]
	delete(l.explained, m[1])
	l.mu.Unlock()
	if explained || !l.attempt("not-nats") {
		return
	}
	l.probes.Add(1)
	go func() {
		defer l.probes.Done()
		p := problem{"not-nats", l.host + " is not a NATS leaf port: it closed the connection without a NATS greeting (" + m[2] + ")", checkLeafPort}
		if l.probe(l.ctx, l.host) {
			p.what = l.host + " speaks HTTP: it is a web port (the API's --listen?), not the hub's leaf port"
		}
		l.emit(p)
	}()
}

// attempt counts one failed attempt with problem key. It reports whether
// the problem is new (the caller logs it); a known one is logged again,
// with the count, once every l.every.
func (l *linkLog) attempt(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if key != l.key {
		l.key, l.what, l.logged, l.repeats = key, "", now, 0
		return true
	}
	l.repeats++
	if l.what != "" && now.Sub(l.logged) >= l.every {
		l.log.Warn("still no link to the hub: "+l.what, "hub", l.host, "attempts", l.repeats, "in", now.Sub(l.logged).Round(time.Second))
		l.logged, l.repeats = now, 0
	}
	return false
}

// emit logs p, unless the problem has changed meanwhile.
func (l *linkLog) emit(p problem) {
	l.mu.Lock()
	if l.key != p.key {
		l.mu.Unlock()
		return
	}
	l.what = p.what
	l.mu.Unlock()
	l.log.Warn("no link to the hub: "+p.what, "hub", l.host, "check", p.check)
}

// linkChanged records that the link came up or went down, and logs it.
func (l *linkLog) linkChanged(up bool) {
	l.mu.Lock()
	was := l.what
	l.key, l.what, l.repeats = "", "", 0
	l.mu.Unlock()
	switch {
	case up && was != "":
		l.log.Info("hub link up", "hub", l.host, "was", was)
	case up:
		l.log.Info("hub link up", "hub", l.host)
	default:
		l.log.Info("hub link lost: events are kept locally until it returns", "hub", l.host)
	}
}

// watch logs the link's changes until ctx ends.
func (l *linkLog) watch(ctx context.Context, linkUp func() bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	up := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now := linkUp(); now != up {
			up = now
			l.linkChanged(up)
		}
	}
}

// speaksHTTP reports whether addr answers an HTTP request within 2 s.
func speaksHTTP(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := c.Write([]byte("HEAD / HTTP/1.0\r\n\r\n")); err != nil {
		return false
	}
	b := make([]byte, 5)
	_, err = io.ReadFull(c, b)
	return err == nil && string(b) == "HTTP/"
}
