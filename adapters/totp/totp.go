// Package totp makes and checks RFC 6238 time-based one-time passwords
// (6 digits, 30 s, SHA-1: what authenticator apps expect) with
// github.com/pquerna/otp, for the accounts context.
package totp

import (
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/tideline/tideline/domain/accounts"
)

// Issuer names the service in authenticator apps.
const Issuer = "Tideline"

// TOTP is accounts.OTP. Safe for concurrent use.
type TOTP struct{}

var _ accounts.OTP = TOTP{}

// Generate returns a new 160-bit secret and its otpauth:// URI.
func (TOTP) Generate(account string) (secret, uri string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: Issuer, AccountName: account})
	if err != nil {
		return "", "", err
	}
	return k.Secret(), k.URL(), nil
}

// Validate accepts the code of now's period or of the one before or
// after it (clock skew).
func (TOTP) Validate(code, secret string, now time.Time) bool {
	ok, err := totp.ValidateCustom(code, secret, now, totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	return err == nil && ok
}
