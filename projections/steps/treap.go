package steps

import (
	"math/bits"
	"slices"
)

// board is one date's leaderboard: an order-statistic treap keyed by
// (steps descending, user id ascending), in chunks of nodes linked by
// index. Nodes hold no pointers, so the garbage collector never scans
// them, and a (user, date) costs about 40 bytes with its index entry.
//
// Node priorities hash the user id rather than being random, so a treap's
// shape depends only on its keys: the same records in any order build the
// same tree.
//
// A capture shares the chunks with a view it encodes elsewhere (share);
// from then on a write copies the chunk it writes to first, once, so an
// Apply copies at most the chunks on its path rather than the board.
type board struct {
	chunks []chunk // node t is chunks[t>>chunkShift].nodes[t&chunkMask]; node 0 is the empty tree (size 0), never written
	len    int32   // nodes, node 0 included
	gen    uint32  // a chunk of an older gen is shared with a capture
	root   int32
	at     map[int32]int32 // uid → node

	// dirty has a bit per node changed since the last capture; changed
	// counts them.
	dirty   []uint64
	changed int
	// The segments stored of this board: based once a capture issued its
	// leaderboard, then deltas more segments of deltaCounts counts.
	based       bool
	deltas      int
	deltaCounts int
}

const (
	chunkShift = 10 // 1024 nodes, 24 KiB
	chunkMask  = 1<<chunkShift - 1
)

type chunk struct {
	nodes *[1 << chunkShift]node
	gen   uint32 // the board's gen when the chunk was made or copied
}

type node struct {
	uid, steps, size int32
	prio             uint32
	left, right      int32
}

func newBoard(users int) *board {
	b := &board{at: make(map[int32]int32, users)}
	b.add(node{})
	return b
}

// get returns node t to read. The pointer is valid until the next write
// to the board.
func (b *board) get(t int32) *node { return &b.chunks[t>>chunkShift].nodes[t&chunkMask] }

// mut returns node t to write, copying its chunk first if a capture
// shares it. The pointer stays valid while no capture shares the board.
func (b *board) mut(t int32) *node {
	c := &b.chunks[t>>chunkShift]
	if c.gen != b.gen {
		nodes := *c.nodes
		c.nodes, c.gen = &nodes, b.gen
	}
	return &c.nodes[t&chunkMask]
}

// add appends n and returns its index.
func (b *board) add(n node) int32 {
	t := b.len
	if int(t>>chunkShift) == len(b.chunks) {
		b.chunks = append(b.chunks, chunk{nodes: new([1 << chunkShift]node), gen: b.gen})
	}
	*b.mut(t) = n
	b.len++
	return t
}

// share returns a view of b as it is, to read on another goroutine while
// b changes.
func (b *board) share() *board {
	b.gen++
	return &board{chunks: slices.Clone(b.chunks), len: b.len, root: b.root}
}

// before reports whether a ranks ahead of b; ids maps uids to user ids.
func before(ids []string, a, b *node) bool {
	if a.steps != b.steps {
		return a.steps > b.steps
	}
	return ids[a.uid] < ids[b.uid]
}

func (b *board) total() int32 { return b.get(b.root).size }

// mark records that node n changed since the last capture.
func (b *board) mark(n int32) {
	w := int(n >> 6)
	if w >= len(b.dirty) {
		b.dirty = append(b.dirty, make([]uint64, w+1-len(b.dirty))...)
	}
	if bit := uint64(1) << (n & 63); b.dirty[w]&bit == 0 {
		b.dirty[w] |= bit
		b.changed++
	}
}

// takeChanged returns the nodes changed since the last capture, by index,
// and forgets them.
func (b *board) takeChanged() []int32 {
	out := make([]int32, 0, b.changed)
	for w, word := range b.dirty {
		for ; word != 0; word &= word - 1 {
			out = append(out, int32(w<<6|bits.TrailingZeros64(word)))
		}
	}
	b.forgetChanged()
	return out
}

func (b *board) forgetChanged() {
	clear(b.dirty)
	b.changed = 0
}

// fix sets n's size from its children's.
func (b *board) fix(n *node) {
	n.size = b.get(n.left).size + b.get(n.right).size + 1
}

// The mutating operations below take nodes to write with mut, and hold
// the pointers across their recursion: once mut copied a chunk, the chunk
// stays put until the next capture.

// insert adds the detached node n (nn) to tree t and returns the new root.
func (b *board) insert(ids []string, t, n int32, nn *node) int32 {
	if t == 0 {
		return n
	}
	tn := b.mut(t)
	switch {
	case nn.prio > tn.prio:
		nn.left, nn.right = b.split(ids, t, nn)
		b.fix(nn)
		return n
	case before(ids, nn, tn):
		tn.left = b.insert(ids, tn.left, n, nn)
	default:
		tn.right = b.insert(ids, tn.right, n, nn)
	}
	b.fix(tn)
	return t
}

// split parts tree t into the nodes ahead of key and the rest.
func (b *board) split(ids []string, t int32, key *node) (ahead, rest int32) {
	if t == 0 {
		return 0, 0
	}
	tn := b.mut(t)
	if before(ids, tn, key) {
		tn.right, rest = b.split(ids, tn.right, key)
		b.fix(tn)
		return t, rest
	}
	ahead, tn.left = b.split(ids, tn.left, key)
	b.fix(tn)
	return ahead, t
}

// remove detaches node n (nn), which is in tree t, and returns the new
// root.
func (b *board) remove(ids []string, t, n int32, nn *node) int32 {
	if t == n {
		return b.merge(nn.left, nn.right)
	}
	tn := b.mut(t)
	if before(ids, nn, tn) {
		tn.left = b.remove(ids, tn.left, n, nn)
	} else {
		tn.right = b.remove(ids, tn.right, n, nn)
	}
	b.fix(tn)
	return t
}

// merge joins trees l and r, every node of l ranking ahead of every node
// of r.
func (b *board) merge(l, r int32) int32 {
	switch {
	case l == 0:
		return r
	case r == 0:
		return l
	}
	if ln, rn := b.get(l), b.get(r); ln.prio > rn.prio {
		ln = b.mut(l)
		ln.right = b.merge(ln.right, r)
		b.fix(ln)
		return l
	}
	rn := b.mut(r)
	rn.left = b.merge(l, rn.left)
	b.fix(rn)
	return r
}

// rank returns the 1-based rank of node n.
func (b *board) rank(ids []string, n int32) int64 {
	r, t, nn := int64(1), b.root, b.get(n)
	for t != n {
		tn := b.get(t)
		if before(ids, nn, tn) {
			t = tn.left
		} else {
			r += int64(b.get(tn.left).size) + 1
			t = tn.right
		}
	}
	return r + int64(b.get(nn.left).size)
}

// walk visits the nodes in rank order until visit returns false.
func (b *board) walk(visit func(*node) bool) {
	stack := make([]int32, 0, 64)
	for t := b.root; t != 0 || len(stack) > 0; {
		for ; t != 0; t = b.get(t).left {
			stack = append(stack, t)
		}
		t = stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !visit(b.get(t)) {
			return
		}
		t = b.get(t).right
	}
}

// each visits every node but node 0, in index order.
func (b *board) each(visit func(*node)) {
	for t := int32(1); t < b.len; t++ {
		visit(b.get(t))
	}
}

// build links nodes 1.., which are in rank order, into a treap in O(N):
// the tree inserting them one by one would make (priorities being
// distinct).
func (b *board) build() {
	var spine []int32 // right spine of the tree so far
	for i := int32(1); i < b.len; i++ {
		var last int32
		for len(spine) > 0 && b.get(spine[len(spine)-1]).prio < b.get(i).prio {
			last = spine[len(spine)-1]
			spine = spine[:len(spine)-1]
		}
		b.mut(i).left = last
		if len(spine) > 0 {
			b.mut(spine[len(spine)-1]).right = i
		}
		spine = append(spine, i)
	}
	if len(spine) > 0 {
		b.root = spine[0]
		b.fixAll(b.root)
	}
}

func (b *board) fixAll(t int32) int32 {
	if t == 0 {
		return 0
	}
	n := b.mut(t)
	n.size = b.fixAll(n.left) + b.fixAll(n.right) + 1
	return n.size
}

// priority hashes user: FNV-1a, then the splitmix64 finalizer, because
// FNV's low bits mix poorly.
func priority(user string) uint32 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(user); i++ {
		h ^= uint64(user[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return uint32(h >> 32)
}
