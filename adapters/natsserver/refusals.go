package natsserver

import (
	"sync"
	"sync/atomic"
	"time"
)

// refusalLogEvery is how often the hub logs again that it refuses the
// same device key: an agent retries about every second, forever.
const refusalLogEvery = 30 * time.Second

// refusals rate-limits the hub's "edge device refused" warning per key
// (the nkey a device presents): the first refusal is logged at once,
// later ones at most once per refusalLogEvery, with how many there were.
// The zero value is ready. Safe for concurrent use.
type refusals struct {
	total atomic.Int64
	mu    sync.Mutex
	byKey map[string]*refusalCount
}

type refusalCount struct {
	logged time.Time
	n      int // refusals since logged, the one logged included
}

// maxRefusalKeys bounds the keys remembered (a client may present any
// number of made-up keys).
const maxRefusalKeys = 4096

// note counts a refusal of key at now. It reports whether to log it, and
// how many refusals of key that line stands for (since the last line).
func (r *refusals) note(key string, now time.Time) (n int, log bool) {
	r.total.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.byKey[key]; ok {
		c.n++
		if now.Sub(c.logged) < refusalLogEvery {
			return 0, false
		}
		n = c.n
		c.logged, c.n = now, 0
		return n, true
	}
	if r.byKey == nil || len(r.byKey) >= maxRefusalKeys {
		r.byKey = map[string]*refusalCount{}
	}
	r.byKey[key] = &refusalCount{logged: now}
	return 1, true
}

// Refused returns how many leaf connections the registry has refused.
func (d *Devices) Refused() int64 { return d.refused.total.Load() }
