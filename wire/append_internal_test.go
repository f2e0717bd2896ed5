package wire

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
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

// AppendEventMessage writes exactly what proto.Marshal writes for the
// event with the message marshalled as its data, after what buf holds.
func TestAppendEventMessageIsProtoMarshal(t *testing.T) {
	for _, tc := range []struct {
		id, typ string
		at      time.Time
		m       proto.Message
	}{
		{"01J", "tideline.steps.v1.StepsRecorded", time.Unix(1780000000, 123456789), &stepsv1.StepsRecorded{UserId: "alice", Date: "2026-12-02", Steps: 9000}},
		{"x", "t", time.Unix(0, 0), &stepsv1.StepsRecorded{}},
		{"x", "t", time.Unix(-62135596800, 0), &stepsv1.StepsRecorded{UserId: strings.Repeat("u", 300)}},
		{"", "", time.Unix(0, 1), &stepsv1.StepsRecorded{Steps: -1}},
	} {
		data, err := proto.Marshal(tc.m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.Marshal(&esv1.Commit{Events: []*esv1.Event{{Id: tc.id, Type: tc.typ, OccurredAt: timestamppb.New(tc.at), Data: data}}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendEventMessage([]byte("prefix"), []byte(tc.id), tc.typ, tc.at, tc.m)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "prefix"+string(want) {
			t.Errorf("%v:\n got %x\nwant prefix%x", tc, got, want)
		}
	}
}
