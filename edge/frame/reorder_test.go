package frame_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tideline/tideline/edge/frame"
)

const (
	window   = 4
	maxDelay = 50 * time.Millisecond
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// step is one thing that happens to a Reorderer, ms after t0: a push of seq,
// an expiry, or a drain.
type step struct {
	ms     int
	seq    uint32
	expire bool
	drain  bool
}

func push(ms int, seq uint32) step { return step{ms: ms, seq: seq} }
func expire(ms int) step           { return step{ms: ms, expire: true} }
func drain() step                  { return step{drain: true} }

func run(steps []step) ([]uint32, frame.ReorderStats) {
	r := frame.NewReorderer[uint32](window, maxDelay)
	var out []uint32
	for _, s := range steps {
		now := t0.Add(time.Duration(s.ms) * time.Millisecond)
		switch {
		case s.drain:
			out = r.Drain(out)
		case s.expire:
			out = r.Expire(now, out)
		default:
			out = r.Push(s.seq, s.seq, now, out)
		}
	}
	return out, r.Stats()
}

func TestReorderer(t *testing.T) {
	const top = math.MaxUint32
	tests := []struct {
		name  string
		steps []step
		want  []uint32
		stats frame.ReorderStats
	}{
		{
			name:  "first_frame_waits_for_earlier_ones_then_in_order_flows_through",
			steps: []step{push(0, 10), push(1, 11), expire(49), expire(50), push(51, 12), push(52, 13)},
			want:  []uint32{10, 11, 12, 13},
			stats: frame.ReorderStats{Released: 4},
		},
		{
			name:  "swapped_at_start_are_kept",
			steps: []step{push(0, 11), push(1, 10), expire(50)},
			want:  []uint32{10, 11},
			stats: frame.ReorderStats{Released: 2},
		},
		{
			name:  "swapped_pair_released_in_order_without_waiting",
			steps: []step{push(0, 1), expire(50), push(60, 3), push(61, 2), push(62, 4)},
			want:  []uint32{1, 2, 3, 4},
			stats: frame.ReorderStats{Released: 4},
		},
		{
			name:  "duplicates_dropped_whether_held_or_released",
			steps: []step{push(0, 1), expire(50), push(60, 3), push(61, 3), push(62, 2), push(63, 2), push(64, 1)},
			want:  []uint32{1, 2, 3},
			stats: frame.ReorderStats{Released: 3, Duplicates: 3},
		},
		{
			name:  "gap_skipped_once_the_oldest_waited_max_delay",
			steps: []step{push(0, 1), expire(50), push(60, 3), push(70, 4), expire(109), expire(110)},
			want:  []uint32{1, 3, 4},
			stats: frame.ReorderStats{Released: 3, Gaps: 1, Missing: 1},
		},
		{
			name:  "gap_skipped_when_the_window_overflows",
			steps: []step{push(0, 1), expire(50), push(60, 3), push(61, 4), push(62, 5), push(63, 6), push(64, 7)},
			want:  []uint32{1, 3, 4, 5, 6, 7},
			stats: frame.ReorderStats{Released: 6, Gaps: 1, Missing: 1},
		},
		{
			name:  "late_frame_after_its_gap_was_skipped_is_dropped",
			steps: []step{push(0, 1), expire(50), push(60, 4), expire(110), push(111, 2), push(112, 5)},
			want:  []uint32{1, 4, 5},
			stats: frame.ReorderStats{Released: 3, Gaps: 1, Missing: 2, Late: 1},
		},
		{
			name:  "wraps_around_uint32",
			steps: []step{push(0, top-1), expire(50), push(51, 0), push(52, top), push(53, 1)},
			want:  []uint32{top - 1, top, 0, 1},
			stats: frame.ReorderStats{Released: 4},
		},
		{
			name:  "gap_across_the_wrap",
			steps: []step{push(0, top-1), expire(50), push(51, 1), expire(101)},
			want:  []uint32{top - 1, 1},
			stats: frame.ReorderStats{Released: 2, Gaps: 1, Missing: 2},
		},
		{
			name:  "device_restart_releases_what_is_held_and_starts_over",
			steps: []step{push(0, 500), expire(50), push(51, 502), push(52, 0), push(53, 1), expire(102)},
			want:  []uint32{500, 502, 0, 1},
			stats: frame.ReorderStats{Released: 4, Gaps: 1, Missing: 1, Restarts: 1},
		},
		{
			name:  "far_jump_ahead_is_a_restart_not_a_huge_gap",
			steps: []step{push(0, 1), expire(50), push(51, 1<<20), expire(101)},
			want:  []uint32{1, 1 << 20},
			stats: frame.ReorderStats{Released: 2, Restarts: 1},
		},
		{
			name:  "drain_releases_all_and_forgets_numbering",
			steps: []step{push(0, 1), expire(50), push(51, 3), push(52, 5), drain(), push(53, 2), expire(103)},
			want:  []uint32{1, 3, 5, 2},
			stats: frame.ReorderStats{Released: 4, Gaps: 2, Missing: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, stats := run(tt.steps)
			if !slices.Equal(got, tt.want) {
				t.Errorf("released %v, want %v", got, tt.want)
			}
			if stats != tt.stats {
				t.Errorf("stats %+v, want %+v", stats, tt.stats)
			}
		})
	}
}

func TestReordererDeadline(t *testing.T) {
	r := frame.NewReorderer[uint32](window, maxDelay)
	if _, ok := r.Deadline(); ok {
		t.Fatal("deadline with nothing held")
	}
	r.Push(5, 5, t0, nil)
	r.Push(7, 7, t0.Add(10*time.Millisecond), nil)
	if d, ok := r.Deadline(); !ok || !d.Equal(t0.Add(maxDelay)) {
		t.Fatalf("deadline %v %v, want %v", d, ok, t0.Add(maxDelay))
	}
	if out := r.Expire(t0.Add(maxDelay), nil); !slices.Equal(out, []uint32{5}) {
		t.Fatalf("released %v at the first deadline", out)
	}
	if d, _ := r.Deadline(); !d.Equal(t0.Add(60 * time.Millisecond)) {
		t.Fatalf("next deadline %v", d)
	}
}

// TestReordererNeverStalls shuffles, drops and duplicates frames within the
// window and checks that everything is released in strictly increasing
// order, within maxDelay of arriving, and accounted for.
func TestReordererNeverStalls(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		start := rng.Uint32()
		const n = 300
		var arrivals []uint32
		for i := range uint32(n) {
			switch rng.IntN(20) {
			case 0: // lost
			case 1:
				arrivals = append(arrivals, start+i, start+i)
			default:
				arrivals = append(arrivals, start+i)
			}
		}
		for i := range arrivals { // local shuffle: no frame moves more than 3 places
			j := min(i+rng.IntN(4), len(arrivals)-1)
			arrivals[i], arrivals[j] = arrivals[j], arrivals[i]
		}

		r := frame.NewReorderer[uint32](8, maxDelay)
		var out []uint32
		for k, seq := range arrivals {
			now := t0.Add(time.Duration(k) * time.Millisecond)
			out = r.Expire(now, out)
			out = r.Push(seq, seq, now, out)
			if d, ok := r.Deadline(); ok && d.Before(now) {
				t.Fatalf("trial %d: deadline %v already past at %v", trial, d, now)
			}
		}
		out = r.Drain(out)
		for i := 1; i < len(out); i++ {
			if int32(out[i]-out[i-1]) <= 0 {
				t.Fatalf("trial %d: released %d after %d", trial, out[i], out[i-1])
			}
		}
		s := r.Stats()
		if got := s.Released + s.Duplicates + s.Late; got != uint64(len(arrivals)) {
			t.Fatalf("trial %d: %d arrivals, %+v", trial, len(arrivals), s)
		}
		if s.Restarts != 0 {
			t.Fatalf("trial %d: restart in a continuous stream: %+v", trial, s)
		}
	}
}
