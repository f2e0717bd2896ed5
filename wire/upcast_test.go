package wire_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tideline/tideline/domain/es"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/wire"
)

// The chain's versions: v1 an Int32Value, v2 an Int64Value (widened),
// v3 a StringValue (in decimal).
const (
	v1 = "google.protobuf.Int32Value"
	v2 = "google.protobuf.Int64Value"
	v3 = "google.protobuf.StringValue"
)

func up1to2(m proto.Message) (proto.Message, error) {
	return wrapperspb.Int64(int64(m.(*wrapperspb.Int32Value).Value)), nil
}

func up2to3(m proto.Message) (proto.Message, error) {
	return wrapperspb.String(fmt.Sprint(m.(*wrapperspb.Int64Value).Value)), nil
}

func TestUpcastersChain(t *testing.T) {
	var u wire.Upcasters
	u.Register(v2, v3, up2to3) // registered in any order
	u.Register(v1, v2, up1to2)
	cases := []struct {
		name string
		in   proto.Message
		want proto.Message
	}{
		{"v1_through_v2_to_v3", wrapperspb.Int32(-7), wrapperspb.String("-7")},
		{"v2_to_v3", wrapperspb.Int64(1 << 40), wrapperspb.String("1099511627776")},
		{"current_is_itself", wrapperspb.String("x"), wrapperspb.String("x")},
		{"no_upcaster_is_itself", wrapperspb.Bool(true), wrapperspb.Bool(true)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := u.Upcast(tc.in)
			if err != nil || !proto.Equal(got, tc.want) {
				t.Fatalf("upcast %v = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
	if in := wrapperspb.String("x"); mustUpcast(t, &u, in) != proto.Message(in) {
		t.Fatal("a current message was copied")
	}
	for cur, want := range map[string][]string{v3: {v1, v2}, v2: {v1}, v1: nil, "google.protobuf.BoolValue": nil} {
		got := u.Sources(cur)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("sources of %s = %v, want %v", cur, got, want)
		}
	}
}

func mustUpcast(t *testing.T, u *wire.Upcasters, m proto.Message) proto.Message {
	t.Helper()
	got, err := u.Upcast(m)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestUpcastErrorNamesTheType(t *testing.T) {
	refused := errors.New("refused")
	cases := []struct {
		name string
		up   wire.Upcaster
		want []string
	}{
		{"upcaster_fails", func(proto.Message) (proto.Message, error) { return nil, refused }, []string{v2, "refused"}},
		{"upcaster_returns_another_type", func(proto.Message) (proto.Message, error) { return wrapperspb.Bool(true), nil }, []string{v2, v3, "BoolValue"}},
		{"upcaster_returns_nil", func(proto.Message) (proto.Message, error) { return nil, nil }, []string{v2, v3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var u wire.Upcasters
			u.Register(v1, v2, up1to2)
			u.Register(v2, v3, tc.up)
			_, err := u.Upcast(wrapperspb.Int32(1))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			if tc.name == "upcaster_fails" && !errors.Is(err, refused) {
				t.Errorf("error %q does not wrap the upcaster's", err)
			}
		})
	}
}

func TestUpcastersRegisterRefusesDuplicatesAndCycles(t *testing.T) {
	cases := []struct {
		name     string
		from, to string
	}{
		{"second_upcaster_of_a_type", v1, v3},
		{"cycle", v3, v1},
		{"to_itself", v3, v3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var u wire.Upcasters
			u.Register(v1, v2, up1to2)
			u.Register(v2, v3, up2to3)
			defer func() {
				if recover() == nil {
					t.Fatalf("Register(%s, %s) did not panic", tc.from, tc.to)
				}
			}()
			u.Register(protoName(tc.from), protoName(tc.to), up1to2)
		})
	}
}

// storedAlertRaised is a commit as a Tideline of before AlertRaisedV2
// wrote it: one tideline.safety.v1.AlertRaised.
func storedAlertRaised(t *testing.T, reason string) []byte {
	t.Helper()
	data, err := proto.Marshal(&safetyv1.AlertRaised{AlertId: "alert-1", RiderId: "rider-1", Reason: reason,
		EventIds: []string{"e1"}, Severity: safetyv1.Severity_SEVERITY_HIGH, RaisedAt: timestamppb.New(time.Unix(1700000000, 0))})
	if err != nil {
		t.Fatal(err)
	}
	return wire.AppendEvent(nil, "01J00000000000000000000000", "tideline.safety.v1.AlertRaised", timestamppb.New(time.Unix(1700000000, 0)), data)
}

func TestDecodeCommitUpcastsStoredAlertRaised(t *testing.T) {
	stream := es.StreamID{Context: "safety", Type: "alert", ID: "alert-1"}
	c, err := wire.DecodeCommit(stream, 7, nats.Header{}, storedAlertRaised(t, "3 danger events within 10m0s"))
	if err != nil {
		t.Fatal(err)
	}
	want := &safetyv1.AlertRaisedV2{AlertId: "alert-1", RiderId: "rider-1", Reason: "3 danger events within 10m0s",
		EventIds: []string{"e1"}, Severity: safetyv1.Severity_SEVERITY_HIGH, RaisedAt: timestamppb.New(time.Unix(1700000000, 0)),
		Rule: safetyv1.AlertRule_ALERT_RULE_REPEATED_EVENTS}
	if len(c.Events) != 1 || c.Events[0].Type != "tideline.safety.v1.AlertRaisedV2" || !proto.Equal(c.Events[0].Data, want) {
		t.Fatalf("decoded %+v, want one %v", c.Events, want)
	}
	if got := wire.OlderTypes("tideline.safety.v1.AlertRaisedV2"); !slices.Equal(got, []string{"tideline.safety.v1.AlertRaised"}) {
		t.Fatalf("older types = %v", got)
	}

	_, err = wire.DecodeCommit(stream, 8, nats.Header{}, storedAlertRaised(t, "no rule here"))
	if es.KindOf(err) != es.Internal || !strings.Contains(err.Error(), "tideline.safety.v1.AlertRaised ") || !strings.Contains(err.Error(), "at 8") {
		t.Fatalf("err = %v, want an Internal error naming the type and position", err)
	}
}

func protoName(s string) protoreflect.FullName { return protoreflect.FullName(s) }
