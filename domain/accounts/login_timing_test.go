package accounts_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/argon2id"
	"github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/adapters/totp"
	"github.com/tideline/tideline/domain/accounts"
)

// TestLoginTimingHidesUnknownEmails: a wrong password for an e-mail with
// an account takes as long as a login of an unknown e-mail, since both
// verify one argon2id hash. Over the real store, at a mid argon2id cost
// (8 MiB, one pass: the hash dominates the store reads, as the
// production cost does by more), in pairs from one address each, either
// kind first as often, each account tried fewer times than its limit.
// The median of the pairs' ratios must be within 1.5: a pair's two logins
// run back to back, so a load on the machine that comes and goes slows
// both (the ratio of the two kinds' medians strayed to 0.79 and 1.41 on a
// busy 2-core machine, the median pair ratio stayed within 0.89 to 1.10).
func TestLoginTimingHidesUnknownEmails(t *testing.T) {
	const n = 10
	const tries = accounts.AttemptsPerAccount - 1 // wrong passwords per account
	_, nc := natstest.Start(t)
	ctx := context.Background()
	store, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := jetstream.OpenAccountKeys(ctx, store.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := accounts.NewService(ctx, store, keys, argon2id.Hasher{Time: 1, Memory: 8 * 1024}, totp.TOTP{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const password = "tide-line river 42"
	for i := range n/tries + 1 {
		in := accounts.SignUpInput{Email: fmt.Sprintf("u%d@example.com", i), Password: password, Role: "walker",
			DisplayName: "U", Address: fmt.Sprintf("192.0.2.%d", i)}
		if err := svc.SignUp(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	timed := func(email, address string) time.Duration {
		t.Helper()
		runtime.GC() // each hash allocates its 8 MiB: no login pays for another's
		start := time.Now()
		_, err := svc.Login(ctx, accounts.LoginInput{Email: email, Password: "not the password", Address: address})
		d := time.Since(start)
		if !errors.Is(err, accounts.ErrBadCredentials) {
			t.Fatalf("login %s: %v, want ErrBadCredentials", email, err)
		}
		return d
	}
	var ratios []float64
	var withAccount, without []time.Duration
	for i := range n + 1 { // the first pair warms up, unmeasured
		addr := fmt.Sprintf("198.51.100.%d", i)
		known, unknown := fmt.Sprintf("u%d@example.com", i/tries), fmt.Sprintf("nobody%d@example.com", i)
		var k, u time.Duration
		if i%2 == 0 { // either goes first as often: no drift favours one
			k, u = timed(known, addr), timed(unknown, addr)
		} else {
			u, k = timed(unknown, addr), timed(known, addr)
		}
		if i > 0 {
			ratios = append(ratios, float64(k)/float64(u))
			withAccount, without = append(withAccount, k), append(without, u)
		}
	}
	ratio := median(ratios)
	t.Logf("median login: %v with an account, %v without; median pair ratio %.2f", median(withAccount), median(without), ratio)
	if ratio < 1/1.5 || ratio > 1.5 {
		t.Fatalf("a wrong password takes %.2f times as long as an unknown e-mail: the time tells whether an account exists", ratio)
	}
}

func median[T cmp.Ordered](xs []T) T {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}
