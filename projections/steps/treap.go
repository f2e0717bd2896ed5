package steps

import "math/bits"

// board is one date's leaderboard: an order-statistic treap keyed by
// (steps descending, user id ascending), in a slab of nodes linked by
// index. Nodes hold no pointers, so the garbage collector never scans
// them, and a (user, date) costs about 45 bytes with its index entry.
//
// Node priorities hash the user id rather than being random, so a treap's
// shape depends only on its keys: the same records in any order build the
// same tree.
type board struct {
	nodes []node          // nodes[0] is the empty tree (size 0); never written
	root  int32           // index in nodes
	at    map[int32]int32 // uid → index in nodes

	// shared: a capture holds nodes, so a write copies them first.
	shared bool
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

type node struct {
	uid, steps, size int32
	prio             uint32
	left, right      int32
}

func newBoard(users int) *board {
	return &board{nodes: make([]node, 1, users+1), at: make(map[int32]int32, users)}
}

// before reports whether a ranks ahead of b; ids maps uids to user ids.
func before(ids []string, a, b *node) bool {
	if a.steps != b.steps {
		return a.steps > b.steps
	}
	return ids[a.uid] < ids[b.uid]
}

func (b *board) total() int32 { return b.nodes[b.root].size }

// own makes b's nodes its own before a write, copying them if a capture
// holds them.
func (b *board) own() {
	if b.shared {
		b.nodes = append(make([]node, 0, cap(b.nodes)), b.nodes...)
		b.shared = false
	}
}

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
	clear(b.dirty)
	b.changed = 0
	return out
}

func (b *board) fix(t int32) {
	n := &b.nodes[t]
	n.size = b.nodes[n.left].size + b.nodes[n.right].size + 1
}

// insert adds the detached node n to tree t and returns the new root.
func (b *board) insert(ids []string, t, n int32) int32 {
	if t == 0 {
		return n
	}
	tn, nn := &b.nodes[t], &b.nodes[n]
	switch {
	case nn.prio > tn.prio:
		nn.left, nn.right = b.split(ids, t, nn)
		b.fix(n)
		return n
	case before(ids, nn, tn):
		tn.left = b.insert(ids, tn.left, n)
	default:
		tn.right = b.insert(ids, tn.right, n)
	}
	b.fix(t)
	return t
}

// split parts tree t into the nodes ahead of key and the rest.
func (b *board) split(ids []string, t int32, key *node) (ahead, rest int32) {
	if t == 0 {
		return 0, 0
	}
	tn := &b.nodes[t]
	if before(ids, tn, key) {
		tn.right, rest = b.split(ids, tn.right, key)
		b.fix(t)
		return t, rest
	}
	ahead, tn.left = b.split(ids, tn.left, key)
	b.fix(t)
	return ahead, t
}

// remove detaches node n, which is in tree t, and returns the new root.
func (b *board) remove(ids []string, t, n int32) int32 {
	tn := &b.nodes[t]
	switch {
	case t == n:
		return b.merge(tn.left, tn.right)
	case before(ids, &b.nodes[n], tn):
		tn.left = b.remove(ids, tn.left, n)
	default:
		tn.right = b.remove(ids, tn.right, n)
	}
	b.fix(t)
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
	case b.nodes[l].prio > b.nodes[r].prio:
		b.nodes[l].right = b.merge(b.nodes[l].right, r)
		b.fix(l)
		return l
	default:
		b.nodes[r].left = b.merge(l, b.nodes[r].left)
		b.fix(r)
		return r
	}
}

// rank returns the 1-based rank of node n.
func (b *board) rank(ids []string, n int32) int64 {
	r, t, nn := int64(1), b.root, &b.nodes[n]
	for t != n {
		tn := &b.nodes[t]
		if before(ids, nn, tn) {
			t = tn.left
		} else {
			r += int64(b.nodes[tn.left].size) + 1
			t = tn.right
		}
	}
	return r + int64(b.nodes[nn.left].size)
}

// walk visits the nodes in rank order until visit returns false.
func (b *board) walk(visit func(*node) bool) {
	stack := make([]int32, 0, 64)
	for t := b.root; t != 0 || len(stack) > 0; {
		for ; t != 0; t = b.nodes[t].left {
			stack = append(stack, t)
		}
		t = stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !visit(&b.nodes[t]) {
			return
		}
		t = b.nodes[t].right
	}
}

// build links nodes[1:], which are in rank order, into a treap in O(N):
// the tree inserting them one by one would make (priorities being
// distinct).
func (b *board) build() {
	var spine []int32 // right spine of the tree so far
	for i := int32(1); i < int32(len(b.nodes)); i++ {
		var last int32
		for len(spine) > 0 && b.nodes[spine[len(spine)-1]].prio < b.nodes[i].prio {
			last = spine[len(spine)-1]
			spine = spine[:len(spine)-1]
		}
		b.nodes[i].left = last
		if len(spine) > 0 {
			b.nodes[spine[len(spine)-1]].right = i
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
	n := &b.nodes[t]
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
