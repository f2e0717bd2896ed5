package jetstream

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// snapshotStall is how long reading a stored object may go without a
// byte before it is given up. A cluster node just back (a restart, a
// healed partition) may still hold an old version of the object's
// metadata, naming chunks its peers have since purged: the read would
// wait for them until its deadline, the model not restored meanwhile.
var snapshotStall = 10 * time.Second

// errRetryRead marks a snapshot read that may succeed if tried again:
// it stalled (see snapshotStall), or a segment its manifest names is
// not found (the node's replica may be behind).
var errRetryRead = errors.New("not readable yet")

// errStalled marks an object read given up for want of data.
var errStalled = fmt.Errorf("%w: stalled", errRetryRead)

// readObject reads res whole and checks its size against its metadata,
// giving up (errStalled) when no byte comes for snapshotStall. It closes
// res; after a stall, once the read's context ends (a read blocked on the
// object cannot be cut short before).
func readObject(res jetstream.ObjectResult) ([]byte, error) {
	info, err := res.Info()
	if err != nil {
		res.Close()
		return nil, err
	}
	stall := snapshotStall
	r := &progressReader{r: res}
	type result struct {
		data []byte
		err  error
	}
	read := make(chan result, 1)
	go func() {
		defer res.Close()
		data, err := io.ReadAll(r)
		read <- result{data, err}
	}()
	tick := time.NewTicker(stall / 10)
	defer tick.Stop()
	last, since := int64(0), time.Now()
	for {
		select {
		case got := <-read:
			if got.err != nil {
				return nil, fmt.Errorf("read %s: %w", info.Name, got.err)
			}
			if uint64(len(got.data)) != info.Size {
				return nil, fmt.Errorf("read %s: %d of %d bytes", info.Name, len(got.data), info.Size)
			}
			return got.data, nil
		case <-tick.C:
			if n := r.n.Load(); n != last {
				last, since = n, time.Now()
			} else if time.Since(since) >= stall {
				return nil, fmt.Errorf("read %s: %w: no data for %v after %d of %d bytes", info.Name, errStalled, stall, n, info.Size)
			}
		}
	}
}

// progressReader counts the bytes read through it.
type progressReader struct {
	r io.Reader
	n atomic.Int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	return n, err
}
