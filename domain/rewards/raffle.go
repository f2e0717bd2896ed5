package rewards

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

// Limits of raffles.
const (
	MaxPrizeBytes = 200
	// MaxTicketsPerPerson bounds a raffle's max_entries_per_person.
	MaxTicketsPerPerson = 1000
	MaxWinners          = 1000
	// MaxEntries bounds a raffle's entries: its state holds them all.
	MaxEntries = 100_000
	// SeedBytes is a draw seed's length.
	SeedBytes = 32
)

// RaffleStream returns the stream of a raffle.
func RaffleStream(raffleID string) es.StreamID {
	return es.StreamID{Context: "rewards", Type: "raffle", ID: raffleID}
}

// EntryID is the id of the entry paid for by userID's debit at stream
// sequence debitSeq: whoever sees the debit (the entering call, the
// settling reaction) derives the same id.
func EntryID(userID string, debitSeq uint64) string {
	return es.DigestID("e", userID, strconv.FormatUint(debitSeq, 10))
}

// KeyedEntryID is the id of the entry userID makes in raffle raffleID
// with a client's idempotency key: its debit carries it.
func KeyedEntryID(userID, raffleID, key string) string {
	return es.DigestID("k", userID, raffleID, key)
}

// RaffleID is the id of a raffle opened without one: derived from what
// it is, so a retried open is the same raffle.
func RaffleID(o Open) string {
	return es.DigestID("r", o.OpenedBy, o.Prize, strconv.FormatInt(o.EntryCost, 10), strconv.Itoa(int(o.MaxPerPerson)),
		strconv.Itoa(int(o.Winners)), o.DrawAt.UTC().Format(time.RFC3339Nano))
}

// Entry is one recorded entry.
type Entry struct {
	ID      string
	UserID  string
	Tickets int32
}

// Raffle is a raffle's state, folded from its events.
type Raffle struct {
	ID           string
	Prize        string
	EntryCost    int64
	MaxPerPerson int32
	Winners      int32
	DrawAt       time.Time
	SeedSHA256   string
	OpenedBy     string
	OpenedAt     time.Time
	// Entries in recorded order.
	Entries []Entry
	Drawn   bool
	Seed    string // hex, once drawn
	Won     []string
	DrawnAt time.Time
}

// Open reports whether the raffle exists.
func (r Raffle) Open() bool { return r.ID != "" }

// TicketsOf returns userID's tickets.
func (r Raffle) TicketsOf(userID string) int32 {
	n := int32(0)
	for _, e := range r.Entries {
		if e.UserID == userID {
			n += e.Tickets
		}
	}
	return n
}

// Tickets returns one Ticket per ticket bought, in recorded order: what
// the draw picks from.
func (r Raffle) Tickets() []Ticket {
	var out []Ticket
	for _, e := range r.Entries {
		for range e.Tickets {
			out = append(out, Ticket{UserID: e.UserID})
		}
	}
	return out
}

func (r Raffle) entry(id string) bool {
	return slices.ContainsFunc(r.Entries, func(e Entry) bool { return e.ID == id })
}

// RaffleCommand is one of Open, Enter, Draw.
type RaffleCommand interface{ isRaffleCommand() }

// Open opens raffle ID.
type Open struct {
	ID           string
	Prize        string
	EntryCost    int64
	MaxPerPerson int32
	Winners      int32
	DrawAt       time.Time
	SeedSHA256   string
	OpenedBy     string
	Now          time.Time
}

// Enter records an entry already paid for.
type Enter struct {
	UserID  string
	EntryID string
	Tickets int32
	Now     time.Time
}

// Draw draws the raffle with its seed.
type Draw struct {
	Seed []byte
	Now  time.Time
}

func (Open) isRaffleCommand()  {}
func (Enter) isRaffleCommand() {}
func (Draw) isRaffleCommand()  {}

// Errors of raffles.
var (
	ErrRaffleNotFound = &es.Error{Kind: es.NotFound, Message: "no such raffle"}
	ErrRaffleExists   = &es.Error{Kind: es.FailedPrecondition, Field: "raffle_id", Message: "is a raffle already opened with other terms"}
	ErrRaffleDrawn    = &es.Error{Kind: es.FailedPrecondition, Message: "the raffle is drawn"}
	ErrRaffleClosed   = &es.Error{Kind: es.FailedPrecondition, Message: "the raffle's draw time has come: entries are closed"}
	ErrRaffleFull     = &es.Error{Kind: es.FailedPrecondition, Message: "the raffle has no room for more entries"}
	ErrTooManyTickets = &es.Error{Kind: es.FailedPrecondition, Field: "tickets", Message: "would pass the raffle's maximum per person"}
	ErrNotDue         = &es.Error{Kind: es.FailedPrecondition, Message: "the raffle's draw time has not come"}
	ErrSeedMismatch   = es.Errorf(es.Internal, "the draw seed does not match the raffle's commitment")
)

// ValidateOpen checks an open's terms against now; errors name the field.
func ValidateOpen(o Open, now time.Time) error {
	if o.ID != "" {
		if err := es.ValidateToken("raffle_id", o.ID); err != nil {
			return err
		}
	}
	if o.Prize == "" || len(o.Prize) > MaxPrizeBytes || !utf8.ValidString(o.Prize) {
		return es.Invalidf("prize", "must be 1..%d bytes of UTF-8", MaxPrizeBytes)
	}
	if o.EntryCost < 1 || o.EntryCost > MaxPoints {
		return es.Invalidf("entry_cost", "must be 1..%d points, got %d", MaxPoints, o.EntryCost)
	}
	if o.MaxPerPerson < 1 || o.MaxPerPerson > MaxTicketsPerPerson {
		return es.Invalidf("max_entries_per_person", "must be 1..%d, got %d", MaxTicketsPerPerson, o.MaxPerPerson)
	}
	if o.Winners < 1 || o.Winners > MaxWinners {
		return es.Invalidf("winners", "must be 1..%d, got %d", MaxWinners, o.Winners)
	}
	if !o.DrawAt.After(now) {
		return es.Invalidf("draw_at", "must be in the future, got %s", o.DrawAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// RaffleDecider is the raffle aggregate.
var RaffleDecider = es.Decider[Raffle, RaffleCommand]{
	Initial: func() Raffle { return Raffle{} },
	Decide:  decideRaffle,
	Evolve:  evolveRaffle,
}

func decideRaffle(r Raffle, cmd RaffleCommand) ([]proto.Message, error) {
	if o, ok := cmd.(Open); ok {
		if r.Open() {
			if r.Prize == o.Prize && r.EntryCost == o.EntryCost && r.MaxPerPerson == o.MaxPerPerson &&
				r.Winners == o.Winners && r.DrawAt.Equal(o.DrawAt) && r.SeedSHA256 == o.SeedSHA256 {
				return nil, nil // a retried open
			}
			return nil, ErrRaffleExists
		}
		if err := ValidateOpen(o, o.Now); err != nil {
			return nil, err
		}
		return []proto.Message{&rewardsv1.RaffleOpened{RaffleId: o.ID, Prize: o.Prize, EntryCost: o.EntryCost,
			MaxEntriesPerPerson: o.MaxPerPerson, Winners: o.Winners, DrawAt: timestamppb.New(o.DrawAt),
			SeedSha256: o.SeedSHA256, OpenedBy: o.OpenedBy, OpenedAt: timestamppb.New(o.Now)}}, nil
	}
	if !r.Open() {
		return nil, ErrRaffleNotFound
	}
	switch c := cmd.(type) {
	case Enter:
		switch {
		case r.entry(c.EntryID):
			return nil, nil // recorded already (by the call or the settling reaction)
		case c.Tickets < 1:
			return nil, es.Invalidf("tickets", "must be at least 1, got %d", c.Tickets)
		case r.Drawn:
			return nil, ErrRaffleDrawn
		case !c.Now.Before(r.DrawAt):
			return nil, ErrRaffleClosed
		case len(r.Entries) >= MaxEntries:
			return nil, ErrRaffleFull
		case r.TicketsOf(c.UserID)+c.Tickets > r.MaxPerPerson:
			return nil, ErrTooManyTickets
		}
		return []proto.Message{&rewardsv1.RaffleEntered{RaffleId: r.ID, UserId: c.UserID, EntryId: c.EntryID, Tickets: c.Tickets}}, nil
	case Draw:
		if r.Drawn {
			return nil, nil
		}
		if c.Now.Before(r.DrawAt) {
			return nil, ErrNotDue
		}
		sum := sha256.Sum256(c.Seed)
		if hex.EncodeToString(sum[:]) != r.SeedSHA256 {
			return nil, ErrSeedMismatch
		}
		tickets := r.Tickets()
		return []proto.Message{&rewardsv1.RaffleDrawn{RaffleId: r.ID, Seed: hex.EncodeToString(c.Seed),
			TicketsTotal: int64(len(tickets)), Winners: DrawWinners(c.Seed, tickets, int(r.Winners)), DrawnAt: timestamppb.New(c.Now)}}, nil
	}
	return nil, fmt.Errorf("rewards: unknown raffle command %T", cmd)
}

// evolveRaffle folds an event; it appends to a clipped copy of Entries,
// never into the array a cached state shares.
func evolveRaffle(r Raffle, ev proto.Message) Raffle {
	switch e := ev.(type) {
	case *rewardsv1.RaffleOpened:
		r = Raffle{ID: e.RaffleId, Prize: e.Prize, EntryCost: e.EntryCost, MaxPerPerson: e.MaxEntriesPerPerson,
			Winners: e.Winners, DrawAt: e.DrawAt.AsTime(), SeedSHA256: e.SeedSha256, OpenedBy: e.OpenedBy, OpenedAt: e.OpenedAt.AsTime()}
	case *rewardsv1.RaffleEntered:
		r.Entries = append(slices.Clip(r.Entries), Entry{ID: e.EntryId, UserID: e.UserId, Tickets: e.Tickets})
	case *rewardsv1.RaffleDrawn:
		r.Drawn, r.Seed, r.Won, r.DrawnAt = true, e.Seed, e.Winners, e.DrawnAt.AsTime()
	}
	return r
}

// Ticket is one ticket in a draw.
type Ticket struct{ UserID string }

// DrawWinners picks up to k winners from tickets (one per ticket bought,
// in recorded order) with seed, deterministically, so anyone holding the
// revealed seed and the entries recomputes the same winners:
//
//	for round r = 0, 1, 2, ... while fewer than k winners and tickets remain:
//	  h = SHA-256(seed || uint32 big-endian r)
//	  x = the first 8 bytes of h as a big-endian uint64
//	  n = tickets remaining; if x >= n × floor((2^64 − 1) / n), reject: next round
//	  the holder of remaining ticket x mod n wins; all their tickets leave
//
// Rejecting the top of the range makes every remaining ticket equally
// likely. Winners are in draw order, each at most once.
func DrawWinners(seed []byte, tickets []Ticket, k int) []string {
	remaining := slices.Clone(tickets)
	winners := []string{}
	msg := bytes.Clone(seed)
	msg = append(msg, 0, 0, 0, 0)
	for r := uint32(0); len(winners) < k && len(remaining) > 0; r++ {
		binary.BigEndian.PutUint32(msg[len(seed):], r)
		h := sha256.Sum256(msg)
		x, n := binary.BigEndian.Uint64(h[:8]), uint64(len(remaining))
		if x >= (^uint64(0)/n)*n {
			continue
		}
		w := remaining[x%n].UserID
		winners = append(winners, w)
		remaining = slices.DeleteFunc(remaining, func(t Ticket) bool { return t.UserID == w })
	}
	return winners
}
