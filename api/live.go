package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
)

// liveMinGap spaces a live stream's updates: the first advance after a
// quiet spell is sent at once, a burst's later ones fold into one update
// at most this long after the previous. With many streams open the gap
// widens so that all of them together send at most livePushes updates a
// second (liveGap): 50 ms up to 200 streams, 250 ms at 1,000, 2.5 s at
// 10,000. Every write changing every watcher's answer then costs the
// server a bounded amount of pushing, however many watch.
const (
	liveMinGap = 50 * time.Millisecond
	livePushes = 4000
)

// liveGap is the gap between a stream's updates with open streams open.
func liveGap(open int64) time.Duration {
	return max(liveMinGap, time.Duration(open)*time.Second/livePushes)
}

// live runs a live stream (a watch) until the client leaves, the server
// closes, or the client stops reading. It sends what next returns (none
// when nothing changed), then waits for feed to advance, or for refresh
// to pass when it is not zero, and calls next again, at most once per
// liveGap. So a watcher costs the write path nothing and a burst of
// events costs it one update. A Send the client does not take within
// rt.SendTimeout ends the stream with ResourceExhausted (see sendWithin).
func live[T any](ctx context.Context, rt *runtime, feed advancing, refresh time.Duration, s *connect.ServerStream[T], next func(now time.Time) []*T) error {
	release, err := rt.liveSlot()
	if err != nil {
		return err
	}
	defer release()
	var tick <-chan time.Time
	if refresh > 0 {
		t := time.NewTicker(refresh)
		defer t.Stop()
		tick = t.C
	}
	for {
		advanced := feed.Advanced() // before reading, so an advance in between is not missed
		at := time.Now()
		if err := sendWithin(ctx, rt.SendTimeout, s, next(at)...); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-rt.closing:
			return nil
		case <-tick:
			continue
		case <-advanced:
		}
		if wait := liveGap(rt.live.Load()) - time.Since(at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-rt.closing:
				t.Stop()
				return nil
			case <-t.C:
			}
		}
	}
}

// advancing is what a live stream waits on: a read model, or a shared
// answer (sharedAnswers).
type advancing interface {
	Advanced() <-chan struct{}
}

// liveSlot takes one of rt.MaxLiveStreams; release gives it back.
func (rt *runtime) liveSlot() (release func(), err error) {
	if rt.live.Add(1) > int64(rt.MaxLiveStreams) {
		rt.live.Add(-1)
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("server has %d live streams open, its limit; retry later", rt.MaxLiveStreams))
	}
	return func() { rt.live.Add(-1) }, nil
}

// liveWriter is the response of a server-streaming call, set up by the
// gate. sendWithin holds its flushes while it sends one update's
// messages, so they leave in one write rather than one each, and bounds
// that write with a deadline.
type liveWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	hold bool
}

func (w *liveWriter) Flush() {
	if !w.hold {
		w.rc.Flush()
	}
}

func (w *liveWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type liveWriterKey struct{}

// sendWithin sends msgs as one write, giving the client at most bound to
// take them: the response's write deadline resets the stream when the
// client's flow-control window stays full that long. It returns
// ResourceExhausted then, so a client that stopped reading holds neither
// a goroutine nor buffers beyond bound.
func sendWithin[T any](ctx context.Context, bound time.Duration, s *connect.ServerStream[T], msgs ...*T) error {
	if len(msgs) == 0 {
		return nil
	}
	w, _ := ctx.Value(liveWriterKey{}).(*liveWriter)
	if w == nil { // not served through the gate
		for _, m := range msgs {
			if err := s.Send(m); err != nil {
				return err
			}
		}
		return nil
	}
	start := time.Now()
	// An error means the writer has no deadlines; the write is then unbounded.
	_ = w.rc.SetWriteDeadline(start.Add(bound))
	w.hold = true
	var err error
	for _, m := range msgs {
		if err = s.Send(m); err != nil {
			break
		}
	}
	w.hold = false
	if err == nil {
		err = w.rc.Flush()
	}
	_ = w.rc.SetWriteDeadline(time.Time{})
	switch {
	case err == nil:
		return nil
	case time.Since(start) >= bound:
		slog.InfoContext(ctx, "live stream dropped: client not reading", "caller", caller(ctx).String(), "bound", bound)
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("stream dropped: the client took no update for %s", bound))
	}
	return connect.NewError(connect.CodeCanceled, fmt.Errorf("client gone: %w", err))
}
