package steps

import (
	"bytes"
	"hash/maphash"
)

// The model's users: a uid per user id, and the ids back to back in one
// array. Nothing here holds a pointer per user, so 10M users cost the
// garbage collector nothing to scan, and about 16 bytes each beyond their
// ids' bytes (8 in names.at, 8 to 16 in the index).

// MaxUserID is the longest user id the model holds; a record with a
// longer one is ignored (the API accepts none).
const MaxUserID = 1<<idLenBits - 1

const idLenBits = 24

// names maps uids to user ids. A capture hands a copy of the struct to
// the Encodes it returns: bytes and offsets it can read are never
// rewritten while an Encode is pending (a uid is reused only once none
// is, see Model.newUser), and what grows is appended past what it sees.
type names struct {
	data []byte
	at   []uint64 // uid → offset<<idLenBits | length, in data
}

// of returns uid's id, aliasing data.
func (n names) of(uid int32) []byte {
	a := n.at[uid]
	off := a >> idLenBits
	return n.data[off : off+a&MaxUserID]
}

// str returns uid's id as a string.
func (n names) str(uid int32) string { return string(n.of(uid)) }

// compare orders uids by id.
func (n names) compare(a, b int32) int { return bytes.Compare(n.of(a), n.of(b)) }

// set gives uid the id user: in place of its previous id if that is at
// least as long, else appended. It returns the bytes that became garbage.
func (n *names) set(uid int32, user string) (garbage int) {
	if int(uid) == len(n.at) {
		n.at = append(n.at, 0)
	} else if old := n.at[uid]; int(old&MaxUserID) >= len(user) {
		off := old >> idLenBits
		copy(n.data[off:], user)
		n.at[uid] = off<<idLenBits | uint64(len(user))
		return int(old&MaxUserID) - len(user)
	} else {
		garbage = int(old & MaxUserID)
	}
	n.at[uid] = uint64(len(n.data))<<idLenBits | uint64(len(user))
	n.data = append(n.data, user...)
	return garbage
}

// compact returns n with the ids of live uids only, in new arrays; every
// other uid has an empty id.
func (n names) compact(live func(yield func(uid int32))) names {
	c := names{at: make([]uint64, len(n.at))}
	size := 0
	live(func(uid int32) { size += int(n.at[uid] & MaxUserID) })
	c.data = make([]byte, 0, size)
	live(func(uid int32) {
		c.at[uid] = uint64(len(c.data))<<idLenBits | n.at[uid]&MaxUserID
		c.data = append(c.data, n.of(uid)...)
	})
	return c
}

// userIndex maps user ids to uids: open addressing with linear probing.
// A slot holds a 32-bit hash of the id (whose low bits are the slot it
// belongs in) and the uid+1; 0 is an empty slot.
type userIndex struct {
	slots []uint64
	n     int // uids held
	seed  maphash.Seed
}

func newUserIndex() userIndex {
	return userIndex{slots: make([]uint64, 16), seed: maphash.MakeSeed()}
}

func (x *userIndex) hash(id []byte) uint32 { return uint32(maphash.Bytes(x.seed, id)) }

// lookup returns user's uid.
func (x *userIndex) lookup(ns names, user string) (int32, bool) {
	h := uint32(maphash.String(x.seed, user))
	mask := uint32(len(x.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s == 0 {
			return 0, false
		}
		if uint32(s>>32) == h {
			if uid := int32(uint32(s) - 1); string(ns.of(uid)) == user {
				return uid, true
			}
		}
	}
}

// add indexes uid, whose id (in ns) the index does not hold.
func (x *userIndex) add(ns names, uid int32) {
	if 4*(x.n+1) > 3*len(x.slots) {
		x.grow()
	}
	x.put(uint64(x.hash(ns.of(uid)))<<32 | uint64(uid+1))
	x.n++
}

func (x *userIndex) put(slot uint64) {
	mask := uint32(len(x.slots) - 1)
	i := uint32(slot>>32) & mask
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = slot
}

func (x *userIndex) grow() {
	old := x.slots
	x.slots = make([]uint64, 2*len(old))
	for _, s := range old {
		if s != 0 {
			x.put(s)
		}
	}
}

// remove drops uid, whose id (in ns) the index holds, moving back the
// slots after it that probed past it.
func (x *userIndex) remove(ns names, uid int32) {
	mask := uint32(len(x.slots) - 1)
	i := x.hash(ns.of(uid)) & mask
	for uint32(x.slots[i]) != uint32(uid+1) {
		i = (i + 1) & mask
	}
	for j := i; ; {
		j = (j + 1) & mask
		s := x.slots[j]
		if s == 0 {
			break
		}
		// The slot at j stays unless its home is cyclically outside (i, j].
		if home := uint32(s>>32) & mask; i <= j && i < home && home <= j || i > j && (i < home || home <= j) {
			continue
		}
		x.slots[i] = s
		i = j
	}
	x.slots[i] = 0
	x.n--
}

// each visits every uid the index holds.
func (x *userIndex) each(yield func(uid int32)) {
	for _, s := range x.slots {
		if s != 0 {
			yield(int32(uint32(s) - 1))
		}
	}
}
