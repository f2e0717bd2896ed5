package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/internal/dirlock"
	"github.com/tideline/tideline/wire"
)

// awaitPoll is how often a node awaiting an import asks the cluster
// whether it is done, and awaitTry bounds each ask.
const (
	awaitPoll = 250 * time.Millisecond
	awaitTry  = 2 * time.Second
)

// errAwaitingImport is the health verdict of a node awaiting an import.
var errAwaitingImport = errors.New("awaiting 'tideline cluster-import': the cluster has no store yet (--await-import)")

// awaitImport serves the probes (live, not ready) on Config.Listen and
// waits until 'tideline cluster-import' has copied a store into the
// cluster: the events stream exists and wire.ImportingStream does not.
// It returns early, with an error, when ctx ends or Close is called.
func (m *Main) awaitImport(ctx context.Context) error {
	c := &m.Config
	// Close may end the wait from the moment the probes answer, so the
	// wait can be ended before they are served.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	m.awaitMu.Lock()
	m.awaitStop = stop
	m.awaitMu.Unlock()
	defer func() {
		m.awaitMu.Lock()
		m.awaitStop = nil
		m.awaitMu.Unlock()
	}()
	if err := m.listen(); err != nil {
		return err
	}
	probes, err := api.New(api.Config{Tokens: m.Tokens, ReadyLag: c.ReadyLag, Reflection: api.ReflectionOff,
		Health: func(context.Context) error { return errAwaitingImport }})
	if err != nil {
		return err
	}
	m.api = probes
	m.serve(probes.Handler())

	js, err := natsjs.New(m.nc)
	if err != nil {
		return fmt.Errorf("await import: %w", err)
	}
	stream := cmp.Or(c.EventsStream, wire.EventsStream)
	c.Logger.Info("waiting for 'tideline cluster-import' to copy a store into the cluster (--await-import); not ready until then",
		"stream", stream, "api", "http://"+m.Addr())
	tick := time.NewTicker(awaitPoll)
	defer tick.Stop()
	for {
		err := imported(ctx, js, stream)
		if err == nil && ctx.Err() == nil {
			c.Logger.Info("the cluster has the imported store; opening it", "stream", stream)
			return nil
		}
		c.Logger.Debug("awaiting the import", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("await import: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// imported returns nil once js has stream and no wire.ImportingStream,
// else why not. Asked in that order, a copy cannot slip in between:
// cluster-import creates its stream before the events stream and removes
// it last.
func imported(ctx context.Context, js natsjs.JetStream, stream string) error {
	ctx, cancel := context.WithTimeout(ctx, awaitTry)
	defer cancel()
	if _, err := js.Stream(ctx, stream); err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	_, err := js.Stream(ctx, wire.ImportingStream)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil
	}
	if err == nil {
		return errors.New("an import is under way")
	}
	return fmt.Errorf("stream %s: %w", wire.ImportingStream, err)
}

// endAwait ends Run's wait for an import, if it waits, and returns a
// channel closed once Run has returned; else nil.
func (m *Main) endAwait() <-chan struct{} {
	m.awaitMu.Lock()
	defer m.awaitMu.Unlock()
	if m.awaitStop == nil {
		return nil
	}
	m.awaitStop()
	m.awaitStop = nil
	m.awaitEnded = make(chan struct{})
	return m.awaitEnded
}

// listen opens the API's listener on Config.Listen, once.
func (m *Main) listen() error {
	if m.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", m.Config.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	m.ln = ln
	return m.lock.Update(dirlock.Holder{PID: os.Getpid(), Program: "tideline serve", Addr: m.Addr(), Started: m.lock.Holder().Started})
}

// serve serves h on the API's listener: it starts the HTTP server, or
// hands it h when it serves already.
func (m *Main) serve(h http.Handler) {
	first := m.handler.Load() == nil
	m.handler.Store(&h)
	if !first {
		return
	}
	m.http = api.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*m.handler.Load()).ServeHTTP(w, r)
	}))
	requests, endRequests := context.WithCancel(context.Background())
	m.http.BaseContext = func(net.Listener) context.Context { return requests }
	m.endRequests = endRequests
	if m.Config.IdleTimeout > 0 {
		m.http.IdleTimeout = m.Config.IdleTimeout
	}
	ln := api.LimitListener(m.ln, cmp.Or(m.Config.MaxConns, api.DefaultMaxConns))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.failed <- fmt.Errorf("http server: %w", err)
		}
	}()
}
