package projections

import (
	"fmt"
	"iter"
	"maps"
	"strconv"
	"strings"
)

// PartCount is how many hash partitions a Parts has.
const PartCount = 64

// Parts is a model's keys (riders, alerts, ...) split into PartCount
// hash partitions, for a Segmented snapshot with a segment per
// partition: Apply marks the partition of each key it changes (Touch),
// and Capture issues a segment for every partition, encoding only the
// ones marked since the previous capture. The zero value has nothing
// marked and has issued nothing. Parts is not safe for concurrent use:
// the model's lock guards it.
type Parts struct {
	dirty  [PartCount]bool
	issued bool // a capture issued every partition's segment
}

// PartOf returns key's partition: FNV-1a, modulo PartCount.
func PartOf(key string) int {
	h := uint32(2166136261) // FNV-1a, inline: no allocation
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return int(h % PartCount)
}

// Touch marks key's partition changed.
func (p *Parts) Touch(key string) { p.dirty[PartOf(key)] = true }

// Capture returns a segment named prefix+"NN" for each partition, in
// order, with the Encode that encode(k) returns for partition k when it
// changed since the previous capture, the model was never captured, or
// full; and clears the marks. encode runs here, under the model's lock:
// it must only take what Encode needs (a copy of its headers, say), and
// leave the encoding to Encode.
func (p *Parts) Capture(prefix string, full bool, encode func(k int) func() ([]byte, error)) []Segment {
	segs := make([]Segment, PartCount)
	for k := range segs {
		segs[k].Name = PartName(prefix, k)
		if full || !p.issued || p.dirty[k] {
			segs[k].Encode = encode(k)
		}
	}
	p.dirty, p.issued = [PartCount]bool{}, true
	return segs
}

// Restored tells p that the model was restored from a capture's
// segments: they are stored, and nothing changed since.
func (p *Parts) Restored() { p.dirty, p.issued = [PartCount]bool{}, true }

// Reset forgets the marks and that anything was issued.
func (p *Parts) Reset() { *p = Parts{} }

// PartName is the segment name of partition k: prefix and two digits.
func PartName(prefix string, k int) string { return fmt.Sprintf("%s%02d", prefix, k) }

// ParsePart returns the partition a segment named by PartName holds, or
// false for any other name.
func ParsePart(prefix, name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, prefix)
	if !ok || len(digits) != 2 {
		return 0, false
	}
	k, err := strconv.Atoi(digits)
	if err != nil || k < 0 || k >= PartCount {
		return 0, false
	}
	return k, true
}

// Parted is a map whose keys are split as Parts splits them, so that a
// capture can hand a partition's map to an Encode running concurrently
// with Apply: Freeze returns partition k's map and leaves it unchanged
// for good, as the next Set or Delete in partition k changes a copy.
// Values are never changed in place: Set a changed copy instead. It
// marks the partitions it changes in the Parts it was made with. Like
// Parts it is guarded by the model's lock.
type Parted[V any] struct {
	marks  *Parts
	parts  [PartCount]map[string]V
	frozen [PartCount]bool
}

// NewParted returns an empty map that marks its changes in marks.
func NewParted[V any](marks *Parts) *Parted[V] {
	p := &Parted[V]{marks: marks}
	for k := range p.parts {
		p.parts[k] = map[string]V{}
	}
	return p
}

// Get returns key's value.
func (p *Parted[V]) Get(key string) (V, bool) {
	v, ok := p.parts[PartOf(key)][key]
	return v, ok
}

// Set sets key's value.
func (p *Parted[V]) Set(key string, v V) { p.own(key)[key] = v }

// Delete deletes key.
func (p *Parted[V]) Delete(key string) {
	if _, ok := p.Get(key); ok {
		delete(p.own(key), key)
	}
}

func (p *Parted[V]) own(key string) map[string]V {
	k := PartOf(key)
	if p.frozen[k] {
		p.parts[k], p.frozen[k] = maps.Clone(p.parts[k]), false
	}
	p.marks.dirty[k] = true
	return p.parts[k]
}

// Len returns the number of keys.
func (p *Parted[V]) Len() int {
	n := 0
	for _, part := range p.parts {
		n += len(part)
	}
	return n
}

// All yields every key and value, partition by partition.
func (p *Parted[V]) All() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		for _, part := range p.parts {
			for k, v := range part {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// Freeze returns partition k's map, which no Set or Delete changes from
// then on.
func (p *Parted[V]) Freeze(k int) map[string]V {
	p.frozen[k] = true
	return p.parts[k]
}

// Moved returns p marking its changes in marks instead, for a model that
// takes over another's map (a restore); p is not to be used after.
func (p *Parted[V]) Moved(marks *Parts) *Parted[V] {
	p.marks = marks
	return p
}
