package api

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	analyticsv1 "github.com/tideline/tideline/schemas/gen/tideline/analytics/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/analytics/v1/analyticsv1connect"
)

// EventLog is the whole event log as the analytics service reads it.
// adapters/jetstream.Store implements it.
type EventLog interface {
	// LastPosition returns the log's last commit position.
	LastPosition(ctx context.Context) (uint64, error)
	// FirstPositionAt returns the position of the first commit recorded at or
	// after t, or LastPosition + 1 when there is none.
	FirstPositionAt(ctx context.Context, t time.Time) (uint64, error)
	// Read hands fn the selected commits in order, in batches; with
	// sel.To 0 it follows the log until ctx ends (see es.LogBatch).
	Read(ctx context.Context, sel es.Selection, fn func(es.LogBatch) error) error
}

// AnalyticsServices serves tideline.analytics.v1.AnalyticsService over
// log: exports of a range of events and catch-up subscriptions, for
// admins.
func AnalyticsServices(log EventLog) []Service {
	return []Service{{Name: analyticsv1connect.AnalyticsServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return analyticsv1connect.NewAnalyticsServiceHandler(&analyticsHandler{rt: rt, log: log}, opts)
	}}}
}

type analyticsHandler struct {
	rt  *runtime
	log EventLog
}

// maxFilterItems bounds each list of an EventFilter.
const maxFilterItems = 100

// filter is an EventFilter, checked.
type filter struct {
	contexts []string
	streams  []es.StreamID
	types    map[string]struct{} // nil: every type
}

func parseFilter(f *analyticsv1.EventFilter) (filter, error) {
	var out filter
	for field, n := range map[string]int{"filter.contexts": len(f.GetContexts()), "filter.types": len(f.GetTypes()), "filter.streams": len(f.GetStreams())} {
		if n > maxFilterItems {
			return out, es.Invalidf(field, "at most %d, got %d", maxFilterItems, n)
		}
	}
	for _, c := range f.GetContexts() {
		if err := es.ValidateToken("filter.contexts", c); err != nil {
			return out, err
		}
		out.contexts = append(out.contexts, c)
	}
	for _, s := range f.GetStreams() {
		id, err := es.ParseStreamID("ev." + strings.TrimPrefix(s, "ev."))
		if err == nil {
			err = id.Validate()
		}
		if err != nil {
			return out, es.Invalidf("filter.streams", "%q is not <context>.<type>.<id>", s)
		}
		out.streams = append(out.streams, id)
	}
	if len(f.GetTypes()) > 0 {
		out.types = map[string]struct{}{}
		for _, t := range f.GetTypes() {
			full, err := EventTypeName(t)
			if err != nil {
				return out, err
			}
			out.types[full] = struct{}{}
		}
	}
	return out, nil
}

func (f filter) selection(from, to uint64) es.Selection {
	sel := es.Selection{From: from, To: to, Contexts: f.contexts, Streams: f.streams}
	for t := range f.types {
		sel.Types = append(sel.Types, t)
	}
	return sel
}

var (
	shortNamesOnce sync.Once
	shortNames     map[string][]string // short name -> fully qualified tideline.* names
)

// EventTypeName returns the fully qualified name of the message type
// named name: its fully qualified name, or its short name when exactly
// one tideline.* type has it. An unknown or ambiguous name is an
// es.Invalid error on filter.types.
func EventTypeName(name string) (string, error) {
	if _, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name)); err == nil {
		return name, nil
	}
	shortNamesOnce.Do(func() {
		shortNames = map[string][]string{}
		protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
			d := mt.Descriptor()
			if strings.HasPrefix(string(d.FullName()), "tideline.") {
				shortNames[string(d.Name())] = append(shortNames[string(d.Name())], string(d.FullName()))
			}
			return true
		})
		for _, names := range shortNames {
			sort.Strings(names)
		}
	})
	switch full := shortNames[name]; len(full) {
	case 1:
		return full[0], nil
	case 0:
		return "", es.Invalidf("filter.types", "no event type is named %q", name)
	default:
		return "", es.Invalidf("filter.types", "%q names several types (%s): give the full name", name, strings.Join(full, ", "))
	}
}

// recorded turns c's events that f selects and that lie after after into
// RecordedEvents.
func (f filter) recorded(c es.Commit, after es.Position, out []*analyticsv1.RecordedEvent) ([]*analyticsv1.RecordedEvent, error) {
	commitID := ""
	if len(c.Events) > 0 {
		commitID = c.Events[0].ID
	}
	stream := strings.TrimPrefix(c.Stream.String(), "ev.")
	for _, e := range c.Events {
		if e.Position.Seq < after.Seq || (e.Position.Seq == after.Seq && e.Position.Index <= after.Index) {
			continue
		}
		if _, ok := f.types[e.Type]; f.types != nil && !ok {
			continue
		}
		r := &analyticsv1.RecordedEvent{
			Position: &analyticsv1.Position{Seq: e.Position.Seq, Index: e.Position.Index},
			CommitId: commitID, EventId: e.ID, Stream: stream, Type: e.Type,
			OccurredAt: timestamppb.New(e.OccurredAt), RecordedAt: timestamppb.New(e.RecordedAt),
			Actor: e.Meta.Actor, Source: e.Meta.Source, CorrelationId: e.Meta.CorrelationID, CausationId: e.Meta.CausationID,
		}
		if e.Data != nil {
			v, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.Data)
			if err != nil {
				return out, es.Wrap(es.Internal, "marshal "+e.Type, err)
			}
			r.Data = &anypb.Any{TypeUrl: "type.googleapis.com/" + e.Type, Value: v}
		}
		out = append(out, r)
	}
	return out, nil
}

// ExportEvents streams the selected events up to the log's end as of the call.
func (h *analyticsHandler) ExportEvents(ctx context.Context, req *connect.Request[analyticsv1.ExportEventsRequest], s *connect.ServerStream[analyticsv1.ExportEventsResponse]) error {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return err
	}
	m := req.Msg
	f, err := parseFilter(m.Filter)
	if err != nil {
		return err
	}
	if m.ToPosition > 0 && m.ToPosition < m.FromPosition {
		return es.Invalidf("to_position", "%d is before from_position %d", m.ToPosition, m.FromPosition)
	}
	var since, until time.Time
	if m.Since != nil {
		if since, err = validTime("since", m.Since); err != nil {
			return err
		}
	}
	if m.Until != nil {
		if until, err = validTime("until", m.Until); err != nil {
			return err
		}
		if m.Since != nil && !until.After(since) {
			return es.Invalidf("until", "%s is not after since %s", until.Format(time.RFC3339Nano), since.Format(time.RFC3339Nano))
		}
	}
	last, err := h.log.LastPosition(ctx)
	if err != nil {
		return es.Wrap(es.Unavailable, "event store unreachable", err)
	}
	first, end := max(m.FromPosition, 1), last
	if m.ToPosition > 0 {
		end = min(end, m.ToPosition)
	}
	if m.Since != nil {
		p, err := h.log.FirstPositionAt(ctx, since)
		if err != nil {
			return err
		}
		first = max(first, p)
	}
	if m.Until != nil {
		p, err := h.log.FirstPositionAt(ctx, until)
		if err != nil {
			return err
		}
		end = min(end, p-1)
	}
	progress := func(pos uint64, events []*analyticsv1.RecordedEvent) *analyticsv1.ExportEventsResponse {
		return &analyticsv1.ExportEventsResponse{Events: events, FirstPosition: first, LastPosition: end, Position: pos}
	}
	if first > end { // nothing selected: say so, with the range
		return sendWithin(ctx, h.rt.SendTimeout, s, progress(end, nil))
	}
	return h.log.Read(ctx, f.selection(first, end), func(b es.LogBatch) error {
		var events []*analyticsv1.RecordedEvent
		for _, c := range b.Commits {
			if events, err = f.recorded(c, es.Position{}, events); err != nil {
				return err
			}
		}
		return sendWithin(ctx, h.rt.SendTimeout, s, progress(b.Position, events))
	})
}

// Subscribe streams the matching history, then follows the log live.
func (h *analyticsHandler) Subscribe(ctx context.Context, req *connect.Request[analyticsv1.SubscribeRequest], s *connect.ServerStream[analyticsv1.SubscribeResponse]) error {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return err
	}
	m := req.Msg
	f, err := parseFilter(m.Filter)
	if err != nil {
		return err
	}
	var after es.Position
	from := uint64(1)
	switch start := m.Start.(type) {
	case *analyticsv1.SubscribeRequest_AfterPosition:
		after = es.Position{Seq: start.AfterPosition.GetSeq(), Index: start.AfterPosition.GetIndex()}
		last, err := h.log.LastPosition(ctx)
		if err != nil {
			return es.Wrap(es.Unavailable, "event store unreachable", err)
		}
		if after.Seq > last {
			return &es.Error{Kind: es.OutOfRange, Field: "after_position", Message: fmt.Sprintf("%d is past the last written position %d", after.Seq, last)}
		}
		from = max(after.Seq, 1)
	case *analyticsv1.SubscribeRequest_FromTime:
		t, err := validTime("from_time", start.FromTime)
		if err != nil {
			return err
		}
		if from, err = h.log.FirstPositionAt(ctx, t); err != nil {
			return err
		}
	}
	release, err := h.rt.liveSlot()
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.rt.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	caughtUp := false
	err = h.log.Read(ctx, f.selection(from, 0), func(b es.LogBatch) error {
		var events []*analyticsv1.RecordedEvent
		for _, c := range b.Commits {
			if events, err = f.recorded(c, after, events); err != nil {
				return err
			}
		}
		res := &analyticsv1.SubscribeResponse{Events: events, CaughtUp: b.CaughtUp && !caughtUp}
		caughtUp = caughtUp || b.CaughtUp
		if len(events) == 0 && !res.CaughtUp {
			return nil
		}
		return sendWithin(ctx, h.rt.SendTimeout, s, res)
	})
	if ctx.Err() != nil {
		return nil // the client left or the server closes
	}
	return err
}
