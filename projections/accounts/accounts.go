// Package accounts is the accounts read model: every user's id, role,
// whether disabled or forgotten, when created, and their sealed e-mail
// and display name (the API opens them with the user's key; a forgotten
// user's are dropped here too).
package accounts

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
)

// Name is the projection's stable name.
const Name = "accounts"

// User is one user as the model has it.
type User struct {
	ID          string    `json:"id"`
	Role        string    `json:"role"`
	Disabled    bool      `json:"disabled,omitempty"`
	Forgotten   bool      `json:"forgotten,omitempty"`
	Created     time.Time `json:"created"`
	EmailSealed []byte    `json:"email,omitempty"`
	NameSealed  []byte    `json:"name,omitempty"`
}

// Model is the users list. Safe for queries concurrent with Apply.
type Model struct {
	mu    sync.RWMutex
	users map[string]*User
	pos   uint64
}

var (
	_ projections.Projection = (*Model)(nil)
	_ projections.Scoped     = (*Model)(nil)
	_ projections.Selective  = (*Model)(nil)
)

// New returns an empty model.
func New() *Model { return &Model{users: map[string]*User{}} }

func (m *Model) Name() string { return Name }
func (m *Model) Version() int { return 1 }

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.accounts.user.>"} }

// EventTypes lists the events the model reads.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*accountsv1.UserSignedUp)(nil), (*accountsv1.RoleGranted)(nil),
		(*accountsv1.UserDisabled)(nil), (*accountsv1.UserForgotten)(nil))
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users, m.pos = map[string]*User{}, 0
}

// Position is the last applied position.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

// Apply folds e.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	if d, ok := e.Data.(*accountsv1.UserSignedUp); ok {
		m.users[d.UserId] = &User{ID: d.UserId, Role: d.Role, Created: d.CreatedAt.AsTime(),
			EmailSealed: d.EmailSealed, NameSealed: d.DisplayNameSealed}
		return
	}
	u := m.users[e.Stream.ID]
	if u == nil {
		return
	}
	switch d := e.Data.(type) {
	case *accountsv1.RoleGranted:
		u.Role = d.Role
	case *accountsv1.UserDisabled:
		u.Disabled = true
	case *accountsv1.UserForgotten:
		u.Forgotten, u.EmailSealed, u.NameSealed = true, nil, nil
	}
}

// List returns every user, oldest first.
func (m *Model) List() []User {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]User, 0, len(m.users))
	for _, u := range m.users {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b User) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

type snapshot struct {
	Pos   uint64  `json:"pos"`
	Users []*User `json:"users"`
}

// Snapshot serializes the model.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	s := snapshot{Pos: m.pos}
	for _, u := range m.users {
		s.Users = append(s.Users, u)
	}
	return json.Marshal(s)
}

// Restore replaces the model with a snapshot's.
func (m *Model) Restore(data []byte) error {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	users := make(map[string]*User, len(s.Users))
	for _, u := range s.Users {
		users[u.ID] = u
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.users, m.pos = users, s.Pos
	return nil
}
