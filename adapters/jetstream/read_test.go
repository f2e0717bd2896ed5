package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// readAll reads sel to its end and returns the positions of the commits read.
func readAll(tb testing.TB, s *tljs.Store, sel es.Selection) []uint64 {
	tb.Helper()
	var got []uint64
	err := s.Read(context.Background(), sel, func(b es.LogBatch) error {
		for _, c := range b.Commits {
			got = append(got, c.Seq)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

func appendSteps(tb testing.TB, s *tljs.Store, stream es.StreamID, steps int32) uint64 {
	tb.Helper()
	res, err := s.Append(context.Background(), stream, []proto.Message{&stepsv1.StepsRecorded{UserId: stream.ID, Date: "2026-01-01", Steps: steps}},
		es.AppendOptions{ExpectedVersion: es.AnyVersion})
	if err != nil {
		tb.Fatal(err)
	}
	return res.Position.Seq
}

func TestReadSelectsByRangeContextStreamAndType(t *testing.T) {
	s := openStore(t, tljs.Config{})
	a := es.StreamID{Context: "steps", Type: "day", ID: "a"}
	b := es.StreamID{Context: "steps", Type: "day", ID: "b"}
	c := es.StreamID{Context: "other", Type: "day", ID: "c"}
	for i, st := range []es.StreamID{a, b, c, a, b, c} { // positions 1..6
		appendSteps(t, s, st, int32(i))
	}
	cases := []struct {
		name string
		sel  es.Selection
		want []uint64
	}{
		{"everything", es.Selection{From: 1, To: 6}, []uint64{1, 2, 3, 4, 5, 6}},
		{"a_range", es.Selection{From: 2, To: 4}, []uint64{2, 3, 4}},
		{"a_context", es.Selection{From: 1, To: 6, Contexts: []string{"other"}}, []uint64{3, 6}},
		{"a_stream", es.Selection{From: 1, To: 6, Streams: []es.StreamID{b}}, []uint64{2, 5}},
		{"a_stream_outside_the_contexts", es.Selection{From: 1, To: 6, Contexts: []string{"other"}, Streams: []es.StreamID{b}}, nil},
		{"a_type", es.Selection{From: 1, To: 6, Types: []string{"tideline.steps.v1.StepsRecorded"}}, []uint64{1, 2, 3, 4, 5, 6}},
		{"a_type_never_written", es.Selection{From: 1, To: 6, Types: []string{"tideline.steps.v1.Nothing"}}, nil},
		{"ends_before_the_last_match", es.Selection{From: 1, To: 4, Contexts: []string{"other"}}, []uint64{3}},
		{"nothing_in_range", es.Selection{From: 4, To: 5, Contexts: []string{"other"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := readAll(t, s, tc.sel); !equalSeqs(got, tc.want) {
				t.Errorf("read %v; want %v", got, tc.want)
			}
		})
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReadFollowsTheLogLive(t *testing.T) {
	s := openStore(t, tljs.Config{})
	st := es.StreamID{Context: "steps", Type: "day", ID: "a"}
	appendSteps(t, s, st, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []uint64
	caughtUp := 0
	errDone := errors.New("done")
	err := s.Read(ctx, es.Selection{From: 1}, func(b es.LogBatch) error {
		for _, c := range b.Commits {
			got = append(got, c.Seq)
		}
		if b.CaughtUp {
			caughtUp++
			if caughtUp == 1 {
				appendSteps(t, s, st, 2) // from the callback: Read is waiting on it, not on the log
			}
		}
		if len(got) == 2 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) || !equalSeqs(got, []uint64{1, 2}) {
		t.Fatalf("read %v, %v; want [1 2] and the callback's error", got, err)
	}
}

func TestPositionAtUsesTheStoredTime(t *testing.T) {
	s := openStore(t, tljs.Config{})
	st := es.StreamID{Context: "steps", Type: "day", ID: "a"}
	before := time.Now()
	appendSteps(t, s, st, 1)
	time.Sleep(20 * time.Millisecond) // the store's clock must move between the two
	mid := time.Now()
	p2 := appendSteps(t, s, st, 2)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		at   time.Time
		want uint64
	}{
		{"before_everything", before.Add(-time.Hour), 1},
		{"between", mid, p2},
		{"after_everything", time.Now().Add(time.Hour), p2 + 1},
	} {
		if got, err := s.FirstPositionAt(ctx, tc.at); err != nil || got != tc.want {
			t.Errorf("%s: PositionAt = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}
