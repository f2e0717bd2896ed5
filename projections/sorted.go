package projections

import (
	"iter"
	"slices"
)

// SortedPart bounds the elements of one part of a Sorted.
const SortedPart = 512

// Sorted is a sorted list of distinct elements in parts of at most
// SortedPart, for read models whose lists grow with history: an insert
// or a removal moves one part's elements, and the list grows a part at a
// time, never copying itself whole as a slice does when it outgrows its
// array (at 443,392 elements such a copy stopped an Apply for 246 ms).
// Elements appended in order fill each part before the next begins.
//
// The methods that look an element up take cmp, which compares an
// element of the list to the one looked up (negative: it comes before),
// so that it may read what the list does not hold (a model's table of
// names, say) and resolve the one looked up only once; every call on a
// list must use the same order. The zero value is an empty list; a
// nil *Sorted reads as one. Sorted is not safe for concurrent use.
type Sorted[T any] struct {
	parts [][]T // each ascending and not empty, in order
}

// Len returns how many elements s holds, in O(parts).
func (s *Sorted[T]) Len() int {
	if s == nil {
		return 0
	}
	n := 0
	for _, p := range s.parts {
		n += len(p)
	}
	return n
}

// Empty reports whether s holds nothing, in O(1).
func (s *Sorted[T]) Empty() bool { return s == nil || len(s.parts) == 0 }

// find returns the part and place where the element cmp looks up is or
// belongs, and whether it is there.
func (s *Sorted[T]) find(cmp func(T) int) (pi, i int, found bool) {
	pi, _ = slices.BinarySearchFunc(s.parts, 0, func(p []T, _ int) int { return cmp(p[len(p)-1]) })
	if pi == len(s.parts) { // after every element: the last part's end
		if pi == 0 {
			return 0, 0, false
		}
		pi--
		return pi, len(s.parts[pi]), false
	}
	i, found = slices.BinarySearchFunc(s.parts[pi], 0, func(e T, _ int) int { return cmp(e) })
	return pi, i, found
}

// Insert adds v, which s does not hold; cmp compares an element to v.
func (s *Sorted[T]) Insert(v T, cmp func(T) int) {
	pi, i, _ := s.find(cmp)
	s.insertAt(pi, i, v)
}

// Append adds v, which cmp orders after every element s holds.
func (s *Sorted[T]) Append(v T) {
	if n := len(s.parts); n > 0 {
		s.insertAt(n-1, len(s.parts[n-1]), v)
		return
	}
	s.insertAt(0, 0, v)
}

func (s *Sorted[T]) insertAt(pi, i int, v T) {
	if len(s.parts) == 0 || pi == len(s.parts)-1 && i == SortedPart {
		s.parts = append(s.parts, append(make([]T, 0, 4), v))
		return
	}
	p := s.parts[pi]
	if len(p) == cap(p) { // grow by half, not double: parts are many
		grown := make([]T, len(p), min(SortedPart, len(p)+len(p)/2+4))
		copy(grown, p)
		p = grown
	}
	p = slices.Insert(p, i, v)
	if len(p) <= SortedPart {
		s.parts[pi] = p
		return
	}
	half := len(p) / 2
	hi := slices.Clone(p[half:])
	s.parts[pi] = slices.Clip(p[:half])
	s.parts = slices.Insert(s.parts, pi+1, hi)
}

// Remove takes out the element cmp looks up, and reports whether s held
// it.
func (s *Sorted[T]) Remove(cmp func(T) int) bool {
	pi, i, found := s.find(cmp)
	if found {
		s.removeAt(pi, i)
	}
	return found
}

func (s *Sorted[T]) removeAt(pi, i int) {
	if p := slices.Delete(s.parts[pi], i, i+1); len(p) > 0 {
		s.parts[pi] = p
	} else {
		s.parts = slices.Delete(s.parts, pi, pi+1)
	}
}

// Move replaces the element old looks up by v, which s does not hold
// otherwise (cmp compares an element to v), and reports whether s held
// it; it inserts v when s did not. When v's place is in the part old is
// in, only the elements between the two places move: a ranking whose
// entries move a few places at a time pays for those places, not for
// half a part twice.
func (s *Sorted[T]) Move(old func(T) int, v T, cmp func(T) int) bool {
	pi, i, found := s.find(old)
	if !found {
		s.Insert(v, cmp)
		return false
	}
	pj, j, _ := s.find(cmp) // v's place, old still in
	if pj != pi {
		if pj > pi && len(s.parts[pi]) == 1 {
			pj-- // old's part goes with it
		}
		s.removeAt(pi, i)
		s.insertAt(pj, j, v)
		return true
	}
	p := s.parts[pi]
	if j > i { // v sorts after old: the elements between move down a place
		copy(p[i:j-1], p[i+1:j])
		p[j-1] = v
	} else { // at or before old's place: they move up one
		copy(p[j+1:i+1], p[j:i])
		p[j] = v
	}
	return true
}

// Index returns how many elements come before the one cmp looks up, in
// O(log n + parts).
func (s *Sorted[T]) Index(cmp func(T) int) int {
	pi, i, _ := s.find(cmp)
	for _, p := range s.parts[:pi] {
		i += len(p)
	}
	return i
}

// All yields the elements in order.
func (s *Sorted[T]) All() iter.Seq[T] {
	return func(yield func(T) bool) {
		if s == nil {
			return
		}
		for _, p := range s.parts {
			for _, v := range p {
				if !yield(v) {
					return
				}
			}
		}
	}
}

// Backward yields the elements last first.
func (s *Sorted[T]) Backward() iter.Seq[T] {
	return func(yield func(T) bool) {
		if s == nil {
			return
		}
		for pi := len(s.parts) - 1; pi >= 0; pi-- {
			p := s.parts[pi]
			for i := len(p) - 1; i >= 0; i-- {
				if !yield(p[i]) {
					return
				}
			}
		}
	}
}

// Parts returns the parts' lengths, for tests of a model's bounds.
func (s *Sorted[T]) Parts() []int {
	out := make([]int, len(s.parts))
	for i, p := range s.parts {
		out[i] = len(p)
	}
	return out
}
