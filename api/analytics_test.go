package api_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	analyticsv1 "github.com/tideline/tideline/schemas/gen/tideline/analytics/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/analytics/v1/analyticsv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// appendSteps appends one StepsRecorded to ev.analytics-test.day.<user>.
func appendSteps(tb testing.TB, f *servertest.Server, user string, steps int32) es.Position {
	tb.Helper()
	res, err := f.Store.Append(context.Background(), es.StreamID{Context: "analytics-test", Type: "day", ID: user},
		[]proto.Message{&stepsv1.StepsRecorded{UserId: user, Date: "2026-01-01", Steps: steps}}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
	if err != nil {
		tb.Error(err)
	}
	return res.Position
}

// exportAll reads a whole export and returns its events.
func exportAll(c analyticsv1connect.AnalyticsServiceClient, tok string, req *analyticsv1.ExportEventsRequest) ([]*analyticsv1.RecordedEvent, error) {
	s, err := c.ExportEvents(context.Background(), withToken(req, tok))
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out []*analyticsv1.RecordedEvent
	for s.Receive() {
		out = append(out, s.Msg().Events...)
	}
	return out, s.Err()
}

func TestExportEvents(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := analyticsv1connect.NewAnalyticsServiceClient(h2c, f.URL)
	admin := f.Token(t, "ops", auth.Admin)
	first := appendSteps(t, f, "ann", 10)
	appendSteps(t, f, "bob", 20)
	last := appendSteps(t, f, "ann", 30)
	testOnly := &analyticsv1.EventFilter{Contexts: []string{"analytics-test"}}

	t.Run("by_context_and_short_type", func(t *testing.T) {
		got, err := exportAll(c, admin, &analyticsv1.ExportEventsRequest{Filter: &analyticsv1.EventFilter{Contexts: []string{"analytics-test"}, Types: []string{"StepsRecorded"}}})
		if err != nil || len(got) != 3 {
			t.Fatalf("export: %d events, %v; want 3", len(got), err)
		}
		e := got[0]
		var data stepsv1.StepsRecorded
		if err := e.Data.UnmarshalTo(&data); err != nil || data.Steps != 10 || e.Position.Seq != first.Seq || e.Stream != "analytics-test.day.ann" ||
			e.Type != "tideline.steps.v1.StepsRecorded" || e.CommitId != e.EventId || e.RecordedAt.AsTime().IsZero() {
			t.Fatalf("first event %v (%v)", e, err)
		}
	})
	t.Run("by_stream_and_position", func(t *testing.T) {
		got, err := exportAll(c, admin, &analyticsv1.ExportEventsRequest{FromPosition: first.Seq + 1, ToPosition: last.Seq,
			Filter: &analyticsv1.EventFilter{Streams: []string{"analytics-test.day.ann"}}})
		if err != nil || len(got) != 1 || got[0].Position.Seq != last.Seq {
			t.Fatalf("export: %v, %v; want the one at %d", got, err, last.Seq)
		}
	})
	t.Run("by_time", func(t *testing.T) {
		got, err := exportAll(c, admin, &analyticsv1.ExportEventsRequest{Since: timestamppb.New(time.Now().Add(time.Hour)), Filter: testOnly})
		if err != nil || len(got) != 0 {
			t.Fatalf("export since in an hour: %d events, %v", len(got), err)
		}
		got, err = exportAll(c, admin, &analyticsv1.ExportEventsRequest{Since: timestamppb.New(time.Now().Add(-time.Hour)), Until: timestamppb.Now(), Filter: testOnly})
		if err != nil || len(got) != 3 {
			t.Fatalf("export of the last hour: %d events, %v", len(got), err)
		}
	})
	for _, tc := range []struct {
		name  string
		req   *analyticsv1.ExportEventsRequest
		field string
	}{
		{"unknown_type", &analyticsv1.ExportEventsRequest{Filter: &analyticsv1.EventFilter{Types: []string{"NoSuchEvent"}}}, "filter.types"},
		{"bad_context", &analyticsv1.ExportEventsRequest{Filter: &analyticsv1.EventFilter{Contexts: []string{"a.b"}}}, "filter.contexts"},
		{"bad_stream", &analyticsv1.ExportEventsRequest{Filter: &analyticsv1.EventFilter{Streams: []string{"steps.day"}}}, "filter.streams"},
		{"until_before_since", &analyticsv1.ExportEventsRequest{Since: timestamppb.Now(), Until: timestamppb.New(time.Now().Add(-time.Hour))}, "until"},
		{"to_before_from", &analyticsv1.ExportEventsRequest{FromPosition: 5, ToPosition: 2}, "to_position"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := exportAll(c, admin, tc.req)
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("export: %v; want InvalidArgument naming %s", err, tc.field)
			}
		})
	}
}

func TestAnalyticsNeedsAdmin(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := analyticsv1connect.NewAnalyticsServiceClient(h2c, f.URL)
	for _, tc := range []struct {
		name string
		tok  string
		code connect.Code
	}{
		{"enterprise_denied", f.Token(t, "ops", auth.Enterprise), connect.CodePermissionDenied},
		{"rider_denied", f.Token(t, "r1", auth.Rider), connect.CodePermissionDenied},
		{"no_token", "", connect.CodeUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exportAll(c, tc.tok, &analyticsv1.ExportEventsRequest{}); connect.CodeOf(err) != tc.code {
				t.Errorf("ExportEvents: %v; want %v", err, tc.code)
			}
			s, err := c.Subscribe(context.Background(), withToken(&analyticsv1.SubscribeRequest{}, tc.tok))
			if err == nil {
				s.Receive()
				err = s.Err()
				s.Close()
			}
			if connect.CodeOf(err) != tc.code {
				t.Errorf("Subscribe: %v; want %v", err, tc.code)
			}
		})
	}
}

// TestSubscribeResumesWithoutGapOrRepeat appends events concurrently while
// a subscriber reads some, drops the connection, and resumes from the last
// position it saw, several times: what it received is every appended
// event, once each, in order.
func TestSubscribeResumesWithoutGapOrRepeat(t *testing.T) {
	t.Parallel()
	f := start(t)
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			c := analyticsv1connect.NewAnalyticsServiceClient(h2c, f.URL, proto.opts...)
			admin := f.Token(t, "ops", auth.Admin)
			user := "sub-" + proto.name
			const n = 600
			appendSteps(t, f, user, 0) // history before the first subscription
			var mu sync.Mutex
			appended := []uint64{}
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 1; i < n; i++ {
					p := appendSteps(t, f, user, int32(i))
					mu.Lock()
					appended = append(appended, p.Seq)
					mu.Unlock()
				}
			})
			filter := &analyticsv1.EventFilter{Streams: []string{"analytics-test.day." + user}}
			var got []*analyticsv1.RecordedEvent
			req := &analyticsv1.SubscribeRequest{Filter: filter}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for session := 0; len(got) < n; session++ {
				if len(got) > 0 {
					last := got[len(got)-1].Position
					req = &analyticsv1.SubscribeRequest{Start: &analyticsv1.SubscribeRequest_AfterPosition{AfterPosition: last}, Filter: filter}
				}
				sctx, drop := context.WithCancel(ctx)
				s, err := c.Subscribe(sctx, withToken(req, admin))
				if err != nil {
					t.Fatal(err)
				}
				quota := n/4 + session // drop the connection after this many events (or when done)
				for read := 0; read < quota && len(got) < n && s.Receive(); {
					got = append(got, s.Msg().Events...)
					read += len(s.Msg().Events)
				}
				if err := s.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
					t.Fatalf("session %d: %v", session, err)
				}
				drop()
				s.Close()
				if ctx.Err() != nil {
					t.Fatalf("got %d of %d events in 30 s", len(got), n)
				}
			}
			wg.Wait()
			want := append([]uint64{got[0].Position.Seq}, appended...)
			if len(got) != len(want) {
				t.Fatalf("received %d events; want %d", len(got), len(want))
			}
			for i, e := range got {
				var d stepsv1.StepsRecorded
				if err := e.Data.UnmarshalTo(&d); err != nil || e.Position.Seq != want[i] || d.Steps != int32(i) {
					t.Fatalf("event %d: steps %d at %d; want steps %d at %d (%v)", i, d.Steps, e.Position.Seq, i, want[i], err)
				}
			}
		})
	}
}

func TestSubscribeSaysWhenCaughtUp(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := analyticsv1connect.NewAnalyticsServiceClient(h2c, f.URL)
	admin := f.Token(t, "ops", auth.Admin)
	appendSteps(t, f, "cu", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.Subscribe(ctx, withToken(&analyticsv1.SubscribeRequest{Filter: &analyticsv1.EventFilter{Contexts: []string{"analytics-test"}}}, admin))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var events int
	for s.Receive() {
		events += len(s.Msg().Events)
		if s.Msg().CaughtUp {
			break
		}
	}
	if events != 1 {
		t.Fatalf("caught up after %d events (%v); want 1", events, s.Err())
	}
	appendSteps(t, f, "cu", 2)
	if !s.Receive() || len(s.Msg().Events) != 1 || s.Msg().CaughtUp {
		t.Fatalf("live: %v, %v", s.Msg(), s.Err())
	}
	past, err := c.Subscribe(ctx, withToken(&analyticsv1.SubscribeRequest{Start: &analyticsv1.SubscribeRequest_AfterPosition{AfterPosition: &analyticsv1.Position{Seq: 1 << 40}}}, admin))
	if err == nil {
		past.Receive()
		err = past.Err()
		past.Close()
	}
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("after a position past the end: %v; want OutOfRange", err)
	}
}
