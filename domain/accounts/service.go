package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/personal"
)

// EmailIndexKey is the name, in the personal data keys, of the key of
// e-mail claims' digests (not a user id: those have no '-').
const EmailIndexKey = "email-index"

// Passwords hashes and checks passwords (adapters/argon2id).
type Passwords interface {
	Hash(password string) (string, error)
	// Verify reports, in constant time, whether password matches hash.
	Verify(hash, password string) bool
}

// OTP makes and checks TOTP secrets (adapters/totp).
type OTP interface {
	// Generate returns a new secret (base32) and its otpauth:// URI.
	Generate(account string) (secret, uri string, err error)
	// Validate reports whether code is valid for secret at now.
	Validate(code, secret string, now time.Time) bool
}

// Login rate limits.
const (
	AttemptsPerAccount = 5 // failed logins
	AttemptsPerAddress = 20
	SignUpsPerAddress  = 20
	AttemptWindow      = time.Minute
)

// Service runs the accounts commands. Safe for concurrent use.
type Service struct {
	users     *es.Repository[User, Command]
	claims    *es.Repository[string, string]
	keys      personal.Keys
	data      personal.Data
	passwords Passwords
	otp       OTP
	dummy     func() (string, error) // a hash to verify for unknown e-mails
	emailKey  []byte
	byAccount *Limiter
	byAddress *Limiter
	signUps   *Limiter // by address
	now       func() time.Time
}

// NewService returns a service over store, reading (or creating) the
// e-mail index key from keys. now nil means time.Now.
func NewService(ctx context.Context, store es.Store, keys personal.Keys, passwords Passwords, otp OTP, now func() time.Time) (*Service, error) {
	if now == nil {
		now = time.Now
	}
	emailKey, err := keys.Create(ctx, EmailIndexKey)
	if err != nil {
		return nil, fmt.Errorf("e-mail index key: %w", err)
	}
	// Hashing takes a tenth of a second of both cores at production
	// cost: not at the server's start, whose replay needs the cores, but
	// at the first log-in, whatever its e-mail (so the first log-in for
	// an unknown e-mail takes no longer than one for a known one).
	dummy := sync.OnceValues(func() (string, error) { return passwords.Hash(rand.Text()) })
	return &Service{
		users: es.NewRepository(store, Decider, 0), claims: es.NewRepository(store, Claim, 0),
		keys: keys, data: personal.Data{Keys: keys}, passwords: passwords, otp: otp, dummy: dummy, emailKey: emailKey,
		byAccount: NewLimiter(AttemptsPerAccount, AttemptWindow),
		byAddress: NewLimiter(AttemptsPerAddress, AttemptWindow),
		signUps:   NewLimiter(SignUpsPerAddress, AttemptWindow),
		now:       now,
	}, nil
}

// emailStream is the stream claiming a normalised address.
func (s *Service) emailStream(email string) es.StreamID {
	mac := hmac.New(sha256.New, s.emailKey)
	mac.Write([]byte(email))
	return EmailStream(hex.EncodeToString(mac.Sum(nil)))
}

func meta(actor, source string) es.AppendOptions {
	return es.AppendOptions{Meta: es.Metadata{Actor: actor, Source: source}}
}

// SignUpInput is a sign-up as given; Address is the client's.
type SignUpInput struct{ Email, Password, Role, DisplayName, Address string }

// SignUp opens an account. For an e-mail already taken it opens nothing
// and returns no error, after the same password hashing: the answer does
// not tell the address has an account. Its time hides it only as far as
// the hash dominates: a new account also writes its key and two commits
// (about 0.3 ms on one node beside the hash's 100 ms; a replicated append
// is a consensus round trip), a difference that many sign-ups could
// average out (SignUpsPerAddress slows that). A log-in with the password
// just chosen, failing for a taken e-mail, tells it anyway: without
// e-mail verification nothing hides that. Errors: Invalid naming email,
// password, role or display_name; store errors.
func (s *Service) SignUp(ctx context.Context, in SignUpInput) error {
	email, err := NormaliseEmail("email", in.Email)
	if err != nil {
		return err
	}
	if err := ValidatePassword("password", in.Password); err != nil {
		return err
	}
	role, err := ValidateSignUpRole("role", in.Role)
	if err != nil {
		return err
	}
	name, err := ValidateName("display_name", in.DisplayName)
	if err != nil {
		return err
	}
	if ok, retry := s.signUps.Allow(in.Address, s.now()); !ok {
		return tooMany("sign-ups from this address", retry)
	}
	hash, err := s.passwords.Hash(in.Password)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	id := strings.ToLower(rand.Text())
	holder, _, err := s.claims.Get(ctx, s.emailStream(email))
	if err != nil {
		return err
	}
	if holder != "" {
		u, _, err := s.users.GetAt(ctx, Stream(holder), es.Latest)
		if err != nil {
			return err
		}
		if u.ID != "" {
			return nil // taken: said no differently from a sign-up that worked
		}
		// An earlier sign-up claimed the e-mail and failed before it wrote
		// the user: finish it now, as this one, under the claimed id.
		id = holder
	}
	key, err := s.keys.Create(ctx, id)
	if err != nil {
		return es.Wrap(es.Unavailable, "personal data keys", err)
	}
	emailSealed, err := personal.Seal(key, id, email)
	if err != nil {
		return err
	}
	nameSealed, err := personal.Seal(key, id, name)
	if err != nil {
		return err
	}
	if holder == "" {
		_, err = s.claims.Handle(ctx, s.emailStream(email), id, meta("user:"+id, "api"))
		if errors.Is(err, ErrEmailTaken) {
			return s.keys.Delete(ctx, id) // a concurrent sign-up won
		}
		if err != nil {
			return err
		}
	}
	_, err = s.users.Handle(ctx, Stream(id), SignUp{UserID: id, Role: role, EmailSealed: emailSealed, NameSealed: nameSealed,
		PasswordHash: hash, Now: s.now()}, meta("user:"+id, "api"))
	if es.KindOf(err) == es.Conflict {
		// A concurrent sign-up took the claim as an orphan and wrote the
		// user first (or this one did so to a claim still in flight): the
		// e-mail is taken, said no differently.
		return nil
	}
	return err
}

// Session is a login's refresh token and who it is for; the API adds
// the access token.
type Session struct {
	UserID         string
	Role           auth.Role
	Refresh        string
	RefreshExpires time.Time
}

// LoginInput is a login as given; Address is the client's.
type LoginInput struct{ Email, Password, Code, Address string }

// Login checks an e-mail and password (and a TOTP or recovery code when
// TOTP is on; a recovery code is spent) and opens a refresh family.
// Errors: Invalid naming email or password; ResourceExhausted past the
// rate limits ("retry in N s": AttemptsPerAddress attempts from one
// address, AttemptsPerAccount failed ones for one e-mail, a minute); ErrBadCredentials alike for an unknown
// e-mail and a wrong password (both verify one argon2id hash);
// ErrDisabled; ErrBadCode.
func (s *Service) Login(ctx context.Context, in LoginInput) (Session, error) {
	email, err := NormaliseEmail("email", in.Email)
	if err != nil {
		return Session{}, err
	}
	if in.Password == "" || len(in.Password) > MaxPasswordLen {
		return Session{}, es.Invalidf("password", "must be 1 to %d bytes", MaxPasswordLen)
	}
	now := s.now()
	if ok, retry := s.byAddress.Allow(in.Address, now); !ok {
		return Session{}, tooMany("login attempts from this address", retry)
	}
	if ok, retry := s.byAccount.Check(email, now); !ok {
		return Session{}, tooMany("failed logins for this account", retry)
	}
	sess, err := s.login(ctx, email, in)
	if es.KindOf(err) == es.Unauthenticated {
		s.byAccount.Record(email, now)
	}
	return sess, err
}

func (s *Service) login(ctx context.Context, email string, in LoginInput) (Session, error) {
	dummy, err := s.dummy()
	if err != nil {
		return Session{}, fmt.Errorf("dummy password hash: %w", err)
	}
	holder, _, err := s.claims.Get(ctx, s.emailStream(email))
	if err != nil {
		return Session{}, err
	}
	var u User
	if holder != "" {
		if u, _, err = s.users.GetAt(ctx, Stream(holder), es.Latest); err != nil {
			return Session{}, err
		}
	}
	if u.ID == "" {
		s.passwords.Verify(dummy, in.Password)
		return Session{}, ErrBadCredentials
	}
	if !s.passwords.Verify(u.PasswordHash, in.Password) {
		return Session{}, ErrBadCredentials
	}
	if u.Disabled || u.Forgotten {
		return Session{}, ErrDisabled
	}
	if u.TOTP() {
		if err := s.second(ctx, u, in.Code); err != nil {
			return Session{}, err
		}
	}
	return s.open(ctx, u)
}

// second checks a TOTP code, or else spends a recovery code.
func (s *Service) second(ctx context.Context, u User, code string) error {
	code = strings.TrimSpace(code)
	if code == "" || len(code) > 64 {
		return ErrBadCode
	}
	if secret, err := s.data.Reveal(ctx, u.ID, u.TOTPSecret); err == nil && s.otp.Validate(code, secret, s.now()) {
		return nil
	}
	_, err := s.users.Handle(ctx, Stream(u.ID), UseRecovery{Hash: Digest(normRecovery(code))}, meta("user:"+u.ID, "api"))
	return err
}

func normRecovery(code string) string { return strings.ToLower(strings.ReplaceAll(code, "-", "")) }

// open starts a refresh family for u.
func (s *Service) open(ctx context.Context, u User) (Session, error) {
	token, hash := newRefresh(u.ID)
	exp := s.now().Add(RefreshTokenTTL)
	if _, err := s.users.Handle(ctx, Stream(u.ID), IssueRefresh{Family: strings.ToLower(rand.Text()), Hash: hash, Expires: exp},
		meta("user:"+u.ID, "api")); err != nil {
		return Session{}, err
	}
	return Session{UserID: u.ID, Role: u.Role, Refresh: token, RefreshExpires: exp}, nil
}

// newRefresh returns a refresh token and its digest. The token is the
// user id and 32 random bytes (base64url), so that it names its stream.
func newRefresh(userID string) (token, hash string) {
	var b [32]byte
	rand.Read(b[:])
	token = userID + "." + base64.RawURLEncoding.EncodeToString(b[:])
	return token, Digest(token)
}

// refreshUser returns the user a refresh token names.
func refreshUser(token string) (string, error) {
	if token == "" {
		return "", es.Invalidf("refresh_token", "must not be empty")
	}
	id, rest, ok := strings.Cut(token, ".")
	if !ok || rest == "" || len(token) > 200 || es.ValidateToken("refresh_token", id) != nil {
		return "", ErrBadRefresh
	}
	return id, nil
}

// Refresh spends a refresh token for a new one of its family. A spent
// token presented again revokes the family (ErrRefreshReused). Errors:
// Invalid naming refresh_token when empty; ErrBadRefresh (unknown,
// expired or revoked); ErrRefreshReused;
// ErrDisabled.
func (s *Service) Refresh(ctx context.Context, token string) (Session, error) {
	id, err := refreshUser(token)
	if err != nil {
		return Session{}, err
	}
	newToken, newHash := newRefresh(id)
	exp := s.now().Add(RefreshTokenTTL)
	old := Digest(token)
	_, err = s.users.Handle(ctx, Stream(id), Rotate{OldHash: old, NewHash: newHash, Expires: exp, Now: s.now()}, meta("user:"+id, "api"))
	if errors.Is(err, ErrRefreshReused) {
		u, _, gerr := s.users.Get(ctx, Stream(id))
		if gerr != nil {
			return Session{}, gerr
		}
		if _, rerr := s.users.Handle(ctx, Stream(id), RevokeFamily{Family: u.refresh[old].family, Reason: "reuse"}, meta("user:"+id, "api")); rerr != nil {
			return Session{}, rerr
		}
		return Session{}, ErrRefreshReused
	}
	if errors.Is(err, ErrUserNotFound) {
		return Session{}, ErrBadRefresh
	}
	if err != nil {
		return Session{}, err
	}
	u, _, err := s.users.Get(ctx, Stream(id))
	if err != nil {
		return Session{}, err
	}
	return Session{UserID: id, Role: u.Role, Refresh: newToken, RefreshExpires: exp}, nil
}

// Logout revokes a refresh token's family. Errors: ErrBadRefresh.
func (s *Service) Logout(ctx context.Context, token string) error {
	id, err := refreshUser(token)
	if err != nil {
		return err
	}
	u, _, err := s.users.Get(ctx, Stream(id))
	if err != nil {
		return err
	}
	r, ok := u.refresh[Digest(token)]
	if !ok {
		return ErrBadRefresh
	}
	_, err = s.users.Handle(ctx, Stream(id), RevokeFamily{Family: r.family, Reason: "logout"}, meta("user:"+id, "api"))
	return err
}

// self returns p's own account.
func (s *Service) self(ctx context.Context, p auth.Principal) (User, error) {
	if !p.Person() {
		return User{}, es.Errorf(es.Forbidden, "only people have accounts")
	}
	u, _, err := s.users.Get(ctx, Stream(p.Subject))
	if err == nil && u.ID == "" {
		err = ErrUserNotFound
	}
	return u, err
}

// EnrolTOTP starts TOTP for p: a new secret, pending until VerifyTOTP.
// Errors: ErrUserNotFound; ErrTOTPOn.
func (s *Service) EnrolTOTP(ctx context.Context, p auth.Principal) (secret, uri string, err error) {
	u, err := s.self(ctx, p)
	if err != nil {
		return "", "", err
	}
	if u.TOTP() {
		return "", "", ErrTOTPOn
	}
	if secret, uri, err = s.otp.Generate(u.ID); err != nil {
		return "", "", fmt.Errorf("totp secret: %w", err)
	}
	sealed, err := s.sealFor(ctx, u.ID, secret)
	if err != nil {
		return "", "", err
	}
	_, err = s.users.Handle(ctx, Stream(u.ID), EnrolTOTP{SecretSealed: sealed}, meta(p.String(), "api"))
	return secret, uri, err
}

// VerifyTOTP turns TOTP on with a code of the pending secret, and
// returns RecoveryCodes recovery codes (stored as digests). Errors:
// Invalid naming code; ErrNoTOTPPending; ErrBadCode; ErrTOTPOn.
func (s *Service) VerifyTOTP(ctx context.Context, p auth.Principal, code string) ([]string, error) {
	if code == "" {
		return nil, es.Invalidf("code", "must not be empty")
	}
	u, err := s.self(ctx, p)
	if err != nil {
		return nil, err
	}
	if u.TOTP() {
		return nil, ErrTOTPOn
	}
	if u.TOTPPending == nil {
		return nil, ErrNoTOTPPending
	}
	secret, err := s.data.Reveal(ctx, u.ID, u.TOTPPending)
	if err != nil {
		return nil, err
	}
	if !s.otp.Validate(code, secret, s.now()) {
		return nil, ErrBadCode
	}
	codes := make([]string, RecoveryCodes)
	hashes := make([]string, RecoveryCodes)
	for i := range codes {
		c := strings.ToLower(rand.Text()[:10])
		codes[i], hashes[i] = c[:5]+"-"+c[5:], Digest(c)
	}
	if _, err := s.users.Handle(ctx, Stream(u.ID), EnableTOTP{RecoveryHashes: hashes}, meta(p.String(), "api")); err != nil {
		return nil, err
	}
	return codes, nil
}

// DisableTOTP turns TOTP off given a current code. Errors: Invalid
// naming code; ErrTOTPOff; ErrBadCode.
func (s *Service) DisableTOTP(ctx context.Context, p auth.Principal, code string) error {
	if code == "" {
		return es.Invalidf("code", "must not be empty")
	}
	u, err := s.self(ctx, p)
	if err != nil {
		return err
	}
	if !u.TOTP() {
		return ErrTOTPOff
	}
	if err := s.second(ctx, u, code); err != nil {
		return err
	}
	_, err = s.users.Handle(ctx, Stream(u.ID), DisableTOTP{}, meta(p.String(), "api"))
	return err
}

var errAdminOnly = &es.Error{Kind: es.Forbidden, Message: "admin only"}

func (s *Service) existing(ctx context.Context, userID string) error {
	if err := es.ValidateToken("user_id", userID); err != nil {
		return err
	}
	u, _, err := s.users.Get(ctx, Stream(userID))
	if err == nil && u.ID == "" {
		err = ErrUserNotFound
	}
	return err
}

// GrantRole changes a user's role. Admin only (so enterprise and admin
// are granted only by an admin). Errors: Forbidden; Invalid naming
// user_id or role; ErrUserNotFound.
func (s *Service) GrantRole(ctx context.Context, p auth.Principal, userID, role string) error {
	if p.Role != auth.Admin {
		return errAdminOnly
	}
	r, err := auth.ParseRole(role)
	if err != nil || r == auth.Device || r == auth.Service || r == auth.Metrics {
		return es.Invalidf("role", "must be a person's role: admin, walker, rider, labeler or enterprise")
	}
	if err := s.existing(ctx, userID); err != nil {
		return err
	}
	_, err = s.users.Handle(ctx, Stream(userID), GrantRole{Role: r, By: p.String()}, meta(p.String(), "api"))
	return err
}

// DisableUser stops a user's logins and refreshes at once (access
// tokens already issued expire within AccessTokenTTL). Admin only.
func (s *Service) DisableUser(ctx context.Context, p auth.Principal, userID string) error {
	if p.Role != auth.Admin {
		return errAdminOnly
	}
	if err := s.existing(ctx, userID); err != nil {
		return err
	}
	_, err := s.users.Handle(ctx, Stream(userID), Disable{By: p.String()}, meta(p.String(), "api"))
	return err
}

// ForgetUser deletes a user's personal data key, then records
// UserForgotten: their e-mail, name and TOTP secret can no longer be
// read, and they can no longer log in. The admin's or the user's own.
func (s *Service) ForgetUser(ctx context.Context, p auth.Principal, userID string) error {
	if p.Role != auth.Admin && !(p.Person() && p.Subject == userID) {
		return es.Errorf(es.Forbidden, "only an admin or the user may forget a user")
	}
	if err := s.existing(ctx, userID); err != nil {
		return err
	}
	if err := s.keys.Delete(ctx, userID); err != nil {
		return es.Wrap(es.Unavailable, "personal data keys", err)
	}
	_, err := s.users.Handle(ctx, Stream(userID), Forget{By: p.String()}, meta(p.String(), "api"))
	return err
}

// Reveal opens a user's sealed data (from events or a read model), or
// returns Forgotten once their key is deleted.
func (s *Service) Reveal(ctx context.Context, userID string, sealed []byte) (string, error) {
	v, err := s.data.Reveal(ctx, userID, sealed)
	if errors.Is(err, personal.ErrForgotten) {
		return Forgotten, nil
	}
	return v, err
}

func (s *Service) sealFor(ctx context.Context, userID, plain string) ([]byte, error) {
	sealed, err := s.data.Seal(ctx, userID, plain)
	if errors.Is(err, personal.ErrForgotten) {
		return nil, es.Wrap(es.FailedPrecondition, "the user's personal data key is gone", err)
	}
	if err != nil {
		return nil, es.Wrap(es.Unavailable, "personal data keys", err)
	}
	return sealed, nil
}
