package totp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	tltotp "github.com/tideline/tideline/adapters/totp"
)

func TestGenerateValidate(t *testing.T) {
	var o tltotp.TOTP
	secret, uri, err := o.Generate("u1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(uri, "otpauth://totp/Tideline:u1?") || !strings.Contains(uri, "secret="+secret) {
		t.Fatalf("uri %q", uri)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	code, err := totp.GenerateCode(secret, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		code string
		at   time.Time
		want bool
	}{
		{"current", code, now, true},
		{"one_period_late", code, now.Add(30 * time.Second), true},
		{"two_periods_late", code, now.Add(61 * time.Second), false},
		{"wrong", "000000", now, code == "000000"},
		{"not_digits", "abcdef", now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := o.Validate(tc.code, secret, tc.at); got != tc.want {
				t.Fatalf("got %v", got)
			}
		})
	}
}
