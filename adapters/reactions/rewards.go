package reactions

import (
	"context"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/rewards"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

// RewardsReactions settle raffle entries: for every raffle-entry debit
// (in stream order, at least once) the entry it paid for ends recorded
// on its raffle or refunded (rewards.Service.SettleEntry), so the points
// of a call that stopped between paying and recording are never lost.
func RewardsReactions(svc *rewards.Service) []Reaction {
	return []Reaction{{Name: rewards.EntriesReaction, Subjects: []string{"ev.rewards.account.>"},
		Handle: func(ctx context.Context, c es.Commit) error {
			for _, ev := range c.Events {
				if d, ok := ev.Data.(*rewardsv1.PointsDebited); ok {
					if err := svc.SettleEntry(ctx, c.Seq, d); err != nil {
						return err
					}
				}
			}
			return nil
		}}}
}
