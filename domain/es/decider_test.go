package es_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/es/estest"
)

// order is a tiny aggregate: placed once, any number of items, accepted
// by exactly one rider.
type order struct {
	placed     bool
	items      int
	acceptedBy string
}

type orderCmd struct {
	kind  string // place, add_item, accept
	rider string
}

var (
	errNotPlaced       = &es.Error{Kind: es.FailedPrecondition, Message: "order not placed"}
	errAlreadyAccepted = &es.Error{Kind: es.FailedPrecondition, Message: "order already accepted"}
)

var orderDecider = es.Decider[order, orderCmd]{
	Initial: func() order { return order{} },
	Decide: func(o order, c orderCmd) ([]proto.Message, error) {
		switch c.kind {
		case "place":
			if o.placed {
				return nil, nil // placing again changes nothing
			}
			return []proto.Message{wrapperspb.String("placed")}, nil
		case "add_item":
			if !o.placed {
				return nil, errNotPlaced
			}
			return []proto.Message{wrapperspb.String("item_added")}, nil
		case "accept":
			if !o.placed {
				return nil, errNotPlaced
			}
			if o.acceptedBy != "" {
				return nil, errAlreadyAccepted
			}
			return []proto.Message{wrapperspb.String("accepted:" + c.rider)}, nil
		}
		return nil, es.Invalidf("kind", "unknown command %q", c.kind)
	},
	Evolve: func(o order, e proto.Message) order {
		v := e.(*wrapperspb.StringValue).GetValue()
		switch {
		case v == "placed":
			o.placed = true
		case v == "item_added":
			o.items++
		case strings.HasPrefix(v, "accepted:"):
			o.acceptedBy = strings.TrimPrefix(v, "accepted:")
		}
		return o
	},
}

func TestOrderDecide(t *testing.T) {
	placed := order{placed: true}
	cases := []struct {
		name    string
		state   order
		cmd     orderCmd
		want    []string
		wantErr error
	}{
		{"new_order_can_be_placed", order{}, orderCmd{kind: "place"}, []string{"placed"}, nil},
		{"placing_twice_changes_nothing", placed, orderCmd{kind: "place"}, nil, nil},
		{"unplaced_order_cannot_be_accepted", order{}, orderCmd{kind: "accept", rider: "r1"}, nil, errNotPlaced},
		{"rider_can_accept_placed_order", placed, orderCmd{kind: "accept", rider: "r1"}, []string{"accepted:r1"}, nil},
		{"rider_cannot_accept_twice", order{placed: true, acceptedBy: "r1"}, orderCmd{kind: "accept", rider: "r2"}, nil, errAlreadyAccepted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			events, err := orderDecider.Decide(tc.state, tc.cmd)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			var got []string
			for _, e := range events {
				got = append(got, e.(*wrapperspb.StringValue).GetValue())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("events %v, want %v", got, tc.want)
			}
		})
	}
}

// countingStore counts calls to the store it wraps; with alwaysConflict
// every Append fails with es.ErrConflict and stores nothing.
type countingStore struct {
	es.Store
	alwaysConflict            bool
	appends, loads, conflicts atomic.Int64
}

func (s *countingStore) Append(ctx context.Context, stream es.StreamID, events []proto.Message, opts es.AppendOptions) (es.AppendResult, error) {
	s.appends.Add(1)
	if s.alwaysConflict {
		s.conflicts.Add(1)
		return es.AppendResult{}, es.ErrConflict
	}
	res, err := s.Store.Append(ctx, stream, events, opts)
	if errors.Is(err, es.ErrConflict) {
		s.conflicts.Add(1)
	}
	return res, err
}

func (s *countingStore) Load(ctx context.Context, stream es.StreamID, after uint64) ([]es.Commit, uint64, error) {
	s.loads.Add(1)
	return s.Store.Load(ctx, stream, after)
}

func openStore(tb testing.TB) es.Store {
	tb.Helper()
	_, nc := natstest.Start(tb)
	s, err := tljs.Open(context.Background(), nc, tljs.Config{})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	return s
}

func handle(tb testing.TB, r *es.Repository[order, orderCmd], stream es.StreamID, cmd orderCmd) es.AppendResult {
	tb.Helper()
	res, err := r.Handle(context.Background(), stream, cmd, es.AppendOptions{})
	if err != nil {
		tb.Fatalf("handle %s on %v: %v", cmd.kind, stream, err)
	}
	return res
}

func get(tb testing.TB, r *es.Repository[order, orderCmd], stream es.StreamID) (order, uint64) {
	tb.Helper()
	o, v, err := r.Get(context.Background(), stream)
	if err != nil {
		tb.Fatalf("get %v: %v", stream, err)
	}
	return o, v
}

func TestRepository(t *testing.T) {
	store := openStore(t)
	ctx := context.Background()

	t.Run("two_writers_race_exactly_one_wins", func(t *testing.T) {
		const riders = 20
		counted := &countingStore{Store: store}
		stream := estest.NewStream(t)
		handle(t, es.NewRepository(store, orderDecider, 0), stream, orderCmd{kind: "place"})

		// Each rider is its own process: its own repository and cache,
		// warmed on the placed order before the race starts.
		repos := make([]*es.Repository[order, orderCmd], riders)
		for i := range repos {
			repos[i] = es.NewRepository(counted, orderDecider, 0)
			get(t, repos[i], stream)
		}
		start := make(chan struct{})
		errs := make([]error, riders)
		var wg sync.WaitGroup
		for i, r := range repos {
			wg.Go(func() {
				<-start
				_, errs[i] = r.Handle(ctx, stream, orderCmd{kind: "accept", rider: fmt.Sprint("r", i)}, es.AppendOptions{})
			})
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("riders %d and %d both accepted", winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, errAlreadyAccepted):
				t.Errorf("rider %d: error %v (kind %v), want errAlreadyAccepted", i, err, es.KindOf(err))
			}
		}
		if winner < 0 {
			t.Fatalf("no rider accepted")
		}
		// Every loser decided on the stale placed order once, conflicted,
		// reloaded and was refused by Decide.
		if a, c := counted.appends.Load(), counted.conflicts.Load(); a != riders || c != riders-1 {
			t.Errorf("%d appends with %d conflicts, want %d with %d", a, c, riders, riders-1)
		}
		o, _ := get(t, es.NewRepository(store, orderDecider, 0), stream)
		if o.acceptedBy != fmt.Sprint("r", winner) {
			t.Errorf("stored order accepted by %q, want the winner r%d", o.acceptedBy, winner)
		}
		commits, _ := estest.MustLoad(t, store, stream, 0)
		if len(commits) != 2 {
			t.Errorf("stream holds %d commits, want placed and one accepted", len(commits))
		}
	})

	t.Run("stale_cache_reloads_and_decides_again", func(t *testing.T) {
		stream := estest.NewStream(t)
		a := es.NewRepository(store, orderDecider, 0)
		counted := &countingStore{Store: store}
		b := es.NewRepository(counted, orderDecider, 0)
		handle(t, a, stream, orderCmd{kind: "place"})
		get(t, b, stream)
		v2 := handle(t, a, stream, orderCmd{kind: "add_item"}).Position.Seq

		res := handle(t, b, stream, orderCmd{kind: "add_item"})
		if res.Position.Seq <= v2 || res.Duplicate {
			t.Errorf("result %+v, want a fresh commit after %d", res, v2)
		}
		if c, l := counted.conflicts.Load(), counted.loads.Load(); c != 1 || l != 2 {
			t.Errorf("%d conflicts and %d loads, want 1 and 2", c, l)
		}
		if o, v := get(t, b, stream); o.items != 2 || v != res.Position.Seq {
			t.Errorf("state %+v at version %d, want 2 items at %d", o, v, res.Position.Seq)
		}
	})

	t.Run("get_at_sees_what_another_writer_appended", func(t *testing.T) {
		// b caches the order, then a appends to it: b's Get may answer
		// from its cache, GetAt at the new commit must not.
		stream := estest.NewStream(t)
		a, b := es.NewRepository(store, orderDecider, 0), es.NewRepository(store, orderDecider, 0)
		handle(t, a, stream, orderCmd{kind: "place"})
		get(t, b, stream)
		res := handle(t, a, stream, orderCmd{kind: "add_item"})
		if o, v, _ := b.Get(ctx, stream); o.items != 0 || v >= res.Position.Seq {
			t.Fatalf("the test needs b's cache to be stale; got %+v at %d", o, v)
		}
		for _, at := range []uint64{res.Position.Seq, es.Latest} {
			o, v, err := b.GetAt(ctx, stream, at)
			if err != nil || o.items != 1 || v != res.Position.Seq {
				t.Fatalf("GetAt(%d) = %+v at %d, %v; want the item at %d", at, o, v, err, res.Position.Seq)
			}
		}
	})

	t.Run("retried_command_returns_original_result", func(t *testing.T) {
		// The retry reaches a repository whose cache predates the original,
		// as after a timeout or on another server.
		stream := estest.NewStream(t)
		a := es.NewRepository(store, orderDecider, 0)
		handle(t, a, stream, orderCmd{kind: "place"})
		b := es.NewRepository(store, orderDecider, 0)
		get(t, b, stream)
		opts := es.AppendOptions{IdempotencyKey: "accept-1"}
		cmd := orderCmd{kind: "accept", rider: "r1"}
		first, err := a.Handle(ctx, stream, cmd, opts)
		if err != nil {
			t.Fatalf("first accept: %v", err)
		}
		retry, err := b.Handle(ctx, stream, cmd, opts)
		if err != nil {
			t.Fatalf("retried accept: %v, want the original result", err)
		}
		if !retry.Duplicate || retry.Position != first.Position {
			t.Errorf("retry result %+v, want duplicate of %+v", retry, first.Position)
		}
		if o, _ := get(t, b, stream); o.acceptedBy != "r1" {
			t.Errorf("after the duplicate b sees %+v, want accepted by r1", o)
		}
	})

	t.Run("bounded_retry_returns_conflict", func(t *testing.T) {
		cases := []struct {
			name        string
			maxAttempts int // 0 keeps NewRepository's default
			want        int64
		}{
			{"default_five_attempts", 0, 5},
			{"one_attempt", 1, 1},
			{"three_attempts", 3, 3},
			{"non_positive_means_one", -1, 1},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				stream := estest.NewStream(t)
				handle(t, es.NewRepository(store, orderDecider, 0), stream, orderCmd{kind: "place"})
				conflicting := &countingStore{Store: store, alwaysConflict: true}
				r := es.NewRepository(conflicting, orderDecider, 0)
				if tc.maxAttempts != 0 {
					r.MaxAttempts = tc.maxAttempts
				}
				_, err := r.Handle(ctx, stream, orderCmd{kind: "add_item"}, es.AppendOptions{})
				if !errors.Is(err, es.ErrConflict) || es.KindOf(err) != es.Conflict {
					t.Fatalf("error %v (kind %v), want es.ErrConflict", err, es.KindOf(err))
				}
				// Each attempt reloads: a conflict means the cache is stale.
				if a, l := conflicting.appends.Load(), conflicting.loads.Load(); a != tc.want || l != tc.want {
					t.Errorf("%d appends and %d loads, want %d of each", a, l, tc.want)
				}
			})
		}
	})

	t.Run("no_event_decision_appends_nothing", func(t *testing.T) {
		stream := estest.NewStream(t)
		counted := &countingStore{Store: store}
		r := es.NewRepository(counted, orderDecider, 0)
		placed := handle(t, r, stream, orderCmd{kind: "place"})
		res := handle(t, r, stream, orderCmd{kind: "place"})
		if res != (es.AppendResult{Position: es.Position{Seq: placed.Position.Seq}}) {
			t.Errorf("result %+v, want the current version %d and no duplicate", res, placed.Position.Seq)
		}
		if a := counted.appends.Load(); a != 1 {
			t.Errorf("%d appends, want only the first place", a)
		}
		if commits, _ := estest.MustLoad(t, store, stream, 0); len(commits) != 1 {
			t.Errorf("stream holds %d commits, want 1", len(commits))
		}
	})

	t.Run("decide_error_appends_nothing", func(t *testing.T) {
		stream := estest.NewStream(t)
		counted := &countingStore{Store: store}
		r := es.NewRepository(counted, orderDecider, 0)
		_, err := r.Handle(ctx, stream, orderCmd{kind: "accept", rider: "r1"}, es.AppendOptions{})
		if !errors.Is(err, errNotPlaced) || es.KindOf(err) != es.FailedPrecondition {
			t.Errorf("error %v, want errNotPlaced", err)
		}
		if a := counted.appends.Load(); a != 0 {
			t.Errorf("%d appends, want none", a)
		}
	})

	t.Run("invalid_stream_is_rejected_before_loading", func(t *testing.T) {
		counted := &countingStore{Store: store}
		r := es.NewRepository(counted, orderDecider, 0)
		_, err := r.Handle(ctx, es.StreamID{Context: "orders", Type: "order", ID: "a.b"}, orderCmd{kind: "place"}, es.AppendOptions{})
		if es.KindOf(err) != es.Invalid {
			t.Errorf("error %v (kind %v), want invalid", err, es.KindOf(err))
		}
		if l := counted.loads.Load(); l != 0 {
			t.Errorf("%d loads, want none", l)
		}
	})

	t.Run("handle_caches_the_new_state", func(t *testing.T) {
		stream := estest.NewStream(t)
		counted := &countingStore{Store: store}
		r := es.NewRepository(counted, orderDecider, 0)
		handle(t, r, stream, orderCmd{kind: "place"})
		res := handle(t, r, stream, orderCmd{kind: "add_item"})
		o, v := get(t, r, stream)
		if o != (order{placed: true, items: 1}) || v != res.Position.Seq {
			t.Errorf("state %+v at %d, want placed with 1 item at %d", o, v, res.Position.Seq)
		}
		if l := counted.loads.Load(); l != 1 {
			t.Errorf("%d loads, want 1: later commands use the cached state", l)
		}
	})

	t.Run("cache_evicts_least_recently_used_at_limit", func(t *testing.T) {
		a, b, c := estest.NewStream(t), estest.NewStream(t), estest.NewStream(t)
		setup := es.NewRepository(store, orderDecider, 0)
		for _, s := range []es.StreamID{a, b, c} {
			handle(t, setup, s, orderCmd{kind: "place"})
		}
		counted := &countingStore{Store: store}
		r := es.NewRepository(counted, orderDecider, 2)
		steps := []struct {
			name      string
			stream    es.StreamID
			wantLoads int64
		}{
			{"miss_a", a, 1},
			{"miss_b", b, 2},
			{"hit_a_makes_b_oldest", a, 2},
			{"miss_c_evicts_b", c, 3},
			{"hit_a", a, 3},
			{"hit_c", c, 3},
			{"miss_b_evicts_a", b, 4},
			{"miss_a_evicts_c", a, 5},
			{"hit_b", b, 5},
		}
		for _, st := range steps {
			o, _ := get(t, r, st.stream)
			if !o.placed {
				t.Errorf("%s: state %+v, want placed", st.name, o)
			}
			if l := counted.loads.Load(); l != st.wantLoads {
				t.Fatalf("%s: %d loads, want %d", st.name, l, st.wantLoads)
			}
		}
	})
}
