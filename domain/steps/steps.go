// Package steps is the pedometer context: walkers' daily cumulative step
// counts as reported by their phones.
package steps

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// MaxSteps is the largest daily count accepted.
const MaxSteps = 200000

// DateLayout is the date format of every steps date.
const DateLayout = "2006-01-02"

// Record is the command to record a user's cumulative count for a date.
type Record struct {
	UserID         string
	Date           string
	Steps          int32
	IdempotencyKey string
}

// Stream returns the aggregate stream of a user's steps.
func Stream(userID string) es.StreamID {
	return es.StreamID{Context: "steps", Type: "user", ID: userID}
}

// ValidateDate checks a YYYY-MM-DD date from es.MinTime (2000-01-01) to
// the day after now (UTC), naming field in the error.
func ValidateDate(field, date string, now time.Time) error {
	d, err := time.Parse(DateLayout, date)
	if err != nil {
		return es.Invalidf(field, "must be a date YYYY-MM-DD, got %q", date)
	}
	if d.Before(es.MinTime) {
		return es.Invalidf(field, "%s is before %s, the earliest date accepted", date, es.MinTime.Format(DateLayout))
	}
	limit := now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	if d.After(limit) {
		return es.Invalidf(field, "%s is more than a day in the future", date)
	}
	return nil
}

// Decide validates and authorizes cmd for principal p at time now and
// returns the event to record. Its errors are Validate's.
func Decide(p auth.Principal, cmd Record, now time.Time) (*stepsv1.StepsRecorded, error) {
	if err := Validate(p, cmd, now); err != nil {
		return nil, err
	}
	return recorded(cmd), nil
}

// recorded is the event of one validated count.
func recorded(cmd Record) *stepsv1.StepsRecorded {
	return &stepsv1.StepsRecorded{UserId: cmd.UserID, Date: cmd.Date, Steps: cmd.Steps}
}

// Validate validates and authorizes cmd for principal p at time now. It
// returns Invalid errors naming the field (user_id, date, steps,
// idempotency_key) and Forbidden when a walker records someone else's
// steps.
func Validate(p auth.Principal, cmd Record, now time.Time) error {
	if err := es.ValidateToken("user_id", cmd.UserID); err != nil {
		return err
	}
	if err := ValidateDate("date", cmd.Date, now); err != nil {
		return err
	}
	if cmd.Steps < 0 || cmd.Steps > MaxSteps {
		return es.Invalidf("steps", "must be between 0 and %d, got %d", MaxSteps, cmd.Steps)
	}
	if err := es.ValidateIdempotencyKey("idempotency_key", cmd.IdempotencyKey); err != nil {
		return err
	}
	switch {
	case p.Privileged():
	case p.Role == auth.Walker && p.Subject == cmd.UserID:
	case p.Role == auth.Walker:
		return ErrNotYourSteps
	default:
		return es.Errorf(es.Forbidden, "role %q may not record steps", p.Role)
	}
	return nil
}

// DecideAll validates and authorizes cmds, counts of one user, for
// principal p at time now, and returns the one event that records them
// all: a StepsRecorded for one count, else a StepsBatchRecorded holding
// them in order. Its errors are Validate's, the first command's that
// fails, and Invalid (update[i].user_id) for a second user.
func DecideAll(p auth.Principal, cmds []Record, now time.Time) (proto.Message, error) {
	if len(cmds) == 0 {
		return nil, es.Invalidf("updates", "no update to record")
	}
	for i, cmd := range cmds {
		if cmd.UserID != cmds[0].UserID {
			return nil, es.Invalidf(fmt.Sprintf("update[%d].user_id", i), "is %q; one commit holds one user's counts (%q)", cmd.UserID, cmds[0].UserID)
		}
		if err := Validate(p, cmd, now); err != nil {
			return nil, err
		}
	}
	if len(cmds) == 1 {
		return recorded(cmds[0]), nil
	}
	b := &stepsv1.StepsBatchRecorded{UserId: cmds[0].UserID}
	for i := 0; i < len(cmds); {
		run := 1 // the commands from i on with cmds[i]'s date
		for i+run < len(cmds) && cmds[i+run].Date == cmds[i].Date {
			run++
		}
		day := &stepsv1.DayCounts{Date: cmds[i].Date, Steps: make([]int32, run)}
		for k := range run {
			day.Steps[k] = cmds[i+k].Steps
		}
		b.Days = append(b.Days, day)
		i += run
	}
	return b, nil
}

// Highest calls f with the highest count of each date ev reports: once
// for a StepsRecorded, once per run of one date for a
// StepsBatchRecorded (a date may come again in a later run), never for
// any other event. Counts are max-merged, so f may take the highest of
// what it is given.
func Highest(ev proto.Message, f func(userID, date string, steps int32)) {
	switch e := ev.(type) {
	case *stepsv1.StepsRecorded:
		f(e.GetUserId(), e.GetDate(), e.GetSteps())
	case *stepsv1.StepsBatchRecorded:
		for _, d := range e.GetDays() {
			if len(d.GetSteps()) > 0 {
				f(e.GetUserId(), d.GetDate(), slices.Max(d.GetSteps()))
			}
		}
	}
}

// ErrNotYourSteps is returned when a walker records another user's steps.
var ErrNotYourSteps = &es.Error{Kind: es.Forbidden, Message: "a walker may record only their own steps"}

// Service records steps in an event store. Safe for concurrent use.
type Service struct {
	Store es.Store
	Now   func() time.Time
}

// Record validates, authorizes and appends cmd. A count is a fact that
// needs no invariant (a day's value is the highest seen), so it appends
// without a version check. A resend without an idempotency key is stored
// again, harmlessly: read models keep the highest count. (Deduplicating
// every count by default would cost the store ~15% of its throughput.)
func (s *Service) Record(ctx context.Context, p auth.Principal, cmd Record) (es.AppendResult, error) {
	return s.record(ctx, p, []Record{cmd})
}

// RecordAll validates, authorizes and appends cmds, counts of one user
// without idempotency keys, as one commit of one event (DecideAll): a
// StepsBatchRecorded holding them in order, or a StepsRecorded for one,
// all stored or none. It is Record for a batch (a client stream's
// updates): one write to the store instead of len(cmds).
func (s *Service) RecordAll(ctx context.Context, p auth.Principal, cmds []Record) (es.AppendResult, error) {
	if len(cmds) == 0 {
		return es.AppendResult{}, es.Invalidf("updates", "no update to record")
	}
	for i, cmd := range cmds {
		if cmd.IdempotencyKey != "" {
			return es.AppendResult{}, es.Invalidf(fmt.Sprintf("update[%d].idempotency_key", i), "a batch of counts has no idempotency keys")
		}
	}
	return s.record(ctx, p, cmds)
}

// record decides cmds, all of one user, and appends their event
// (DecideAll) as one commit, with the first command's idempotency key.
func (s *Service) record(ctx context.Context, p auth.Principal, cmds []Record) (es.AppendResult, error) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	ev, err := DecideAll(p, cmds, now)
	if err != nil {
		return es.AppendResult{}, err
	}
	return s.Store.Append(ctx, Stream(cmds[0].UserID), []proto.Message{ev}, es.AppendOptions{
		ExpectedVersion: es.AnyVersion,
		IdempotencyKey:  cmds[0].IdempotencyKey,
		Meta:            es.Metadata{Actor: p.String(), Source: "api"},
		Now:             now,
	})
}

// Count is a user's count for one date.
type Count struct {
	Date  string
	Steps int32
}

// History reads userID's counts for the dates from..to (inclusive,
// YYYY-MM-DD) from the store, in date order: each date's highest count
// recorded, the rule of the read model, which holds recent dates only. It
// reads the user's whole stream, so it costs in proportion to the user's
// records. Its errors are the store's (Unavailable when it cannot read).
// Safe for concurrent use.
func (s *Service) History(ctx context.Context, userID, from, to string) ([]Count, error) {
	commits, _, err := s.Store.Load(ctx, Stream(userID), 0)
	if err != nil {
		return nil, fmt.Errorf("read %s's steps: %w", userID, err)
	}
	best := map[string]int32{}
	for _, c := range commits {
		for _, e := range c.Events {
			Highest(e.Data, func(user, date string, steps int32) {
				if user != userID || date < from || date > to {
					return
				}
				if n, seen := best[date]; !seen || steps > n {
					best[date] = steps
				}
			})
		}
	}
	out := make([]Count, 0, len(best))
	for date, n := range best {
		out = append(out, Count{Date: date, Steps: n})
	}
	slices.SortFunc(out, func(a, b Count) int { return cmp.Compare(a.Date, b.Date) })
	return out, nil
}
