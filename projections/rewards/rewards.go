// Package rewards holds the rewards context's read models: Accounts
// (each person's balance, streak and latest ledger lines) and Raffles
// (every raffle's terms, state and tickets per person). The ledger's
// full history and each raffle's entries stay in the event store.
package rewards

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
)

// Names of the read models: stable.
const (
	AccountsName = "rewards-accounts"
	RafflesName  = "rewards-raffles"
)

// MaxLines bounds the ledger lines kept per account.
const MaxLines = 50

type account struct {
	balance   int64
	streak    int32
	lastStamp string
	lines     []*rewardsv1.LedgerLine // oldest first
}

// Accounts is every account's balance, streak and latest MaxLines
// ledger lines. Safe for queries concurrent with Apply.
type Accounts struct {
	mu    sync.RWMutex
	users map[string]*account
	pos   uint64
}

var (
	_ projections.Projection = (*Accounts)(nil)
	_ projections.Scoped     = (*Accounts)(nil)
	_ projections.Selective  = (*Accounts)(nil)
	_ projections.Projection = (*Raffles)(nil)
	_ projections.Scoped     = (*Raffles)(nil)
	_ projections.Selective  = (*Raffles)(nil)
)

// NewAccounts returns an empty model.
func NewAccounts() *Accounts {
	m := &Accounts{}
	m.Reset()
	return m
}

func (m *Accounts) Name() string { return AccountsName }
func (m *Accounts) Version() int { return 1 }

// Subjects lists the streams the model reads.
func (m *Accounts) Subjects() []string { return []string{"ev.rewards.account.>"} }

// EventTypes lists the events the model reads.
func (m *Accounts) EventTypes() []string {
	return projections.TypeNames((*rewardsv1.PointsCredited)(nil), (*rewardsv1.PointsDebited)(nil), (*rewardsv1.StampCollected)(nil))
}

// Reset empties the model.
func (m *Accounts) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users, m.pos = map[string]*account{}, 0
}

// Position is the last applied position.
func (m *Accounts) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

func (m *Accounts) user(id string) *account {
	a := m.users[id]
	if a == nil {
		a = &account{}
		m.users[id] = a
	}
	return a
}

func (a *account) add(l *rewardsv1.LedgerLine) {
	a.balance = l.BalanceAfter
	a.lines = append(a.lines, l)
	if len(a.lines) > MaxLines {
		a.lines = slices.Delete(a.lines, 0, len(a.lines)-MaxLines)
	}
}

// Apply folds e.
func (m *Accounts) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	at := timestamppb.New(e.OccurredAt)
	switch d := e.Data.(type) {
	case *rewardsv1.PointsCredited:
		m.user(d.UserId).add(&rewardsv1.LedgerLine{Position: e.Position.Seq, OccurredAt: at, Points: d.Points, Cause: d.Cause,
			Ref: d.Ref, Reason: d.Reason, BalanceAfter: d.BalanceAfter})
	case *rewardsv1.PointsDebited:
		m.user(d.UserId).add(&rewardsv1.LedgerLine{Position: e.Position.Seq, OccurredAt: at, Points: -d.Points, Cause: d.Cause,
			Ref: d.Ref, Reason: d.Reason, BalanceAfter: d.BalanceAfter})
	case *rewardsv1.StampCollected:
		a := m.user(d.UserId)
		a.streak, a.lastStamp = d.Streak, d.Date
	}
}

// Account returns user's account as the model has it.
func (m *Accounts) Account(user string) *rewardsv1.Account {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := &rewardsv1.Account{UserId: user}
	if a := m.users[user]; a != nil {
		out.Balance, out.Streak, out.LastStampDate = a.balance, a.streak, a.lastStamp
	}
	return out
}

// Ledger returns user's lines older than position before (0: the
// newest), newest first, at most limit, and the position to pass as
// before for the next page (0 when there is none).
func (m *Accounts) Ledger(user string, before uint64, limit int) ([]*rewardsv1.LedgerLine, uint64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a := m.users[user]
	if a == nil {
		return nil, 0
	}
	var out []*rewardsv1.LedgerLine
	i := len(a.lines) - 1
	for ; i >= 0 && before != 0 && a.lines[i].Position >= before; i-- {
	}
	for ; i >= 0 && len(out) < limit; i-- {
		out = append(out, a.lines[i])
	}
	if i >= 0 && len(out) > 0 {
		return out, out[len(out)-1].Position
	}
	return out, 0
}

var accountsFrame = projections.Framed{Magic: "tlrwacc1"}

// Snapshot serializes the model, users in order.
func (m *Accounts) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	msgs := make([]proto.Message, 0, len(m.users))
	for _, id := range slices.Sorted(maps.Keys(m.users)) {
		a := m.users[id]
		msgs = append(msgs, &rewardsv1.AccountSnapshot{Account: &rewardsv1.Account{UserId: id, Balance: a.balance,
			Streak: a.streak, LastStampDate: a.lastStamp}, Lines: a.lines})
	}
	return accountsFrame.Marshal(m.pos, msgs)
}

// Restore replaces the model with a snapshot's.
func (m *Accounts) Restore(data []byte) error {
	users := map[string]*account{}
	pos, err := accountsFrame.Unmarshal(data, func() proto.Message { return new(rewardsv1.AccountSnapshot) }, func(msg proto.Message) error {
		s := msg.(*rewardsv1.AccountSnapshot)
		users[s.Account.GetUserId()] = &account{balance: s.Account.GetBalance(), streak: s.Account.GetStreak(),
			lastStamp: s.Account.GetLastStampDate(), lines: s.Lines}
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users, m.pos = users, pos
	return nil
}

type raffle struct {
	r       *rewardsv1.Raffle // terms and state, without entries
	tickets map[string]int32  // per person
}

// Raffles is every raffle: terms, state, tickets per person. Safe for
// queries concurrent with Apply.
type Raffles struct {
	mu      sync.RWMutex
	raffles map[string]*raffle
	pos     uint64
}

// NewRaffles returns an empty model.
func NewRaffles() *Raffles {
	m := &Raffles{}
	m.Reset()
	return m
}

func (m *Raffles) Name() string { return RafflesName }
func (m *Raffles) Version() int { return 1 }

// Subjects lists the streams the model reads.
func (m *Raffles) Subjects() []string { return []string{"ev.rewards.raffle.>"} }

// EventTypes lists the events the model reads.
func (m *Raffles) EventTypes() []string {
	return projections.TypeNames((*rewardsv1.RaffleOpened)(nil), (*rewardsv1.RaffleEntered)(nil), (*rewardsv1.RaffleDrawn)(nil))
}

// Reset empties the model.
func (m *Raffles) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.raffles, m.pos = map[string]*raffle{}, 0
}

// Position is the last applied position.
func (m *Raffles) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

// Apply folds e.
func (m *Raffles) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	switch d := e.Data.(type) {
	case *rewardsv1.RaffleOpened:
		if m.raffles[d.RaffleId] == nil {
			m.raffles[d.RaffleId] = &raffle{r: &rewardsv1.Raffle{RaffleId: d.RaffleId, Prize: d.Prize, EntryCost: d.EntryCost,
				MaxEntriesPerPerson: d.MaxEntriesPerPerson, WinnersCount: d.Winners, DrawAt: d.DrawAt, SeedSha256: d.SeedSha256,
				OpenedBy: d.OpenedBy, State: rewardsv1.RaffleState_RAFFLE_STATE_OPEN, OpenedAt: d.OpenedAt}, tickets: map[string]int32{}}
		}
	case *rewardsv1.RaffleEntered:
		if r := m.raffles[d.RaffleId]; r != nil {
			if r.tickets[d.UserId] == 0 {
				r.r.Entrants++
			}
			r.tickets[d.UserId] += d.Tickets
			r.r.TicketsTotal += int64(d.Tickets)
		}
	case *rewardsv1.RaffleDrawn:
		if r := m.raffles[d.RaffleId]; r != nil {
			r.r.State, r.r.Seed, r.r.Winners, r.r.DrawnAt = rewardsv1.RaffleState_RAFFLE_STATE_DRAWN, d.Seed, d.Winners, d.DrawnAt
		}
	}
}

// Due returns the open raffles whose draw time is not after now, in
// draw order: rewards.Due.
func (m *Raffles) Due(now time.Time) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var due []*rewardsv1.Raffle
	for _, r := range m.raffles {
		if r.r.State == rewardsv1.RaffleState_RAFFLE_STATE_OPEN && !r.r.DrawAt.AsTime().After(now) {
			due = append(due, r.r)
		}
	}
	slices.SortFunc(due, byDrawAt)
	ids := make([]string, len(due))
	for i, r := range due {
		ids[i] = r.RaffleId
	}
	return ids
}

func byDrawAt(a, b *rewardsv1.Raffle) int {
	return cmp.Or(a.DrawAt.AsTime().Compare(b.DrawAt.AsTime()), cmp.Compare(a.RaffleId, b.RaffleId))
}

// List returns raffles in state (unspecified: all), open ones first by
// draw time, then drawn ones latest drawn first, at most limit; each
// with user's tickets as MyTickets.
func (m *Raffles) List(state rewardsv1.RaffleState, user string, limit int) []*rewardsv1.Raffle {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*rewardsv1.Raffle
	for _, r := range m.raffles {
		if state == rewardsv1.RaffleState_RAFFLE_STATE_UNSPECIFIED || r.r.State == state {
			c := proto.CloneOf(r.r)
			c.MyTickets = r.tickets[user]
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *rewardsv1.Raffle) int {
		if a.State != b.State {
			return cmp.Compare(a.State, b.State) // open before drawn
		}
		if a.State == rewardsv1.RaffleState_RAFFLE_STATE_DRAWN {
			return -byDrawAt(a, b)
		}
		return byDrawAt(a, b)
	})
	return out[:min(limit, len(out))]
}

var rafflesFrame = projections.Framed{Magic: "tlrwraf1"}

// Snapshot serializes the model, raffles in order; each person's tickets
// are an entry without id.
func (m *Raffles) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	msgs := make([]proto.Message, 0, len(m.raffles))
	for _, id := range slices.Sorted(maps.Keys(m.raffles)) {
		r := m.raffles[id]
		c := proto.CloneOf(r.r)
		for _, u := range slices.Sorted(maps.Keys(r.tickets)) {
			c.Entries = append(c.Entries, &rewardsv1.RaffleEntry{UserId: u, Tickets: r.tickets[u]})
		}
		msgs = append(msgs, c)
	}
	return rafflesFrame.Marshal(m.pos, msgs)
}

// Restore replaces the model with a snapshot's.
func (m *Raffles) Restore(data []byte) error {
	raffles := map[string]*raffle{}
	pos, err := rafflesFrame.Unmarshal(data, func() proto.Message { return new(rewardsv1.Raffle) }, func(msg proto.Message) error {
		r := msg.(*rewardsv1.Raffle)
		t := map[string]int32{}
		for _, e := range r.Entries {
			t[e.UserId] = e.Tickets
		}
		r.Entries = nil
		raffles[r.RaffleId] = &raffle{r: r, tickets: t}
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.raffles, m.pos = raffles, pos
	return nil
}
