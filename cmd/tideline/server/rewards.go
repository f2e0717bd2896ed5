package server

import (
	"context"
	"time"

	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/notify"
	"github.com/tideline/tideline/domain/rewards"
	"github.com/tideline/tideline/projections"
	rewardsmodel "github.com/tideline/tideline/projections/rewards"
)

// DefaultRaffleTick is how often raffles due are drawn.
const DefaultRaffleTick = 5 * time.Second

// rewardsModule wires rewards: the points ledger and raffles, their read
// models, the reaction that settles raffle entries, the one that tells
// people of their points and of draws in their inbox, and a ticker that
// draws raffles once their draw time comes (Config.RaffleTick).
func rewardsModule(ctx context.Context, h *Host) error {
	var seeds *jetstream.Seeds
	err := h.Provision(ctx, func(ctx context.Context) (err error) {
		seeds, err = jetstream.OpenSeeds(ctx, h.Store.JetStream(), h.Store.Replicas())
		return err
	})
	if err != nil {
		return err
	}
	svc := rewards.NewService(h.Store, seeds, nil)
	accounts, raffles := rewardsmodel.NewAccounts(), rewardsmodel.NewRaffles()
	inbox := notify.NewService(h.Store, nil)
	h.React(reactions.RewardsReactions(svc)...)
	h.React(reactions.RewardsNotifications(svc, func(ctx context.Context, user string, n notify.Notification) error {
		_, err := inbox.Post(ctx, user, n)
		return err
	}))
	accountsFeed, rafflesFeed := h.Runner(accounts), h.Runner(raffles)
	h.Past(accountsFeed, func() projections.Projection { return rewardsmodel.NewAccounts() }, nil)
	h.Past(rafflesFeed, func() projections.Projection { return rewardsmodel.NewRaffles() }, nil)
	h.Serve(api.RewardsServices(svc, api.Rewards{Accounts: accounts, AccountsFeed: accountsFeed,
		Raffles: raffles, RafflesFeed: rafflesFeed})...)
	tick := h.Config.RaffleTick
	if tick <= 0 {
		tick = DefaultRaffleTick
	}
	h.Go(func(ctx context.Context) {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := svc.DrawDue(ctx, raffles); err != nil && ctx.Err() == nil {
					h.Logger.Warn("draw raffles", "err", err)
				}
			}
		}
	})
	return nil
}
