package rewards

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

// Seeds keeps raffles' secret draw seeds.
type Seeds interface {
	// Seed returns raffleID's seed (SeedBytes random bytes), creating it
	// on first use: every later call, from any process, returns the same
	// seed. Safe for concurrent use.
	Seed(ctx context.Context, raffleID string) ([]byte, error)
}

// Due lists raffles to draw; the raffles read model implements it.
type Due interface {
	// Due returns the ids of the raffles not drawn whose draw time is not
	// after now.
	Due(now time.Time) []string
}

// Service runs the rewards commands against an event store. Safe for
// concurrent use.
type Service struct {
	accounts *es.Repository[Account, OnAccount]
	raffles  *es.Repository[Raffle, RaffleCommand]
	seeds    Seeds
	now      func() time.Time
}

// NewService returns a service over store, keeping raffle seeds in
// seeds. now is the clock; nil means time.Now.
func NewService(store es.Store, seeds Seeds, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	s := &Service{accounts: es.NewRepository(store, LedgerDecider, 0), raffles: es.NewRepository(store, RaffleDecider, 1000),
		seeds: seeds, now: now}
	// A conflict means another command's commit landed, so each retry
	// follows progress: allow as many as the writers one stream may
	// plausibly have at once (many people enter a popular raffle; one
	// person's calls and reactions race on a ledger).
	s.accounts.MaxAttempts, s.raffles.MaxAttempts = 100, 100
	return s
}

// Errors of access.
var (
	ErrNotPerson = &es.Error{Kind: es.Forbidden, Message: "devices and services have no rewards"}
	ErrAdminOnly = &es.Error{Kind: es.Forbidden, Message: "only admins may do this"}
)

// MayUse returns ErrNotPerson unless p is a person.
func MayUse(p auth.Principal) error {
	if !p.Person() {
		return ErrNotPerson
	}
	return nil
}

func meta(actor, source string) es.AppendOptions {
	return es.AppendOptions{Meta: es.Metadata{Actor: actor, Source: source}}
}

func reactionMeta(source string) es.AppendOptions {
	return meta("service:"+source, "reaction:"+source)
}

// Credit credits userID's account for a reaction's commit. It is
// idempotent per (c.Source, c.SourceSeq): a Credit whose SourceSeq is not
// above the highest already credited from c.Source appends nothing and
// returns the account's version, so a reaction that handles its commits
// in stream order, at least once, credits each user at most once per
// commit (one Credit per user per commit: sum a commit's points for a
// user into one). Errors: Invalid naming user_id, points, cause, ref,
// source or source_seq; FailedPrecondition when the balance would pass
// MaxBalance; store errors.
func (s *Service) Credit(ctx context.Context, userID string, c Credit) (es.AppendResult, error) {
	if err := es.ValidateToken("user_id", userID); err != nil {
		return es.AppendResult{}, err
	}
	return s.accounts.Handle(ctx, AccountStream(userID), OnAccount{userID, c}, reactionMeta(c.Source))
}

// Stamp collects userID's stamp of date (YYYY-MM-DD, the user's time
// zone) for a reaction's commit, idempotent per (source, sourceSeq) as
// Credit (stamps keep their own marks, so a reaction may Credit and
// Stamp for the same commit). One stamp per date: a date on or before the
// last stamp's appends nothing. A streak reaching a multiple of
// StreakDays also credits StreakBonus points, in the same commit.
func (s *Service) Stamp(ctx context.Context, userID, date, source string, sourceSeq uint64) (es.AppendResult, error) {
	if err := es.ValidateToken("user_id", userID); err != nil {
		return es.AppendResult{}, err
	}
	return s.accounts.Handle(ctx, AccountStream(userID), OnAccount{userID, Stamp{Date: date, Source: source, SourceSeq: sourceSeq}}, reactionMeta(source))
}

// Adjust credits (points > 0) or debits (points < 0) userID's account
// as admin p, with a reason. Errors: Forbidden unless admin; Invalid
// naming user_id, points or reason; ErrInsufficientPoints for a debit
// past the balance.
func (s *Service) Adjust(ctx context.Context, p auth.Principal, userID string, points int64, reason string) (es.AppendResult, error) {
	if p.Role != auth.Admin {
		return es.AppendResult{}, ErrAdminOnly
	}
	if err := es.ValidateToken("user_id", userID); err != nil {
		return es.AppendResult{}, err
	}
	return s.accounts.Handle(ctx, AccountStream(userID), OnAccount{userID, Adjust{Points: points, Reason: reason}}, meta(p.String(), "api"))
}

// Account returns userID's account (empty: p's own) as the store has it
// now, and its version. Only admins read another's. An account nobody
// credited is empty, not NotFound.
func (s *Service) Account(ctx context.Context, p auth.Principal, userID string) (Account, uint64, error) {
	if err := MayUse(p); err != nil {
		return Account{}, 0, err
	}
	if userID == "" {
		userID = p.Subject
	}
	if userID != p.Subject && p.Role != auth.Admin {
		return Account{}, 0, &es.Error{Kind: es.Forbidden, Field: "user_id", Message: "only admins read another's account"}
	}
	if err := es.ValidateToken("user_id", userID); err != nil {
		return Account{}, 0, err
	}
	a, version, err := s.accounts.GetAt(ctx, AccountStream(userID), es.Latest)
	a.UserID = userID
	return a, version, err
}

// OpenRaffle opens a raffle as admin p; o.OpenedBy and o.Now are set
// here, and an empty o.ID is derived from the terms (RaffleID). Its seed
// is created (or, for a retried open, found) in Seeds and only its
// SHA-256 is recorded. The same open again appends nothing. Errors:
// Forbidden unless admin; Invalid naming the field (ValidateOpen);
// ErrRaffleExists for an id opened with other terms; Unavailable when
// the seeds cannot be reached.
func (s *Service) OpenRaffle(ctx context.Context, p auth.Principal, o Open) (Raffle, es.AppendResult, error) {
	if p.Role != auth.Admin {
		return Raffle{}, es.AppendResult{}, ErrAdminOnly
	}
	o.OpenedBy, o.Now = p.Subject, s.now()
	if err := ValidateOpen(o, o.Now); err != nil {
		return Raffle{}, es.AppendResult{}, err
	}
	if o.ID == "" {
		o.ID = RaffleID(o)
	}
	seed, err := s.seeds.Seed(ctx, o.ID)
	if err != nil {
		return Raffle{}, es.AppendResult{}, es.Wrap(es.Unavailable, "raffle seeds", err)
	}
	sum := sha256.Sum256(seed)
	o.SeedSHA256 = hex.EncodeToString(sum[:])
	res, err := s.raffles.Handle(ctx, RaffleStream(o.ID), o, meta(p.String(), "api"))
	if err != nil {
		return Raffle{}, es.AppendResult{}, err
	}
	r, _, err := s.raffles.GetAt(ctx, RaffleStream(o.ID), res.Position.Seq)
	return r, res, err
}

// Raffle returns raffle id as the store has it now, and its version.
// Errors: Forbidden for devices and services; Invalid naming raffle_id;
// ErrRaffleNotFound.
func (s *Service) Raffle(ctx context.Context, p auth.Principal, id string) (Raffle, uint64, error) {
	if err := MayUse(p); err != nil {
		return Raffle{}, 0, err
	}
	return s.raffle(ctx, id)
}

func (s *Service) raffle(ctx context.Context, id string) (Raffle, uint64, error) {
	if err := es.ValidateToken("raffle_id", id); err != nil {
		return Raffle{}, 0, err
	}
	r, version, err := s.raffles.GetAt(ctx, RaffleStream(id), es.Latest)
	if err == nil && !r.Open() {
		err = ErrRaffleNotFound
	}
	return r, version, err
}

// Entered is what an entry did.
type Entered struct {
	EntryID string
	// Balance is the account's balance once the entry was paid.
	Balance int64
	// Result is the RaffleEntered commit's.
	Result es.AppendResult
}

// Enter buys p tickets of raffle raffleID: (1) it debits entry cost ×
// tickets from p's account (cause CauseRaffleEntry, ref RaffleRef), then
// (2) records the entry, whose id is derived from the debit (EntryID), on
// the raffle; if the raffle refuses it (3) the points are refunded and
// the raffle's error returned. A raffle that would refuse is refused
// before anything is debited. When the process stops between (1) and
// (2), the "rewards-entries" reaction settles the debit (SettleEntry).
//
// Errors: Forbidden for devices and services; Invalid naming raffle_id
// or tickets; ErrRaffleNotFound; FailedPrecondition: ErrInsufficientPoints,
// ErrRaffleDrawn, ErrRaffleClosed, ErrRaffleFull, ErrTooManyTickets;
// Unavailable when the entry is paid but could not be recorded yet (it
// will be recorded or refunded by the reaction).
//
// key, when not empty, is the client's idempotency key: the entry's id
// follows from it (KeyedEntryID), so the same call again — after a
// timeout, a lost answer, a restart, at any distance in time — pays
// once, records once, and answers the entry it made.
func (s *Service) Enter(ctx context.Context, p auth.Principal, raffleID string, tickets int32, key string) (Entered, error) {
	if err := MayUse(p); err != nil {
		return Entered{}, err
	}
	if tickets < 1 || tickets > MaxTicketsPerPerson {
		return Entered{}, es.Invalidf("tickets", "must be 1..%d, got %d", MaxTicketsPerPerson, tickets)
	}
	entryID := ""
	if key != "" {
		if err := es.ValidateToken("idempotency_key", key); err != nil {
			return Entered{}, err
		}
		entryID = KeyedEntryID(p.Subject, raffleID, key)
	}
	r, version, err := s.raffle(ctx, raffleID)
	if err != nil {
		return Entered{}, err
	}
	acct := AccountStream(p.Subject)
	if entryID != "" && r.entry(entryID) { // made by an earlier call with this key
		out := Entered{EntryID: entryID, Result: es.AppendResult{Position: es.Position{Seq: version}, Duplicate: true}}
		if a, _, err := s.accounts.Get(ctx, acct); err == nil {
			out.Balance = a.Balance
		}
		return out, nil
	}
	if _, err := RaffleDecider.Decide(r, Enter{UserID: p.Subject, EntryID: entryID, Tickets: tickets, Now: s.now()}); err != nil {
		return Entered{}, err
	}
	cost := r.EntryCost * int64(tickets)
	paid, err := s.accounts.Handle(ctx, acct, OnAccount{p.Subject, Debit{Points: cost, Cause: CauseRaffleEntry, Ref: RaffleRef(raffleID), EntryID: entryID}}, meta(p.String(), "api"))
	if err != nil {
		return Entered{}, err
	}
	if entryID == "" {
		entryID = EntryID(p.Subject, paid.Position.Seq)
	}
	out := Entered{EntryID: entryID}
	if a, _, err := s.accounts.GetAt(ctx, acct, paid.Position.Seq); err == nil {
		out.Balance = a.Balance
	}
	out.Result, _, err = s.record(ctx, raffleID, p.Subject, out.EntryID, tickets, cost)
	return out, err
}

// record records a paid entry on its raffle, or refunds it when the
// raffle refuses it; refused says so, err is then the raffle's reason.
func (s *Service) record(ctx context.Context, raffleID, userID, entryID string, tickets int32, cost int64) (res es.AppendResult, refused bool, err error) {
	res, err = s.raffles.Handle(ctx, RaffleStream(raffleID), Enter{UserID: userID, EntryID: entryID, Tickets: tickets, Now: s.now()},
		meta("service:rewards", "reaction:"+EntriesReaction))
	switch es.KindOf(err) {
	case es.FailedPrecondition, es.NotFound, es.Invalid:
		if _, rerr := s.accounts.Handle(ctx, AccountStream(userID), OnAccount{userID, Refund{RaffleID: raffleID, EntryID: entryID, Points: cost}},
			meta("service:rewards", "reaction:"+EntriesReaction)); rerr != nil {
			return res, false, es.Wrap(es.Unavailable, "the entry was refused and will be refunded shortly", errors.Join(err, rerr))
		}
		return res, true, err
	}
	if err != nil {
		return res, false, es.Wrap(es.Unavailable, "the entry is paid and will be recorded or refunded shortly", err)
	}
	return res, false, nil
}

// EntriesReaction is the stable name of the reaction that settles raffle
// entry debits (SettleEntry).
const EntriesReaction = "rewards-entries"

// SettleEntry makes sure the raffle entry that debit (a PointsDebited at
// stream sequence seq) paid for is recorded on its raffle or refunded:
// the safety net of Enter when a process stops between paying and
// recording. It is idempotent (the raffle knows its entry ids, the ledger
// its refunds), and ignores debits of other causes. An error means the
// debit is not settled yet: retry.
func (s *Service) SettleEntry(ctx context.Context, seq uint64, debit *rewardsv1.PointsDebited) error {
	raffleID, ok := strings.CutPrefix(debit.Ref, "raffle:")
	if debit.Cause != CauseRaffleEntry || !ok {
		return nil
	}
	entryID := debit.EntryId
	if entryID == "" {
		entryID = EntryID(debit.UserId, seq)
	}
	r, _, err := s.raffles.GetAt(ctx, RaffleStream(raffleID), es.Latest)
	if err != nil {
		return fmt.Errorf("raffle %s: %w", raffleID, err)
	}
	if r.entry(entryID) {
		return nil
	}
	a, _, err := s.accounts.GetAt(ctx, AccountStream(debit.UserId), es.Latest)
	if err != nil {
		return fmt.Errorf("account %s: %w", debit.UserId, err)
	}
	if a.Refunded[entryID] {
		return nil
	}
	tickets := int32(1)
	if r.EntryCost > 0 {
		tickets = int32(debit.Points / r.EntryCost)
	}
	_, refused, err := s.record(ctx, raffleID, debit.UserId, entryID, tickets, debit.Points)
	if refused {
		return nil
	}
	return err
}

// Draw draws raffle id once its draw time has come, revealing its seed;
// a raffle drawn already appends nothing. Errors: ErrRaffleNotFound,
// ErrNotDue, Unavailable when the seeds cannot be reached.
func (s *Service) Draw(ctx context.Context, id string) (es.AppendResult, error) {
	r, version, err := s.raffle(ctx, id)
	if err != nil {
		return es.AppendResult{}, err
	}
	if r.Drawn {
		return es.AppendResult{Position: es.Position{Seq: version}}, nil
	}
	now := s.now()
	if now.Before(r.DrawAt) {
		return es.AppendResult{}, ErrNotDue
	}
	seed, err := s.seeds.Seed(ctx, id)
	if err != nil {
		return es.AppendResult{}, es.Wrap(es.Unavailable, "raffle seeds", err)
	}
	return s.raffles.Handle(ctx, RaffleStream(id), Draw{Seed: seed, Now: now}, meta("service:rewards", "reaction:rewards-draw"))
}

// DrawDue draws every raffle that due lists at now, and returns how many
// of them are drawn. A raffle drawn meanwhile (by another server) is skipped: the
// raffle's version check makes drawing idempotent. Errors of single
// raffles are joined; the others are still drawn.
func (s *Service) DrawDue(ctx context.Context, due Due) (int, error) {
	var errs []error
	n := 0
	for _, id := range due.Due(s.now()) {
		if _, err := s.Draw(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("draw raffle %s: %w", id, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
