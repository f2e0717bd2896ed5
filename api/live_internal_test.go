package api

import (
	"testing"
	"time"
)

// TestLiveGapWidensWithStreams: 50 ms apart up to 200 open streams, then
// 4,000 updates a second across all of them.
func TestLiveGapWidensWithStreams(t *testing.T) {
	for open, want := range map[int64]time.Duration{
		0: 50 * time.Millisecond, 1: 50 * time.Millisecond, 200: 50 * time.Millisecond,
		400: 100 * time.Millisecond, 1000: 250 * time.Millisecond, 10000: 2500 * time.Millisecond,
	} {
		if got := liveGap(open); got != want {
			t.Errorf("liveGap(%d) = %v, want %v", open, got, want)
		}
		if open > 0 && float64(open)/liveGap(open).Seconds() > livePushes {
			t.Errorf("%d streams each at %v send more than %d updates a second", open, liveGap(open), livePushes)
		}
	}
}
