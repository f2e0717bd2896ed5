package devicegate

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
	"github.com/tideline/tideline/wire"
)

// decoded is a device commit as read: its events, and per event its
// occurred_at and, when the event can be stored as sent (no unknown
// fields), its payload bytes.
type decoded struct {
	events []es.Event
	stamps []*timestamppb.Timestamp
	raw    [][]byte
}

// decode reads a device commit: a tideline.es.v1.Commit whose events of
// lane's type are decoded (others keep nil Data, for the domain to
// refuse). Nothing rides along unchecked: unknown fields are dropped
// (their events are encoded again), and a missing occurred_at is the
// receipt time.
func decode(lane safety.DeviceLane, data []byte, receivedAt time.Time) (decoded, error) {
	var c esv1.Commit
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, &c); err != nil {
		return decoded{}, es.Invalidf("commit", "not a tideline.es.v1.Commit: %v", err)
	}
	want := lane.EventType()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(want))
	if err != nil {
		return decoded{}, es.Invalidf("lane", "%s is not known to this hub", want)
	}
	d := decoded{events: make([]es.Event, len(c.Events)), stamps: make([]*timestamppb.Timestamp, len(c.Events)), raw: make([][]byte, len(c.Events))}
	for i, e := range c.Events {
		d.stamps[i] = e.OccurredAt
		if d.stamps[i] == nil {
			d.stamps[i] = timestamppb.New(receivedAt)
		} else if err := e.OccurredAt.CheckValid(); err != nil {
			return decoded{}, es.Invalidf(fmt.Sprintf("events[%d].occurred_at", i), "%v", err)
		}
		d.events[i] = es.Event{ID: e.Id, Type: e.Type, OccurredAt: d.stamps[i].AsTime()}
		if e.Type != want {
			continue
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(e.Data, m); err != nil {
			return decoded{}, es.Invalidf(fmt.Sprintf("events[%d].data", i), "not a %s: %v", want, err)
		}
		if len(m.ProtoReflect().GetUnknown()) == 0 {
			d.raw[i] = e.Data
		} else {
			m.ProtoReflect().SetUnknown(nil)
		}
		d.events[i].Data = m
	}
	return d, nil
}

// encode appends admitted events to buf, an EVENTS commit being built,
// and their types to types. An event the domain admitted unchanged is
// stored as the device sent it (the same message, not encoded again).
func encode(buf []byte, types []string, d decoded, admitted []es.Event) ([]byte, []string, error) {
	for i, e := range admitted {
		b := d.raw[i]
		if b == nil || e.Data != d.events[i].Data {
			var err error
			if b, err = proto.Marshal(e.Data); err != nil {
				return nil, nil, fmt.Errorf("marshal event: %w", err)
			}
		}
		types = append(types, e.Type)
		buf = wire.AppendEvent(buf, e.ID, e.Type, d.stamps[i], b)
	}
	return buf, types, nil
}

// headerValue makes s safe and short as a header value.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}
