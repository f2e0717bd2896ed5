// Package rewards is the rewards context: each person's points ledger and
// daily stamps (ev.rewards.account.<user_id>), and gift raffles that
// points buy tickets of (ev.rewards.raffle.<raffle_id>).
//
// A balance never goes below zero: a debit is decided against the
// ledger's state and appended with the version it was decided on, so two
// debits racing for the same points cannot both succeed (optimistic
// concurrency decides it, not a database constraint). Every credit and
// debit names its Cause.
//
// Reactions credit points at least once per commit they handle; the
// ledger remembers, per source, the highest source sequence it applied,
// so a redelivered commit credits nothing again: bounded state,
// exactly-once effect.
package rewards

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

// Cause says what a credit or debit is for.
type Cause = rewardsv1.Cause

// Causes.
const (
	CauseMissionCompleted = rewardsv1.Cause_CAUSE_MISSION_COMPLETED
	CauseLabelAccepted    = rewardsv1.Cause_CAUSE_LABEL_ACCEPTED
	CauseStreakBonus      = rewardsv1.Cause_CAUSE_STREAK_BONUS
	CauseRaffleEntry      = rewardsv1.Cause_CAUSE_RAFFLE_ENTRY
	CauseRaffleRefund     = rewardsv1.Cause_CAUSE_RAFFLE_REFUND
	CauseAdminAdjustment  = rewardsv1.Cause_CAUSE_ADMIN_ADJUSTMENT
)

// Limits and amounts.
const (
	// MaxPoints bounds one credit or debit.
	MaxPoints = 1_000_000_000
	// MaxBalance bounds a balance, far from int64's end.
	MaxBalance = 1 << 50
	// StreakBonus is what a streak of StreakDays stamps (and of each
	// multiple of it) credits.
	StreakBonus    = 50
	StreakDays     = 7
	MaxRefBytes    = 200
	MaxReasonBytes = 500
	// DateLayout is a stamp's date, in the user's time zone.
	DateLayout = "2006-01-02"
)

// AccountStream returns the stream of userID's ledger.
func AccountStream(userID string) es.StreamID {
	return es.StreamID{Context: "rewards", Type: "account", ID: userID}
}

// Account is a ledger's state, folded from its events.
type Account struct {
	UserID  string
	Balance int64
	// Credited is, per source, the highest source sequence credited.
	Credited map[string]uint64
	// Stamped is, per source, the highest source sequence stamped.
	Stamped   map[string]uint64
	LastStamp string // YYYY-MM-DD
	Streak    int32
	// Refunded holds the entry ids refunded.
	Refunded map[string]bool
	// Paid holds the entry ids paid for by debits that named them
	// (EnterRaffle with an idempotency key).
	Paid map[string]bool
}

// LedgerCommand is one of Credit, Debit, Adjust, Refund, Stamp.
type LedgerCommand interface{ isLedgerCommand() }

// Credit adds points for a reaction's commit: Source names the reaction,
// SourceSeq the commit's stream sequence. A Credit whose SourceSeq is not
// above the highest one already credited from Source appends nothing, so
// a reaction credits each user at most once per commit it handles.
type Credit struct {
	Points    int64
	Cause     Cause // CauseMissionCompleted, CauseLabelAccepted or CauseStreakBonus
	Ref       string
	Source    string
	SourceSeq uint64
}

// Debit takes points, never past the balance. A Debit naming an EntryID
// already paid appends nothing.
type Debit struct {
	Points  int64
	Cause   Cause
	Ref     string
	EntryID string
}

// Adjust is an admin's correction: Points is positive to credit,
// negative to debit.
type Adjust struct {
	Points int64
	Reason string
}

// Refund credits back an entry's points, once per entry.
type Refund struct {
	RaffleID, EntryID string
	Points            int64
}

// Stamp collects the stamp of Date (YYYY-MM-DD) for a reaction's commit
// (Source, SourceSeq as for Credit).
type Stamp struct {
	Date      string
	Source    string
	SourceSeq uint64
}

func (Credit) isLedgerCommand() {}
func (Debit) isLedgerCommand()  {}
func (Adjust) isLedgerCommand() {}
func (Refund) isLedgerCommand() {}
func (Stamp) isLedgerCommand()  {}

// Errors of the ledger.
var (
	ErrInsufficientPoints = &es.Error{Kind: es.FailedPrecondition, Message: "not enough points"}
	ErrBalanceTooLarge    = &es.Error{Kind: es.FailedPrecondition, Message: "balance would exceed its maximum"}
)

// RefundRef is the ref of entryID's refund in raffleID.
func RefundRef(raffleID, entryID string) string { return "raffle:" + raffleID + ":" + entryID }

// RaffleRef is the ref of a debit for raffleID's tickets.
func RaffleRef(raffleID string) string { return "raffle:" + raffleID }

// OnAccount is a ledger command for userID's account: the decider's
// command, since a new account's state does not know its user.
type OnAccount struct {
	UserID  string
	Command LedgerCommand
}

// LedgerDecider is the account aggregate.
var LedgerDecider = es.Decider[Account, OnAccount]{
	Initial: func() Account { return Account{} },
	Decide:  decideLedger,
	Evolve:  evolveLedger,
}

func validPoints(field string, p int64) error {
	if p <= 0 || p > MaxPoints {
		return es.Invalidf(field, "must be 1..%d, got %d", MaxPoints, p)
	}
	return nil
}

func credited(a Account, p int64, cause Cause, ref, reason, source string, seq uint64) ([]proto.Message, error) {
	if a.Balance+p > MaxBalance {
		return nil, ErrBalanceTooLarge
	}
	return []proto.Message{&rewardsv1.PointsCredited{UserId: a.UserID, Points: p, Cause: cause, Ref: ref, Reason: reason,
		BalanceAfter: a.Balance + p, Source: source, SourceSeq: seq}}, nil
}

func debited(a Account, p int64, cause Cause, ref, reason string) ([]proto.Message, error) {
	if p > a.Balance {
		return nil, ErrInsufficientPoints
	}
	return []proto.Message{&rewardsv1.PointsDebited{UserId: a.UserID, Points: p, Cause: cause, Ref: ref, Reason: reason,
		BalanceAfter: a.Balance - p}}, nil
}

func decideLedger(a Account, on OnAccount) ([]proto.Message, error) {
	a.UserID = on.UserID
	switch c := on.Command.(type) {
	case Credit:
		if err := validPoints("points", c.Points); err != nil {
			return nil, err
		}
		switch c.Cause {
		case CauseMissionCompleted, CauseLabelAccepted, CauseStreakBonus:
		default:
			return nil, es.Invalidf("cause", "a reaction's credit is a mission, an accepted label or a streak bonus, got %v", c.Cause)
		}
		if err := validSource(c.Source, c.SourceSeq); err != nil {
			return nil, err
		}
		if len(c.Ref) > MaxRefBytes {
			return nil, es.Invalidf("ref", "must be at most %d bytes", MaxRefBytes)
		}
		if c.SourceSeq <= a.Credited[c.Source] {
			return nil, nil
		}
		return credited(a, c.Points, c.Cause, c.Ref, "", c.Source, c.SourceSeq)
	case Debit:
		if err := validPoints("points", c.Points); err != nil {
			return nil, err
		}
		if c.Cause != CauseRaffleEntry {
			return nil, es.Invalidf("cause", "a debit is for a raffle entry, got %v", c.Cause)
		}
		if c.EntryID != "" && a.Paid[c.EntryID] {
			return nil, nil
		}
		evs, err := debited(a, c.Points, c.Cause, c.Ref, "")
		if err == nil {
			evs[0].(*rewardsv1.PointsDebited).EntryId = c.EntryID
		}
		return evs, err
	case Adjust:
		reason := strings.TrimSpace(c.Reason)
		if reason == "" {
			return nil, es.Invalidf("reason", "must not be empty: say why the points change")
		}
		if len(reason) > MaxReasonBytes {
			return nil, es.Invalidf("reason", "must be at most %d bytes", MaxReasonBytes)
		}
		if c.Points == 0 || c.Points > MaxPoints || c.Points < -MaxPoints {
			return nil, es.Invalidf("points", "must be ±1..%d, not 0", MaxPoints)
		}
		if c.Points > 0 {
			return credited(a, c.Points, CauseAdminAdjustment, "", reason, "", 0)
		}
		return debited(a, -c.Points, CauseAdminAdjustment, "", reason)
	case Refund:
		if err := validPoints("points", c.Points); err != nil {
			return nil, err
		}
		if a.Refunded[c.EntryID] {
			return nil, nil
		}
		return credited(a, c.Points, CauseRaffleRefund, RefundRef(c.RaffleID, c.EntryID), "", "", 0)
	case Stamp:
		day, err := ParseDate(c.Date)
		if err != nil {
			return nil, err
		}
		if err := validSource(c.Source, c.SourceSeq); err != nil {
			return nil, err
		}
		// A date on or before the last stamp's is a repeat (or late): one
		// stamp per date, and a streak only grows forward.
		if c.SourceSeq <= a.Stamped[c.Source] || a.LastStamp != "" && c.Date <= a.LastStamp {
			return nil, nil
		}
		streak := int32(1)
		if a.LastStamp != "" && day.AddDate(0, 0, -1).Format(DateLayout) == a.LastStamp {
			streak = a.Streak + 1
		}
		evs := []proto.Message{&rewardsv1.StampCollected{UserId: a.UserID, Date: c.Date, Streak: streak, Source: c.Source, SourceSeq: c.SourceSeq}}
		if streak%StreakDays == 0 {
			bonus, err := credited(a, StreakBonus, CauseStreakBonus, "streak:"+c.Date, "", "", 0)
			if err != nil {
				return nil, err
			}
			evs = append(evs, bonus...)
		}
		return evs, nil
	}
	return nil, fmt.Errorf("rewards: unknown ledger command %T", on.Command)
}

func validSource(source string, seq uint64) error {
	if err := es.ValidateToken("source", source); err != nil {
		return err
	}
	if seq == 0 {
		return es.Invalidf("source_seq", "must be the handled commit's sequence, not 0")
	}
	return nil
}

// ParseDate parses a stamp's date, YYYY-MM-DD, no earlier than
// es.MinTime; the error names the field date.
func ParseDate(date string) (time.Time, error) {
	day, err := time.Parse(DateLayout, date)
	if err != nil {
		return time.Time{}, es.Invalidf("date", "must be YYYY-MM-DD, got %q", date)
	}
	if day.Before(es.MinTime) {
		return time.Time{}, es.Invalidf("date", "%s is before %s", date, es.MinTime.Format(DateLayout))
	}
	return day, nil
}

// evolveLedger folds an event. It never writes to a map of the state it
// was given (a cached state may be read concurrently): a map it changes
// is copied first.
func evolveLedger(a Account, ev proto.Message) Account {
	switch e := ev.(type) {
	case *rewardsv1.PointsCredited:
		a.UserID, a.Balance = e.UserId, a.Balance+e.Points
		if e.Source != "" && e.SourceSeq > a.Credited[e.Source] {
			a.Credited = es.With(a.Credited, e.Source, e.SourceSeq)
		}
		if e.Cause == CauseRaffleRefund {
			a.Refunded = es.With(a.Refunded, e.Ref[strings.LastIndexByte(e.Ref, ':')+1:], true)
		}
	case *rewardsv1.PointsDebited:
		a.UserID, a.Balance = e.UserId, a.Balance-e.Points
		if e.EntryId != "" {
			a.Paid = es.With(a.Paid, e.EntryId, true)
		}
	case *rewardsv1.StampCollected:
		a.UserID, a.LastStamp, a.Streak = e.UserId, e.Date, e.Streak
		if e.SourceSeq > a.Stamped[e.Source] {
			a.Stamped = es.With(a.Stamped, e.Source, e.SourceSeq)
		}
	}
	return a
}
