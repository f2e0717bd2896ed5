package wire

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
)

// AppendEvent writes exactly what proto.Marshal writes for the event.
func TestAppendEventIsProtoMarshal(t *testing.T) {
	for _, tc := range []struct {
		id, typ string
		at      *timestamppb.Timestamp
		data    []byte
	}{
		{"01J", "tideline.safety.v1.DangerDetected", timestamppb.New(time.Unix(1780000000, 123456789)), []byte{1, 2, 3}},
		{"x", "t", timestamppb.New(time.Unix(0, 0)), nil},
		{"x", "t", timestamppb.New(time.Unix(-62135596800, 0)), make([]byte, 300)},
		{"x", "t", &timestamppb.Timestamp{Seconds: math.MaxInt64, Nanos: 999999999}, []byte{0}},
		{"", "", &timestamppb.Timestamp{Nanos: 1}, nil},
	} {
		want, err := proto.Marshal(&esv1.Commit{Events: []*esv1.Event{{Id: tc.id, Type: tc.typ, OccurredAt: tc.at, Data: tc.data}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendEvent(nil, tc.id, tc.typ, tc.at, tc.data); string(got) != string(want) {
			t.Errorf("%v:\n got %x\nwant %x", tc, got, want)
		}
	}
}
