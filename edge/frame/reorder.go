package frame

import (
	"slices"
	"time"
)

// Reorderer releases values in the order of their uint32 sequence numbers,
// which wrap around. A value waits while an earlier number is missing, but
// never for long: once more than the window's worth of values are held, or
// the oldest has waited maxDelay, the missing numbers are skipped and counted
// as a gap. Duplicates, and values that arrive after their number was skipped,
// are dropped and counted. A jump of the sequence back, or far ahead, is a
// device restart: what is held is released and numbering starts again.
//
// Numbering starts at the lowest number seen once the first value has
// waited maxDelay (or the window filled), so frames swapped at the start of a
// connection are not lost. The zero value is not usable; call NewReorderer. A
// Reorderer is not safe for concurrent use; it keeps no clock of its own.
type Reorderer[T any] struct {
	window   int
	maxDelay time.Duration

	started bool
	next    uint32 // the number released next
	history uint64 // bit i set: next-1-i was released
	pending []held[T]
	stats   ReorderStats
}

type held[T any] struct {
	seq uint32
	v   T
	at  time.Time
}

// ReorderStats counts what a Reorderer did.
type ReorderStats struct {
	Released   uint64 // values released, in order
	Duplicates uint64 // dropped: that number was already held or released
	Late       uint64 // dropped: arrived after its number was skipped
	Gaps       uint64 // times missing numbers were skipped
	Missing    uint64 // numbers skipped in all
	Restarts   uint64 // sequence jumped back, or more than 65536 ahead
}

const (
	historyLen = 64
	maxJump    = 1 << 16
)

// NewReorderer returns a Reorderer that holds at most window values (at least
// 1) and makes none wait longer than maxDelay.
func NewReorderer[T any](window int, maxDelay time.Duration) *Reorderer[T] {
	return &Reorderer[T]{window: max(window, 1), maxDelay: maxDelay}
}

// Push adds v, numbered seq and arrived at now, and appends to out the values
// now released, in order.
func (r *Reorderer[T]) Push(seq uint32, v T, now time.Time, out []T) []T {
	switch {
	case r.started:
		d := int32(seq - r.next)
		if d < 0 && d >= -historyLen {
			if r.history>>uint(-d-1)&1 != 0 {
				r.stats.Duplicates++
			} else {
				r.stats.Late++
			}
			return out
		}
		if d < 0 || d > maxJump {
			out = r.Drain(out)
			r.stats.Restarts++
		}
	case len(r.pending) > 0:
		if d := int32(seq - r.pending[0].seq); d > maxJump || d < -maxJump {
			out = r.Drain(out)
			r.stats.Restarts++
		}
	}
	i, found := slices.BinarySearchFunc(r.pending, seq, func(h held[T], s uint32) int {
		return int(int32(h.seq - s))
	})
	if found {
		r.stats.Duplicates++
		return out
	}
	r.pending = slices.Insert(r.pending, i, held[T]{seq: seq, v: v, at: now})
	return r.release(now, false, out)
}

// Expire appends to out the values released because what they wait for is
// overdue at now. Call it at Deadline.
func (r *Reorderer[T]) Expire(now time.Time, out []T) []T {
	return r.release(now, false, out)
}

// Drain appends everything held to out, in order, skipping what is missing,
// and forgets the numbering: the next value pushed starts it again. Use it
// when the link to the device is lost.
func (r *Reorderer[T]) Drain(out []T) []T {
	out = r.release(time.Time{}, true, out)
	r.started, r.history = false, 0
	return out
}

// Deadline reports when Expire next has work, if anything is held.
func (r *Reorderer[T]) Deadline() (time.Time, bool) {
	if len(r.pending) == 0 {
		return time.Time{}, false
	}
	return r.oldest().Add(r.maxDelay), true
}

// Stats returns the counts so far.
func (r *Reorderer[T]) Stats() ReorderStats { return r.stats }

func (r *Reorderer[T]) release(now time.Time, force bool, out []T) []T {
	for len(r.pending) > 0 {
		h := r.pending[0]
		if !r.started || h.seq != r.next {
			if !force && len(r.pending) <= r.window && now.Sub(r.oldest()) < r.maxDelay {
				break
			}
			if r.started {
				n := h.seq - r.next
				r.stats.Gaps++
				r.stats.Missing += uint64(n)
				r.history = shl(r.history, n)
			} else {
				r.started, r.history = true, 0
			}
			r.next = h.seq
		}
		out = append(out, h.v)
		r.pending = slices.Delete(r.pending, 0, 1) // zeroes the freed slot
		r.history = r.history<<1 | 1
		r.next++
		r.stats.Released++
	}
	return out
}

func (r *Reorderer[T]) oldest() time.Time {
	t := r.pending[0].at
	for _, h := range r.pending[1:] {
		if h.at.Before(t) {
			t = h.at
		}
	}
	return t
}

func shl(x uint64, n uint32) uint64 {
	if n >= historyLen {
		return 0
	}
	return x << n
}
