package devicegate

import (
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"

	"github.com/tideline/tideline/wire"
)

// index is the newest refused commits, read from the quarantine stream's
// headers (so every gate sharing the stream lists every refusal).
type index struct {
	mu   sync.Mutex
	ring []*adminv1.RejectedDeviceCommit
	next int
	full bool
}

func newIndex(n int) *index { return &index{ring: make([]*adminv1.RejectedDeviceCommit, n)} }

// add records one quarantine message (headers only).
func (x *index) add(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	h := m.Headers()
	u := func(k string) uint64 { n, _ := strconv.ParseUint(h.Get(k), 10, 64); return n }
	r := &adminv1.RejectedDeviceCommit{
		DeviceId: h.Get(wire.HeaderDevice), RiderId: h.Get(wire.HeaderRider), Lane: h.Get(wire.HeaderLane),
		Code: h.Get(wire.HeaderRejectCode), Reason: h.Get(wire.HeaderRejectReason),
		RejectedAt: timestamppb.New(md.Timestamp), SizeBytes: int64(u("Nats-Msg-Size")), QuarantineSeq: md.Sequence.Stream,
		EdgeEpoch: h.Get(wire.HeaderEdgeEpoch), EdgeFirstSeq: u(wire.HeaderEdgeFirstSeq), EdgeLastSeq: u(wire.HeaderEdgeSeq),
	}
	if at, err := time.Parse(time.RFC3339Nano, h.Get(wire.HeaderReceivedAt)); err == nil {
		r.ReceivedAt = timestamppb.New(at)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ring[x.next] = r
	x.next = (x.next + 1) % len(x.ring)
	x.full = x.full || x.next == 0
}

// Rejected returns up to limit of the commits the gate refused, newest
// first, of device (empty: every device), and how many it keeps track of
// for device: the newest 10000 refusals of all devices. The commits
// themselves stay in the quarantine stream at QuarantineSeq.
func (g *Gate) Rejected(device string, limit int) ([]*adminv1.RejectedDeviceCommit, int) {
	x := g.rejected
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.next
	if x.full {
		n = len(x.ring)
	}
	var out []*adminv1.RejectedDeviceCommit
	total := 0
	for i := 1; i <= n; i++ {
		r := x.ring[(x.next-i+len(x.ring))%len(x.ring)]
		if device != "" && r.DeviceId != device {
			continue
		}
		total++
		if len(out) < limit {
			out = append(out, proto.Clone(r).(*adminv1.RejectedDeviceCommit))
		}
	}
	return out, total
}
