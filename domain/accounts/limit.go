package accounts

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/tideline/tideline/domain/es"
)

// Limiter counts attempts per key in a sliding window: at most Max in
// any Window. Safe for concurrent use. Its memory is bounded by the keys
// seen within one window (older ones are dropped when the map grows).
type Limiter struct {
	Max    int
	Window time.Duration

	mu   sync.Mutex
	hits map[string][]time.Time
}

// NewLimiter returns a limiter of max attempts per window.
func NewLimiter(max int, window time.Duration) *Limiter {
	return &Limiter{Max: max, Window: window, hits: map[string][]time.Time{}}
}

// Allow records an attempt for key at now and reports whether it is
// within the limit; if not, retry says how long until one is.
func (l *Limiter) Allow(key string, now time.Time) (ok bool, retry time.Duration) {
	return l.take(key, now, true)
}

// Check is Allow without recording the attempt (see Record).
func (l *Limiter) Check(key string, now time.Time) (ok bool, retry time.Duration) {
	return l.take(key, now, false)
}

// Record records an attempt for key at now.
func (l *Limiter) Record(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hits[key] = append(l.hits[key], now)
}

func (l *Limiter) take(key string, now time.Time, record bool) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.hits) > 100_000 {
		for k, hs := range l.hits {
			if len(hs) == 0 || now.Sub(hs[len(hs)-1]) >= l.Window {
				delete(l.hits, k)
			}
		}
	}
	hs := l.hits[key]
	i := 0
	for i < len(hs) && now.Sub(hs[i]) >= l.Window {
		i++
	}
	hs = hs[i:]
	l.hits[key] = hs
	if len(hs) >= l.Max {
		return false, hs[0].Add(l.Window).Sub(now)
	}
	if record {
		l.hits[key] = append(hs, now)
	}
	return true, 0
}

// tooMany is the ResourceExhausted of a rate limit: "too many <what>:
// retry in N s", with RetryAfter the same N seconds.
func tooMany(what string, retry time.Duration) error {
	n := retrySeconds(retry)
	return &es.Error{Kind: es.ResourceExhausted, Message: fmt.Sprintf("too many %s: retry in %d s", what, n),
		RetryAfter: time.Duration(n) * time.Second}
}

// retrySeconds rounds a wait up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
