package projections

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Framed is a snapshot format for models that are a set of protobuf
// messages: Magic, the position as 8 little-endian bytes, then each
// message as a uvarint length and its deterministic encoding.
type Framed struct {
	Magic string // names the model and format version, e.g. "tlsafety1"
}

// Marshal encodes pos and msgs, in the given order.
func (f Framed) Marshal(pos uint64, msgs []proto.Message) ([]byte, error) {
	b := binary.LittleEndian.AppendUint64([]byte(f.Magic), pos)
	opts := proto.MarshalOptions{Deterministic: true}
	for _, m := range msgs {
		b = binary.AppendUvarint(b, uint64(opts.Size(m)))
		var err error
		if b, err = opts.MarshalAppend(b, m); err != nil {
			return nil, fmt.Errorf("%s snapshot: encode: %w", f.Magic, err)
		}
	}
	return b, nil
}

// Unmarshal decodes data, calling each with every message decoded into a
// fresh message from newMsg, and returns the position. It fails on a bad
// header, truncation, an undecodable message, or an error from each.
func (f Framed) Unmarshal(data []byte, newMsg func() proto.Message, each func(proto.Message) error) (uint64, error) {
	if len(data) < len(f.Magic)+8 || string(data[:len(f.Magic)]) != f.Magic {
		return 0, fmt.Errorf("%s snapshot: bad header", f.Magic)
	}
	pos := binary.LittleEndian.Uint64(data[len(f.Magic):])
	rest := data[len(f.Magic)+8:]
	for len(rest) > 0 {
		l, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < l {
			return 0, fmt.Errorf("%s snapshot: %w", f.Magic, errTruncated)
		}
		m := newMsg()
		if err := proto.Unmarshal(rest[k:k+int(l)], m); err != nil {
			return 0, fmt.Errorf("%s snapshot: %w", f.Magic, err)
		}
		if err := each(m); err != nil {
			return 0, fmt.Errorf("%s snapshot: %w", f.Magic, err)
		}
		rest = rest[k+int(l):]
	}
	return pos, nil
}

var errTruncated = errors.New("truncated")
