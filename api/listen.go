package api

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// LimitListener returns a listener that holds at most max connections of
// l open at once. A connection beyond the cap is accepted and reset at
// once, so its client fails fast instead of waiting in the kernel's
// accept queue, and the server keeps its file descriptors; as soon as a
// held connection closes (the server closes idle ones) a new one is
// served again. Refusals are logged at most once every 10 s.
func LimitListener(l net.Listener, max int) net.Listener {
	return &limitListener{Listener: l, max: int64(max)}
}

type limitListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refused atomic.Int64
	logged  atomic.Int64 // unix nanos of the last refusal log
}

// Open returns how many accepted connections are open.
func (l *limitListener) Open() int64 { return l.open.Load() }

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset: the client learns at once
		}
		c.Close()
		n := l.refused.Add(1)
		if now, last := time.Now().UnixNano(), l.logged.Load(); now-last >= int64(10*time.Second) && l.logged.CompareAndSwap(last, now) {
			slog.Warn("connection refused: at --max-conns", "max_conns", l.max, "refused_total", n)
		}
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
