// Package accounts is the accounts context: people sign up with an
// e-mail and a password, log in (with TOTP when they enable it) and
// renew their access with rotating refresh tokens. Each user is a stream
// (ev.accounts.user.<user_id>); an e-mail is claimed by the first commit
// of its own stream (ev.accounts.email.<HMAC-SHA-256 of the address>),
// whose version check makes two sign-ups of one address race-free. The
// digest is keyed (EmailIndexKey) so that the stream's name does not let
// anyone who reads the events test guessed addresses.
//
// Personal data (e-mail, display name, TOTP secret) is sealed in the
// events with a per-user key (domain/personal); ForgetUser deletes the
// key, after which that data reads "forgotten", in this context and in
// every other that sealed with it, while the user's other facts stay.
package accounts

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/personal"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
)

// Limits of input.
const (
	MinPasswordLen  = 10
	MaxPasswordLen  = 256
	MaxEmailBytes   = 254
	MaxNameBytes    = 100
	RecoveryCodes   = 10
	Forgotten       = personal.Forgotten // what sealed data reads once its key is deleted
	RefreshTokenTTL = 30 * 24 * time.Hour
	AccessTokenTTL  = 15 * time.Minute
)

// SignUpRoles are the roles one may sign up with.
var SignUpRoles = []auth.Role{auth.Walker, auth.Rider, auth.Labeler}

// Stream returns a user's stream.
func Stream(userID string) es.StreamID {
	return es.StreamID{Context: "accounts", Type: "user", ID: userID}
}

// EmailStream returns the stream claiming an e-mail address, named by
// the address's keyed digest (see Service).
func EmailStream(digest string) es.StreamID {
	return es.StreamID{Context: "accounts", Type: "email", ID: digest}
}

// Digest is the SHA-256 (hex) of s: how refresh tokens and recovery
// codes are named in events.
func Digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// NormaliseEmail trims, lower-cases and parses an address. Errors:
// Invalid naming field.
func NormaliseEmail(field, s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", es.Invalidf(field, "must not be empty")
	}
	if len(s) > MaxEmailBytes {
		return "", es.Invalidf(field, "must be at most %d bytes", MaxEmailBytes)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", es.Invalidf(field, "must be a plain address like name@example.com")
	}
	if _, domain, _ := strings.Cut(s, "@"); !strings.Contains(domain, ".") {
		return "", es.Invalidf(field, "must have a domain with a dot")
	}
	return s, nil
}

// ValidatePassword checks a new password: MinPasswordLen..MaxPasswordLen
// bytes and not a common one.
func ValidatePassword(field, p string) error {
	if n := utf8.RuneCountInString(p); n < MinPasswordLen || len(p) > MaxPasswordLen {
		return es.Invalidf(field, "must be %d to %d characters", MinPasswordLen, MaxPasswordLen)
	}
	if common[strings.ToLower(p)] {
		return es.Invalidf(field, "is one of the most common passwords; choose another")
	}
	return nil
}

// ValidateSignUpRole parses a role one may sign up with.
func ValidateSignUpRole(field, s string) (auth.Role, error) {
	r := auth.Role(s)
	if !slices.Contains(SignUpRoles, r) {
		return "", es.Invalidf(field, "must be walker, rider or labeler, got %q", s)
	}
	return r, nil
}

// ValidateName checks a display name: 1..MaxNameBytes of valid UTF-8.
func ValidateName(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > MaxNameBytes || !utf8.ValidString(s) {
		return "", es.Invalidf(field, "must be 1 to %d bytes of text", MaxNameBytes)
	}
	return s, nil
}

type refresh struct {
	family  string
	expires time.Time
	used    bool
}

// User is a user's state, folded from its events.
type User struct {
	ID           string
	Role         auth.Role
	EmailSealed  []byte
	NameSealed   []byte
	PasswordHash string
	Created      time.Time
	Disabled     bool
	Forgotten    bool
	TOTPPending  []byte // sealed secret awaiting VerifyTOTP
	TOTPSecret   []byte // sealed secret while TOTP is on
	recovery     map[string]bool
	refresh      map[string]refresh
	revoked      map[string]bool // refresh families
}

// TOTP reports whether TOTP is on.
func (u User) TOTP() bool { return u.TOTPSecret != nil }

// Command is a command on a user.
type Command interface{ isCommand() }

type (
	// SignUp opens the account.
	SignUp struct {
		UserID                  string
		Role                    auth.Role
		EmailSealed, NameSealed []byte
		PasswordHash            string
		Now                     time.Time
	}
	// IssueRefresh records a new refresh token in family.
	IssueRefresh struct {
		Family, Hash string
		Expires      time.Time
	}
	// Rotate spends refresh token OldHash for NewHash, in its family.
	Rotate struct {
		OldHash, NewHash string
		Expires, Now     time.Time
	}
	// RevokeFamily ends a refresh family.
	RevokeFamily struct{ Family, Reason string }
	// EnrolTOTP records a pending secret.
	EnrolTOTP struct{ SecretSealed []byte }
	// EnableTOTP turns the pending secret on.
	EnableTOTP struct{ RecoveryHashes []string }
	// UseRecovery spends a recovery code.
	UseRecovery struct{ Hash string }
	// DisableTOTP turns TOTP off.
	DisableTOTP struct{}
	// GrantRole changes the role.
	GrantRole struct {
		Role auth.Role
		By   string
	}
	// Disable stops logins and refreshes.
	Disable struct{ By string }
	// Forget records that the key was deleted.
	Forget struct{ By string }
)

func (SignUp) isCommand()       {}
func (IssueRefresh) isCommand() {}
func (Rotate) isCommand()       {}
func (RevokeFamily) isCommand() {}
func (EnrolTOTP) isCommand()    {}
func (EnableTOTP) isCommand()   {}
func (UseRecovery) isCommand()  {}
func (DisableTOTP) isCommand()  {}
func (GrantRole) isCommand()    {}
func (Disable) isCommand()      {}
func (Forget) isCommand()       {}

// Errors of the decider.
var (
	ErrUserNotFound   = &es.Error{Kind: es.NotFound, Message: "no such user"}
	ErrBadCredentials = &es.Error{Kind: es.Unauthenticated, Message: "wrong e-mail or password"}
	ErrBadRefresh     = &es.Error{Kind: es.Unauthenticated, Message: "invalid refresh token"}
	ErrRefreshReused  = &es.Error{Kind: es.Unauthenticated, Message: "refresh token reused: every session of its login is revoked"}
	ErrDisabled       = &es.Error{Kind: es.Unauthenticated, Message: "account disabled"}
	ErrBadCode        = &es.Error{Kind: es.Unauthenticated, Message: "wrong or missing TOTP or recovery code"}
	ErrTOTPOn         = &es.Error{Kind: es.FailedPrecondition, Message: "TOTP is already on: disable it first"}
	ErrTOTPOff        = &es.Error{Kind: es.FailedPrecondition, Message: "TOTP is not on"}
	ErrNoTOTPPending  = &es.Error{Kind: es.FailedPrecondition, Message: "no TOTP enrolment pending: call EnrolTOTP first"}
)

// Decider is the user aggregate.
var Decider = es.Decider[User, Command]{
	Initial: func() User { return User{} },
	Decide:  decide,
	Evolve:  evolve,
}

func decide(u User, cmd Command) ([]proto.Message, error) {
	if c, ok := cmd.(SignUp); ok {
		if u.ID != "" {
			return nil, es.Errorf(es.Conflict, "user exists")
		}
		return []proto.Message{&accountsv1.UserSignedUp{UserId: c.UserID, Role: string(c.Role), EmailSealed: c.EmailSealed,
			DisplayNameSealed: c.NameSealed, PasswordHash: c.PasswordHash, CreatedAt: timestamppb.New(c.Now)}}, nil
	}
	if u.ID == "" {
		return nil, ErrUserNotFound
	}
	switch c := cmd.(type) {
	case IssueRefresh:
		if u.Disabled || u.Forgotten {
			return nil, ErrDisabled
		}
		return []proto.Message{&accountsv1.RefreshIssued{Family: c.Family, Hash: c.Hash, ExpiresAt: timestamppb.New(c.Expires)}}, nil
	case Rotate:
		r, ok := u.refresh[c.OldHash]
		if !ok || !c.Now.Before(r.expires) || u.revoked[r.family] {
			return nil, ErrBadRefresh
		}
		if r.used {
			return nil, ErrRefreshReused
		}
		if u.Disabled || u.Forgotten {
			return nil, ErrDisabled
		}
		return []proto.Message{&accountsv1.RefreshUsed{Hash: c.OldHash},
			&accountsv1.RefreshIssued{Family: r.family, Hash: c.NewHash, ExpiresAt: timestamppb.New(c.Expires)}}, nil
	case RevokeFamily:
		if u.revoked[c.Family] {
			return nil, nil
		}
		return []proto.Message{&accountsv1.RefreshFamilyRevoked{Family: c.Family, Reason: c.Reason}}, nil
	case EnrolTOTP:
		if u.TOTP() {
			return nil, ErrTOTPOn
		}
		return []proto.Message{&accountsv1.TotpEnrolled{SecretSealed: c.SecretSealed}}, nil
	case EnableTOTP:
		if u.TOTP() {
			return nil, ErrTOTPOn
		}
		if u.TOTPPending == nil {
			return nil, ErrNoTOTPPending
		}
		return []proto.Message{&accountsv1.TotpEnabled{RecoveryHashes: c.RecoveryHashes}}, nil
	case UseRecovery:
		if used, ok := u.recovery[c.Hash]; !ok || used {
			return nil, ErrBadCode
		}
		return []proto.Message{&accountsv1.RecoveryCodeUsed{Hash: c.Hash}}, nil
	case DisableTOTP:
		if !u.TOTP() {
			return nil, ErrTOTPOff
		}
		return []proto.Message{&accountsv1.TotpDisabled{}}, nil
	case GrantRole:
		if u.Role == c.Role {
			return nil, nil
		}
		return []proto.Message{&accountsv1.RoleGranted{Role: string(c.Role), By: c.By}}, nil
	case Disable:
		if u.Disabled {
			return nil, nil
		}
		return []proto.Message{&accountsv1.UserDisabled{By: c.By}}, nil
	case Forget:
		if u.Forgotten {
			return nil, nil
		}
		return []proto.Message{&accountsv1.UserForgotten{By: c.By}}, nil
	}
	return nil, fmt.Errorf("accounts: unknown command %T", cmd)
}

// evolve never changes a map in place: states are shared with the
// repository's cache.
func evolve(u User, ev proto.Message) User {
	switch e := ev.(type) {
	case *accountsv1.UserSignedUp:
		u = User{ID: e.UserId, Role: auth.Role(e.Role), EmailSealed: e.EmailSealed, NameSealed: e.DisplayNameSealed,
			PasswordHash: e.PasswordHash, Created: e.CreatedAt.AsTime()}
	case *accountsv1.RefreshIssued:
		u.refresh = es.With(u.refresh, e.Hash, refresh{family: e.Family, expires: e.ExpiresAt.AsTime()})
	case *accountsv1.RefreshUsed:
		r := u.refresh[e.Hash]
		r.used = true
		u.refresh = es.With(u.refresh, e.Hash, r)
	case *accountsv1.RefreshFamilyRevoked:
		u.revoked = es.With(u.revoked, e.Family, true)
	case *accountsv1.TotpEnrolled:
		u.TOTPPending = e.SecretSealed
	case *accountsv1.TotpEnabled:
		u.TOTPSecret, u.TOTPPending = u.TOTPPending, nil
		u.recovery = map[string]bool{}
		for _, h := range e.RecoveryHashes {
			u.recovery[h] = false
		}
	case *accountsv1.RecoveryCodeUsed:
		u.recovery = es.With(u.recovery, e.Hash, true)
	case *accountsv1.TotpDisabled:
		u.TOTPSecret, u.TOTPPending, u.recovery = nil, nil, nil
	case *accountsv1.RoleGranted:
		u.Role = auth.Role(e.Role)
	case *accountsv1.UserDisabled:
		u.Disabled = true
	case *accountsv1.UserForgotten:
		u.Forgotten = true
	}
	return u
}

// Claim is the e-mail claim aggregate: the user id holding an address.
var Claim = es.Decider[string, string]{
	Initial: func() string { return "" },
	Decide: func(holder, userID string) ([]proto.Message, error) {
		if holder != "" {
			return nil, ErrEmailTaken
		}
		return []proto.Message{&accountsv1.EmailClaimed{UserId: userID}}, nil
	},
	Evolve: func(holder string, ev proto.Message) string {
		if e, ok := ev.(*accountsv1.EmailClaimed); ok && holder == "" {
			return e.UserId
		}
		return holder
	},
}

// ErrEmailTaken is returned by the claim of an address already held. The
// service never shows it to a client.
var ErrEmailTaken = &es.Error{Kind: es.Conflict, Message: "e-mail taken"}
