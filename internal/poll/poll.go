// Package poll awaits eventual consistency in tests: it checks a
// condition every few milliseconds until it holds or a deadline passes,
// instead of sleeping for a guessed time.
//
// It imports testing, so only tests may import it; production code must
// not.
package poll

import (
	"testing"
	"time"
)

// interval is how often a condition is checked.
const interval = 5 * time.Millisecond

// Until checks cond until it returns true and returns how long that took.
// If cond is still false after within, Until fails tb at once with
// "timed out after <within> waiting for <what>". cond runs on the calling
// goroutine, so it may itself fail tb.
func Until(tb testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	took, ok := wait(within, cond)
	if !ok {
		tb.Fatalf("timed out after %v waiting for %s", within, what)
	}
	return took
}

// Within reports whether cond returned true within d, checking it until
// then. It is for callers that must do something before failing (stop
// workers, report what they saw).
func Within(d time.Duration, cond func() bool) bool {
	_, ok := wait(d, cond)
	return ok
}

func wait(within time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			return time.Since(start), false
		}
		time.Sleep(interval)
	}
	return time.Since(start), true
}
