package edge_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge"
)

// Replays keep the trace's spacing and carry current times, but one
// faster than real time ends now: nothing is dated in the future, which
// the hub would refuse.
func TestReplayDatesNothingInTheFuture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.csv")
	if err := os.WriteFile(path, []byte("t,ax,ay,az,gx,gy,gz\n10,0,0,1,0,0,0\n60,0,0,1,0,0,0\n110,0,0,1,0,0,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	collect := func(speed float64) []time.Time {
		var got []time.Time
		r := &edge.Replay{Path: path, Speed: speed, Now: func() time.Time { return now }}
		if err := r.Run(context.Background(), func(s safety.Sample) error { got = append(got, s.T); return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := collect(0)
	want := []time.Time{now.Add(-100 * time.Second), now.Add(-50 * time.Second), now}
	for i := range want {
		if len(got) != len(want) || !got[i].Equal(want[i]) {
			t.Fatalf("as fast as possible: %v, want %v", got, want)
		}
	}
	// Real time starts now (run with a trace of 20 ms).
	if err := os.WriteFile(path, []byte("t,ax,ay,az,gx,gy,gz\n0,0,0,1,0,0,0\n0.02,0,0,1,0,0,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := collect(1); len(got) != 2 || !got[0].Equal(now) || !got[1].Equal(now.Add(20*time.Millisecond)) {
		t.Fatalf("real time: %v", got)
	}
}

func TestSimDatesNothingInTheFuture(t *testing.T) {
	var first, last time.Time
	if err := (&edge.Sim{Scenario: "crash", Seed: 1, Repeat: 2}).Run(context.Background(), func(s safety.Sample) error {
		if first.IsZero() {
			first = s.T
		}
		last = s.T
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if after := time.Now(); last.After(after) || last.Sub(first) < 10*time.Second {
		t.Fatalf("samples from %v to %v (now %v)", first, last, after)
	}
}
