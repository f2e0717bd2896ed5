package natsserver

import (
	"testing"
	"time"
)

func TestRefusalsLogOncePerKeyPerInterval(t *testing.T) {
	var r refusals
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	type step struct {
		key   string
		at    time.Duration
		n     int
		logIt bool
	}
	steps := []step{
		{"A", 0, 1, true}, // first: at once
		{"B", 0, 1, true}, // another key: its own line
		{"A", time.Second, 0, false},
		{"A", 29 * time.Second, 0, false},
		{"A", 30 * time.Second, 3, true}, // 30 s on: one line for the 3 since
		{"A", 31 * time.Second, 0, false},
		{"B", 45 * time.Second, 1, true},
		{"A", 60 * time.Second, 2, true},
	}
	for i, s := range steps {
		n, logIt := r.note(s.key, t0.Add(s.at))
		if n != s.n || logIt != s.logIt {
			t.Fatalf("step %d (%s at %v): note = %d, %v; want %d, %v", i, s.key, s.at, n, logIt, s.n, s.logIt)
		}
	}
	if got := r.total.Load(); got != int64(len(steps)) {
		t.Fatalf("total %d, want %d", got, len(steps))
	}
	for i := range maxRefusalKeys + 10 { // made-up keys do not grow it without bound
		r.note(string(rune('a'+i%26))+time.Duration(i).String(), t0)
	}
	if len(r.byKey) > maxRefusalKeys {
		t.Fatalf("%d keys remembered, want at most %d", len(r.byKey), maxRefusalKeys)
	}
}
