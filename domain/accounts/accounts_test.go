package accounts_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/accounts"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func given(events ...proto.Message) accounts.User {
	u := accounts.Decider.Initial()
	for _, e := range events {
		u = accounts.Decider.Evolve(u, e)
	}
	return u
}

var (
	signedUp = &accountsv1.UserSignedUp{UserId: "u1", Role: "walker"}
	issued   = &accountsv1.RefreshIssued{Family: "f1", Hash: "h1", ExpiresAt: tsp(t0.Add(time.Hour))}
)

func tsp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func TestRefreshRotation(t *testing.T) {
	rotate := accounts.Rotate{OldHash: "h1", NewHash: "h2", Expires: t0.Add(2 * time.Hour), Now: t0}
	tests := []struct {
		name  string
		state accounts.User
		want  error
		n     int
	}{
		{"fresh_token_rotates", given(signedUp, issued), nil, 2},
		{"spent_token_is_reuse", given(signedUp, issued, &accountsv1.RefreshUsed{Hash: "h1"}), accounts.ErrRefreshReused, 0},
		{"revoked_family_refused", given(signedUp, issued, &accountsv1.RefreshFamilyRevoked{Family: "f1"}), accounts.ErrBadRefresh, 0},
		{"unknown_token_refused", given(signedUp), accounts.ErrBadRefresh, 0},
		{"disabled_user_refused", given(signedUp, issued, &accountsv1.UserDisabled{}), accounts.ErrDisabled, 0},
		{"no_user", given(), accounts.ErrUserNotFound, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := accounts.Decider.Decide(tc.state, rotate)
			if !errors.Is(err, tc.want) || len(evs) != tc.n {
				t.Fatalf("got %d events, %v; want %d, %v", len(evs), err, tc.n, tc.want)
			}
		})
	}
	t.Run("expired_token_refused", func(t *testing.T) {
		late := rotate
		late.Now = t0.Add(time.Hour)
		if _, err := accounts.Decider.Decide(given(signedUp, issued), late); !errors.Is(err, accounts.ErrBadRefresh) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestRecoveryCodeSpentOnce(t *testing.T) {
	u := given(signedUp, &accountsv1.TotpEnrolled{SecretSealed: []byte("s")}, &accountsv1.TotpEnabled{RecoveryHashes: []string{"r1"}})
	evs, err := accounts.Decider.Decide(u, accounts.UseRecovery{Hash: "r1"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("first use: %v", err)
	}
	u2 := accounts.Decider.Evolve(u, evs[0])
	if _, err := accounts.Decider.Decide(u2, accounts.UseRecovery{Hash: "r1"}); !errors.Is(err, accounts.ErrBadCode) {
		t.Fatalf("second use: %v", err)
	}
	if _, err := accounts.Decider.Decide(u, accounts.UseRecovery{Hash: "r1"}); err != nil {
		t.Fatalf("the earlier state changed: %v", err)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		err         error
	}{
		{"email_without_domain_dot", "email", func() error { _, err := accounts.NormaliseEmail("email", "kim@localhost"); return err }()},
		{"email_with_name", "email", func() error { _, err := accounts.NormaliseEmail("email", "Kim <kim@example.com>"); return err }()},
		{"short_password", "password", accounts.ValidatePassword("password", "short")},
		{"common_password", "password", accounts.ValidatePassword("password", "Password123")},
		{"admin_sign_up", "role", func() error { _, err := accounts.ValidateSignUpRole("role", string(auth.Admin)); return err }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e *es.Error
			if !errors.As(tc.err, &e) || e.Kind != es.Invalid || e.Field != tc.field {
				t.Fatalf("got %v, want Invalid naming %s", tc.err, tc.field)
			}
		})
	}
	if got, err := accounts.NormaliseEmail("email", "  Kim@Example.COM "); err != nil || got != "kim@example.com" {
		t.Fatalf("normalise: %q %v", got, err)
	}
}

func TestLimiter(t *testing.T) {
	l := accounts.NewLimiter(2, time.Minute)
	l.Allow("a", t0)
	l.Allow("a", t0.Add(10*time.Second))
	if ok, retry := l.Allow("a", t0.Add(20*time.Second)); ok || retry != 40*time.Second {
		t.Fatalf("third: %v %v", ok, retry)
	}
	if ok, _ := l.Allow("a", t0.Add(61*time.Second)); !ok {
		t.Fatal("after the window: refused")
	}
	for range 5 {
		if ok, _ := l.Check("b", t0); !ok {
			t.Fatal("Check recorded an attempt")
		}
	}
	l.Record("b", t0)
	l.Record("b", t0)
	if ok, _ := l.Check("b", t0); ok {
		t.Fatal("two recorded attempts of two allowed")
	}
}
