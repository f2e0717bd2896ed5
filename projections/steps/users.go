package steps

import (
	"bytes"
	"hash/maphash"
)

// The model's users: a uid per user id, and the ids back to back in
// chunks. Nothing here holds a pointer per user, so 10M users cost the
// garbage collector nothing to scan, and about 16 bytes each beyond their
// ids' bytes (8 in names.at, 8 to 16 in the index). Nothing here grows by
// copying itself whole either, as a slice does when it outgrows its
// array: the ids and offsets grow a chunk at a time, and the index is 256
// tables that each grow alone. At 4M users a model of one slice and one
// table stopped an Apply for 0.7 s as they grew (BenchmarkGrowStall).

// MaxUserID is the longest user id the model holds; a record with a
// longer one is ignored (the API accepts ids of up to 64 bytes).
const MaxUserID = 1<<idLenBits - 1

const (
	idLenBits  = 12
	idOffBits  = 16
	dataChunk  = 1 << idOffBits // bytes of ids per chunk
	stableBits = 12             // elements per chunk of a stableArray: 4096
)

// names maps uids to user ids. A capture hands a copy of the struct to
// the Encodes it returns: bytes and offsets it can read are never
// rewritten while an Encode is pending (a uid is reused only once none
// is, see Model.newUser), and what grows is added past what it sees.
type names struct {
	data [][]byte            // chunks of dataChunk bytes; ids fill the last one
	fill int                 // bytes used of the last chunk
	at   stableArray[uint64] // uid → chunk<<(idOffBits+idLenBits) | offset<<idLenBits | length
	size int                 // bytes used in all chunks, garbage included
}

// of returns uid's id, aliasing data.
func (n names) of(uid int32) []byte {
	a := *n.at.at(uid)
	if a&MaxUserID == 0 {
		return nil // "", or a uid compaction emptied: no chunk to index
	}
	off := a >> idLenBits & (dataChunk - 1)
	return n.data[a>>(idOffBits+idLenBits)][off : off+a&MaxUserID]
}

// str returns uid's id as a string.
func (n names) str(uid int32) string { return string(n.of(uid)) }

// compare orders uids by id.
func (n names) compare(a, b int32) int { return bytes.Compare(n.of(a), n.of(b)) }

// to returns the comparison of a uid's id to uid's, which it reads once.
func (n names) to(uid int32) func(int32) int {
	id := n.of(uid)
	return func(u int32) int { return bytes.Compare(n.of(u), id) }
}

// set gives uid, which is at most n.at.len(), the id user (at most
// MaxUserID bytes): in place of its previous id if that is at least as
// long, else added.
func (n *names) set(uid int32, user string) {
	if uid == n.at.len() {
		n.at.push(0)
	}
	if user == "" {
		*n.at.at(uid) = 0
		return
	}
	if old := *n.at.at(uid); int(old&MaxUserID) >= len(user) {
		off := old >> idLenBits & (dataChunk - 1)
		copy(n.data[old>>(idOffBits+idLenBits)][off:], user)
		*n.at.at(uid) = old&^MaxUserID | uint64(len(user))
		return
	}
	if len(n.data) == 0 || n.fill+len(user) > dataChunk {
		n.data = append(n.data, make([]byte, dataChunk))
		n.fill = 0
	}
	chunk := uint64(len(n.data) - 1)
	copy(n.data[chunk][n.fill:], user)
	*n.at.at(uid) = chunk<<(idOffBits+idLenBits) | uint64(n.fill)<<idLenBits | uint64(len(user))
	n.fill += len(user)
	n.size += len(user)
}

// compact returns n with the ids of live uids only, in new chunks; every
// other uid has an empty id.
func (n names) compact(live func(yield func(uid int32))) names {
	var c names
	for range n.at.len() {
		c.at.push(0)
	}
	live(func(uid int32) { c.set(uid, string(n.of(uid))) })
	return c
}

// stableArray is a growable array in chunks of 1<<stableBits elements,
// each made whole when the first of its elements is: growing never copies
// what it holds, and an element never moves, so a copy of the struct
// made earlier still reads the elements it had while more are pushed.
type stableArray[T any] struct {
	chunks []*[1 << stableBits]T
	n      int32
}

func (s *stableArray[T]) len() int32 { return s.n }

// at returns element i, which must be below len.
func (s *stableArray[T]) at(i int32) *T { return &s.chunks[i>>stableBits][i&(1<<stableBits-1)] }

// push adds v as the last element.
func (s *stableArray[T]) push(v T) {
	if int(s.n>>stableBits) == len(s.chunks) {
		s.chunks = append(s.chunks, new([1 << stableBits]T))
	}
	s.n++
	*s.at(s.n - 1) = v
}

// userIndex maps user ids to uids: 256 tables, chosen by the top byte of
// an id's hash, each with open addressing and linear probing. A slot
// holds the hash's low 32 bits (whose low bits are the slot it belongs in)
// and the uid+1; 0 is an empty slot.
type userIndex struct {
	tabs [256]indexTable
	n    int // uids held
	seed maphash.Seed
}

type indexTable struct {
	slots []uint64
	n     int
}

func newUserIndex() userIndex { return userIndex{seed: maphash.MakeSeed()} }

// lookup returns user's uid.
func (x *userIndex) lookup(ns names, user string) (int32, bool) {
	h := maphash.String(x.seed, user)
	t := &x.tabs[h>>56]
	if len(t.slots) == 0 {
		return 0, false
	}
	tag, mask := uint32(h), uint32(len(t.slots)-1)
	for i := tag & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return 0, false
		}
		if uint32(s>>32) == tag {
			if uid := int32(uint32(s) - 1); string(ns.of(uid)) == user {
				return uid, true
			}
		}
	}
}

// add indexes uid, whose id (in ns) the index does not hold.
func (x *userIndex) add(ns names, uid int32) {
	h := maphash.Bytes(x.seed, ns.of(uid))
	t := &x.tabs[h>>56]
	if 4*(t.n+1) > 3*len(t.slots) {
		t.grow()
	}
	t.put(uint64(uint32(h))<<32 | uint64(uid+1))
	t.n++
	x.n++
}

func (t *indexTable) put(slot uint64) {
	mask := uint32(len(t.slots) - 1)
	i := uint32(slot>>32) & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = slot
}

func (t *indexTable) grow() {
	old := t.slots
	t.slots = make([]uint64, max(16, 2*len(old)))
	for _, s := range old {
		if s != 0 {
			t.put(s)
		}
	}
}

// remove drops uid, whose id (in ns) the index holds, moving back the
// slots after it that probed past it.
func (x *userIndex) remove(ns names, uid int32) {
	h := maphash.Bytes(x.seed, ns.of(uid))
	t := &x.tabs[h>>56]
	mask := uint32(len(t.slots) - 1)
	i := uint32(h) & mask
	for uint32(t.slots[i]) != uint32(uid+1) {
		i = (i + 1) & mask
	}
	for j := i; ; {
		j = (j + 1) & mask
		s := t.slots[j]
		if s == 0 {
			break
		}
		// The slot at j stays unless its home is cyclically outside (i, j].
		if home := uint32(s>>32) & mask; i <= j && i < home && home <= j || i > j && (i < home || home <= j) {
			continue
		}
		t.slots[i] = s
		i = j
	}
	t.slots[i] = 0
	t.n--
	x.n--
}

// each visits every uid the index holds.
func (x *userIndex) each(yield func(uid int32)) {
	for _, t := range x.tabs {
		for _, s := range t.slots {
			if s != 0 {
				yield(int32(uint32(s) - 1))
			}
		}
	}
}
