package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
)

// TestRidersRacingToAcceptOneOrder runs 20 riders accepting the same
// order at once through the real JetStream store, over four services
// (each with its own repository cache, as on four API nodes, so no cache
// serializes them): exactly one wins and every other gets
// ErrOrderAlreadyTaken, never Aborted. Repeated over 5 orders.
func TestRidersRacingToAcceptOneOrder(t *testing.T) {
	const riders, services, rounds = 20, 4, 5
	_, nc := natstest.Start(t)
	ctx := context.Background()
	store, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	svcs := make([]*delivery.Service, services)
	for i := range svcs {
		svcs[i] = delivery.NewService(store, 0, nil)
	}
	for round := range rounds {
		id := fmt.Sprintf("race-%d", round)
		cmd := place
		cmd.OrderID = id
		if _, err := svcs[0].Execute(ctx, shop, cmd); err != nil {
			t.Fatal(err)
		}
		for _, s := range svcs { // every cache holds the placed order
			if _, _, err := s.Get(ctx, admin, id); err != nil {
				t.Fatal(err)
			}
		}
		start := make(chan struct{})
		errs := make([]error, riders)
		var wg sync.WaitGroup
		for i := range riders {
			wg.Go(func() {
				rider := fmt.Sprintf("rider-%d", i)
				<-start
				_, errs[i] = svcs[i%services].Execute(ctx, auth.Principal{Subject: rider, Role: auth.Rider},
					delivery.AcceptOrder{OrderID: id, RiderID: rider})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("round %d: riders %d and %d both accepted", round, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, delivery.ErrOrderAlreadyTaken):
				t.Fatalf("round %d: rider %d got %v (kind %v), want ErrOrderAlreadyTaken", round, i, err, es.KindOf(err))
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody accepted", round)
		}
		o, _, err := delivery.NewService(store, 0, nil).Get(ctx, admin, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("rider-%d", winner); o.Status != delivery.Accepted || o.RiderID != want {
			t.Fatalf("round %d: stored order %+v, want accepted by %s", round, o, want)
		}
		commits, _, err := store.Load(ctx, delivery.Stream(id), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(commits) != 2 {
			t.Fatalf("round %d: %d commits on the order, want placed + accepted", round, len(commits))
		}
	}
}
