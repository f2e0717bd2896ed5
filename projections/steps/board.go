package steps

import (
	"cmp"
	"math/bits"
	"slices"

	"github.com/tideline/tideline/projections"
)

// board is one date's counts and leaderboard, in three parts:
//
//   - a column of each user's count, indexed by uid, in chunks of 1024
//     users (4 bytes a user and a presence bit);
//   - a Fenwick tree counting the users at each count from 0 to
//     denseLimit-1, which gives how many users rank ahead of a count in
//     O(log V), and the counts outside that range (negative, or beyond
//     any real day's steps: the API accepts none) in a short sorted list;
//   - per count, its users ordered by id, in parts (projections.Sorted), so
//     that a user's place among equal counts is a binary search.
//
// A (user, date) costs about 9 bytes: 4 in the column, 4 and some slack
// in its count's part; a board's tree and count slots, about 1 MB for
// counts up to 32,767. Nothing in it holds a pointer per user, so the
// garbage collector scans none of it.
//
// A capture shares the column with a view it encodes elsewhere (share);
// from then on a write copies the chunk it writes to first, once. The
// ranking is not shared: a view sorts what it encodes.
type board struct {
	col   []colChunk // uid u is col[u>>colShift]; a nil chunk holds nobody
	gen   uint32     // a chunk of an older gen is shared with a capture
	users int32      // users with a count

	fen   []int32  // Fenwick tree over counts 0..len(fen)-2, 1-based; len(fen)-1 is a power of two
	dense []bucket // count → its users, for counts the tree covers
	odd   oddSet

	// dirty has a bit per uid whose count changed since the last capture;
	// changed counts them.
	dirty   []uint64
	changed int
	// The segments stored of this board: based once a capture issued its
	// leaderboard, then deltas more segments of deltaCounts counts.
	based       bool
	deltas      int
	deltaCounts int
}

const (
	colShift = 10
	colMask  = 1<<colShift - 1

	// denseLimit bounds the counts the Fenwick tree covers: above the
	// API's largest daily count (domain/steps MaxSteps, 200,000). The
	// tree grows by doubling to the largest count it holds, from minFen.
	denseLimit = 1 << 18
	minFen     = 64

	// maxPart bounds a part of the counts outside the tree's range, as
	// projections.SortedPart bounds a part of a count's users.
	maxPart = projections.SortedPart
)

type colChunk struct {
	c   *colData
	gen uint32 // the board's gen when the chunk was made or copied
}

type colData struct {
	steps [1 << colShift]int32
	has   [1 << colShift / 64]uint64
}

// bucket is the users at one count, ordered by id, in parts of at most
// projections.SortedPart.
type bucket = projections.Sorted[int32]

// oddSet is the counts outside 0..denseLimit-1 that users have,
// descending, in parts of at most maxPart counts that know their users'
// total, so that a rank sums parts rather than every count.
type oddSet struct {
	parts []oddPart
}

type oddPart struct {
	counts []oddCount // descending, never empty
	users  int64
}

type oddCount struct {
	steps int32
	n     int32 // users at steps
	users *bucket
}

func newBoard() *board {
	return &board{fen: make([]int32, minFen+1), dense: make([]bucket, minFen)}
}

// count is a user's count on a board.
type count struct{ uid, steps int32 }

// get returns uid's count and whether it has one.
func (b *board) get(uid int32) (int32, bool) {
	i := int(uid >> colShift)
	if i >= len(b.col) || b.col[i].c == nil {
		return 0, false
	}
	return readCol(b.col[i].c, uid)
}

func readCol(c *colData, uid int32) (int32, bool) {
	j := uid & colMask
	if c.has[j>>6]&(1<<(j&63)) == 0 {
		return 0, false
	}
	return c.steps[j], true
}

// put sets uid's count in the column, copying its chunk first if a
// capture shares it.
func (b *board) put(uid, steps int32) {
	i := int(uid >> colShift)
	if i >= len(b.col) {
		b.col = append(b.col, make([]colChunk, i+1-len(b.col))...)
	}
	ch := &b.col[i]
	switch {
	case ch.c == nil:
		ch.c, ch.gen = new(colData), b.gen
	case ch.gen != b.gen:
		c := *ch.c
		ch.c, ch.gen = &c, b.gen
	}
	j := uid & colMask
	ch.c.steps[j] = steps
	ch.c.has[j>>6] |= 1 << (j & 63)
}

func (b *board) total() int32 { return b.users }

// set gives uid (with id ns.of(uid)) the count steps, moving it from the
// count it had, if any.
func (b *board) set(ns names, uid, steps int32) {
	to := ns.to(uid)
	if old, ok := b.get(uid); ok {
		b.bucketOf(old, false).Remove(to)
		b.tally(old, -1)
	} else {
		b.users++
	}
	b.put(uid, steps)
	b.bucketOf(steps, true).Insert(uid, to)
	b.tally(steps, 1)
}

// append adds uid at steps behind every user the board holds, which must
// all rank ahead of it: a restore reads users in rank order.
func (b *board) append(uid, steps int32) {
	b.users++
	b.put(uid, steps)
	b.bucketOf(steps, true).Append(uid)
	b.tally(steps, 1)
}

// bucketOf returns the users at steps. For a count the board has no
// place for yet, it makes one when create is true and returns nil
// otherwise. The pointer is valid until the next bucketOf.
func (b *board) bucketOf(steps int32, create bool) *bucket {
	if 0 <= steps && steps < denseLimit {
		for create && int(steps) >= len(b.dense) {
			b.grow()
		}
		if int(steps) >= len(b.dense) {
			return nil
		}
		return &b.dense[steps]
	}
	return b.odd.bucket(steps, create)
}

// find returns the part and place where steps is or belongs, and
// whether it is there.
func (o *oddSet) find(steps int32) (pi, i int, found bool) {
	pi, _ = slices.BinarySearchFunc(o.parts, steps, func(p oddPart, s int32) int {
		return cmp.Compare(s, p.counts[len(p.counts)-1].steps)
	})
	if pi == len(o.parts) { // below every count: the last part's end
		if pi == 0 {
			return 0, 0, false
		}
		pi--
		return pi, len(o.parts[pi].counts), false
	}
	i, found = slices.BinarySearchFunc(o.parts[pi].counts, steps, func(c oddCount, s int32) int { return cmp.Compare(s, c.steps) })
	return pi, i, found
}

// bucket is board.bucketOf for a count outside the tree's range.
func (o *oddSet) bucket(steps int32, create bool) *bucket {
	pi, i, found := o.find(steps)
	switch {
	case found:
		return o.parts[pi].counts[i].users
	case !create:
		return nil
	case len(o.parts) == 0:
		o.parts = append(o.parts, oddPart{})
	}
	p := &o.parts[pi]
	bk := &bucket{}
	p.counts = slices.Insert(p.counts, i, oddCount{steps: steps, users: bk})
	if len(p.counts) > maxPart {
		half := len(p.counts) / 2
		hi := oddPart{counts: slices.Clone(p.counts[half:])}
		for _, c := range hi.counts {
			hi.users += int64(c.n)
		}
		p.counts = slices.Clip(p.counts[:half])
		p.users -= hi.users
		o.parts = slices.Insert(o.parts, pi+1, hi)
	}
	return bk
}

// tally adds d users at steps, which has a place, and drops the place
// once nobody has that count.
func (o *oddSet) tally(steps, d int32) {
	pi, i, _ := o.find(steps)
	p := &o.parts[pi]
	p.users += int64(d)
	if p.counts[i].n += d; p.counts[i].n > 0 {
		return
	}
	if p.counts = slices.Delete(p.counts, i, i+1); len(p.counts) == 0 {
		o.parts = slices.Delete(o.parts, pi, pi+1)
	}
}

// above returns how many users have a count above steps.
func (o *oddSet) above(steps int32) int64 {
	r := int64(0)
	for _, p := range o.parts {
		if p.counts[len(p.counts)-1].steps > steps {
			r += p.users
			continue
		}
		for _, c := range p.counts {
			if c.steps <= steps {
				break
			}
			r += int64(c.n)
		}
		break
	}
	return r
}

// each visits the counts, descending: the negative ones or the others.
func (o *oddSet) each(negative bool, visit func(steps int32, users *bucket) bool) bool {
	for _, p := range o.parts {
		for _, c := range p.counts {
			if (c.steps < 0) == negative && !visit(c.steps, c.users) {
				return false
			}
		}
	}
	return true
}

// tally adds d users at steps to the tree, and drops the bucket of a
// count that no user has any more.
func (b *board) tally(steps int32, d int32) {
	if 0 <= steps && steps < denseLimit {
		for i := int(steps) + 1; i < len(b.fen); i += i & -i {
			b.fen[i] += d
		}
		if d < 0 && b.dense[steps].Empty() {
			b.dense[steps] = bucket{} // its parts' array goes
		}
		return
	}
	b.odd.tally(steps, d)
}

// grow doubles the tree's range: the new upper half is empty, so every
// old node keeps its sum and the new root holds them all.
func (b *board) grow() {
	n := len(b.fen) - 1
	fen := make([]int32, 2*n+1)
	copy(fen, b.fen)
	fen[2*n] = b.below(int32(n))
	b.fen = fen
	b.dense = append(b.dense, make([]bucket, n)...)
}

// below returns how many users have a count from 0 to v-1, for v from 0
// to the tree's range.
func (b *board) below(v int32) int32 {
	s := int32(0)
	for i := int(v); i > 0; i -= i & -i {
		s += b.fen[i]
	}
	return s
}

// denseUsers returns how many users the tree counts.
func (b *board) denseUsers() int32 { return b.below(int32(len(b.fen) - 1)) }

// kth returns the count of the k-th user (1-based) of those the tree
// counts, lowest count first: the least v with below(v+1) >= k.
func (b *board) kth(k int32) int32 {
	pos, n := 0, len(b.fen)-1
	for step := n; step > 0; step >>= 1 {
		if next := pos + step; next <= n && b.fen[next] < k {
			pos = next
			k -= b.fen[next]
		}
	}
	return int32(pos)
}

// ahead returns how many users have a count above steps.
func (b *board) ahead(steps int32) int64 {
	r := b.odd.above(steps)
	switch {
	case steps < 0:
		r += int64(b.denseUsers())
	case steps < int32(len(b.fen)-1):
		r += int64(b.denseUsers() - b.below(steps+1))
	}
	return r
}

// rank returns the 1-based rank of uid, whose count is steps.
func (b *board) rank(ns names, uid, steps int32) int64 {
	return b.ahead(steps) + int64(b.bucketOf(steps, false).Index(ns.to(uid))) + 1
}

// walk visits the users in rank order until visit returns false.
func (b *board) walk(visit func(uid, steps int32) bool) {
	each := func(steps int32, bk *bucket) bool {
		for uid := range bk.All() {
			if !visit(uid, steps) {
				return false
			}
		}
		return true
	}
	if !b.odd.each(false, each) {
		return
	}
	for k := b.denseUsers(); k > 0; {
		v := b.kth(k)
		if !each(v, &b.dense[v]) {
			return
		}
		k = b.below(v)
	}
	b.odd.each(true, each)
}

// each visits every user's count, in uid order.
func (b *board) each(visit func(uid, steps int32)) {
	for i, ch := range b.col {
		if ch.c != nil {
			eachCol(ch.c, int32(i)<<colShift, visit)
		}
	}
}

func eachCol(c *colData, base int32, visit func(uid, steps int32)) {
	for w, word := range c.has {
		for ; word != 0; word &= word - 1 {
			j := int32(w<<6 | bits.TrailingZeros64(word))
			visit(base+j, c.steps[j])
		}
	}
}

// view is a board's counts as they were when share made it.
type view struct {
	col   []colChunk
	users int32
}

// share returns a view of b's counts as they are, to read on another
// goroutine while b changes.
func (b *board) share() *view {
	b.gen++
	return &view{col: slices.Clone(b.col), users: b.users}
}

// ranked returns the view's counts in rank order; ns names its uids. It
// places them by count in two passes (counts outside 0..denseLimit-1 are
// sorted), then sorts each run of equal counts by id.
func (v *view) ranked(ns names) []count {
	var odd []count
	var at []int32 // count → users with a count above it, then where the next one goes
	for i, ch := range v.col {
		if ch.c != nil {
			eachCol(ch.c, int32(i)<<colShift, func(uid, steps int32) {
				if steps < 0 || steps >= denseLimit {
					odd = append(odd, count{uid, steps})
					return
				}
				if int(steps) >= len(at) {
					at = append(at, make([]int32, int(steps)+1-len(at))...)
				}
				at[steps]++
			})
		}
	}
	byRank := func(a, c count) int {
		if a.steps != c.steps {
			return cmp.Compare(c.steps, a.steps)
		}
		return ns.compare(a.uid, c.uid)
	}
	slices.SortFunc(odd, byRank)
	high := 0 // odd counts above the dense ones
	for high < len(odd) && odd[high].steps >= 0 {
		high++
	}
	sum := int32(high)
	for s := len(at) - 1; s >= 0; s-- {
		sum, at[s] = sum+at[s], sum
	}
	out := make([]count, v.users)
	copy(out, odd[:high])
	copy(out[sum:], odd[high:])
	for i, ch := range v.col {
		if ch.c != nil {
			eachCol(ch.c, int32(i)<<colShift, func(uid, steps int32) {
				if steps >= 0 && steps < denseLimit {
					out[at[steps]] = count{uid, steps}
					at[steps]++
				}
			})
		}
	}
	for i := high; i < int(sum); {
		j := i + 1
		for j < int(sum) && out[j].steps == out[i].steps {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(out[i:j], byRank)
		}
		i = j
	}
	return out
}

// mark records that uid's count changed since the last capture.
func (b *board) mark(uid int32) {
	w := int(uid >> 6)
	if w >= len(b.dirty) {
		b.dirty = append(b.dirty, make([]uint64, w+1-len(b.dirty))...)
	}
	if bit := uint64(1) << (uid & 63); b.dirty[w]&bit == 0 {
		b.dirty[w] |= bit
		b.changed++
	}
}

// takeChanged returns the counts changed since the last capture, by uid,
// and forgets them.
func (b *board) takeChanged() []count {
	out := make([]count, 0, b.changed)
	for w, word := range b.dirty {
		for ; word != 0; word &= word - 1 {
			uid := int32(w<<6 | bits.TrailingZeros64(word))
			steps, _ := b.get(uid)
			out = append(out, count{uid, steps})
		}
	}
	b.forgetChanged()
	return out
}

func (b *board) forgetChanged() {
	clear(b.dirty)
	b.changed = 0
}
