package reactions

import (
	"context"
	"fmt"
	"slices"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/notify"
	"github.com/tideline/tideline/domain/rewards"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

// Stable names of the reactions between labeling, rewards and the inbox.
const (
	LabelingPointsName = "labeling-points"
	RewardsNotifyName  = "rewards-notify"
)

// Points are what labeling work earns.
type Points struct {
	Mission int64 // a completed mission; default 10
	Label   int64 // an accepted label; default 5
}

// LabelingPoints credit labeling work on the rewards ledger: a completed
// mission earns p.Mission and the day's stamp (in the alarm's time zone;
// seven days in a row earn the streak bonus), each accepted label
// p.Label — a verification batch's labels summed into one credit a
// labeler. Credits name the commit they come from (source
// "labeling-points" and its position), which the ledger remembers, so a
// commit handled again credits nothing twice.
func LabelingPoints(svc *rewards.Service, p Points) Reaction {
	if p.Mission <= 0 {
		p.Mission = 10
	}
	if p.Label <= 0 {
		p.Label = 5
	}
	return Reaction{Name: LabelingPointsName, Subjects: []string{"ev.labeling.>"}, Handle: func(ctx context.Context, c es.Commit) error {
		for _, ev := range c.Events {
			switch e := ev.Data.(type) {
			case *labelingv1.MissionCompleted:
				if _, err := svc.Credit(ctx, e.LabelerId, rewards.Credit{Points: p.Mission, Cause: rewards.CauseMissionCompleted,
					Ref: "mission:" + e.MissionId, Source: LabelingPointsName, SourceSeq: c.Seq}); err != nil {
					return fmt.Errorf("credit mission %s: %w", e.MissionId, err)
				}
				if e.LocalDate != "" {
					if _, err := svc.Stamp(ctx, e.LabelerId, e.LocalDate, LabelingPointsName, c.Seq); err != nil {
						return fmt.Errorf("stamp %s: %w", e.LabelerId, err)
					}
				}
			case *labelingv1.LabelsVerified:
				accepted := map[string]int64{}
				for _, d := range e.Decisions {
					for _, v := range d.Votes {
						if v.Accepted {
							accepted[v.LabelerId]++
						}
					}
				}
				users := make([]string, 0, len(accepted))
				for u := range accepted {
					users = append(users, u)
				}
				slices.Sort(users)
				for _, u := range users {
					if _, err := svc.Credit(ctx, u, rewards.Credit{Points: p.Label * accepted[u], Cause: rewards.CauseLabelAccepted,
						Ref: "dataset:" + e.DatasetId, Source: LabelingPointsName, SourceSeq: c.Seq}); err != nil {
						return fmt.Errorf("credit labels of %s: %w", u, err)
					}
				}
			}
		}
		return nil
	}}
}

// RewardsNotifications tell people of their points (topic TOPIC_POINTS)
// and of raffle draws (TOPIC_RAFFLE_RESULT: the winners that they won,
// every other entrant that the draw is done), in their inbox and by push.
// Each notification's id derives from its event and person, so a commit
// handled again notifies once; one older than Config.MaxAge notifies not
// at all (Reaction.Notifies).
func RewardsNotifications(svc *rewards.Service, post Poster) Reaction {
	admin := auth.Principal{Role: auth.Admin, Subject: RewardsNotifyName}
	return Reaction{Name: RewardsNotifyName, Subjects: []string{"ev.rewards.>"}, Notifies: true, Handle: func(ctx context.Context, c es.Commit) error {
		for _, ev := range c.Events {
			switch e := ev.Data.(type) {
			case *rewardsv1.PointsCredited:
				what := map[rewardsv1.Cause]string{
					rewards.CauseMissionCompleted: "for your wake-up mission",
					rewards.CauseLabelAccepted:    "for your verified labels",
					rewards.CauseStreakBonus:      "for your streak of stamps",
					rewards.CauseAdminAdjustment:  "from the team",
				}[e.Cause]
				if what == "" {
					continue // refunds are told by the call that refunded
				}
				n := notify.Notification{ID: es.DigestID("n", ev.ID), Topic: notify.TopicPoints,
					Title: fmt.Sprintf("+%d points", e.Points), Body: fmt.Sprintf("%d points %s: your balance is %d.", e.Points, what, e.BalanceAfter)}
				if err := post(ctx, e.UserId, n); err != nil {
					return fmt.Errorf("notify %s: %w", e.UserId, err)
				}
			case *rewardsv1.RaffleDrawn:
				r, _, err := svc.Raffle(ctx, admin, e.RaffleId)
				if err != nil {
					return err
				}
				told := map[string]bool{}
				for _, w := range e.Winners {
					told[w] = true
					n := notify.Notification{ID: es.DigestID("n", ev.ID, w), Topic: notify.TopicRaffleResult, Title: "You won!",
						Body: es.Truncate(fmt.Sprintf("You won %s in the raffle drawn just now.", r.Prize), 1000)}
					if err := post(ctx, w, n); err != nil {
						return fmt.Errorf("notify %s: %w", w, err)
					}
				}
				for _, en := range r.Entries {
					if told[en.UserID] {
						continue
					}
					told[en.UserID] = true
					n := notify.Notification{ID: es.DigestID("n", ev.ID, en.UserID), Topic: notify.TopicRaffleResult, Title: "Raffle drawn",
						Body: es.Truncate(fmt.Sprintf("The raffle for %s was drawn; you did not win this time.", r.Prize), 1000)}
					if err := post(ctx, en.UserID, n); err != nil {
						return fmt.Errorf("notify %s: %w", en.UserID, err)
					}
				}
			}
		}
		return nil
	}}
}
