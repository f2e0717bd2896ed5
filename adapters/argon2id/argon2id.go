// Package argon2id hashes passwords with Argon2id (RFC 9106) for the
// accounts context, in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$key).
package argon2id

import (
	"cmp"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/tideline/tideline/domain/accounts"
)

// Parameters of new hashes: 2 passes over 64 MiB with 2 lanes (about
// 100 ms on one core of a small server, so two cores cope with a few
// logins a second), a 16-byte salt and a 32-byte key.
const (
	Time    = 2
	Memory  = 64 * 1024 // KiB
	Threads = 2
	SaltLen = 16
	KeyLen  = 32
	// MaxConcurrent bounds the hashes computed at once, and so their
	// memory (MaxConcurrent × Memory): a burst of logins or sign-ups,
	// which need no token, waits rather than exhausts the server.
	MaxConcurrent = 4
)

var slots = make(chan struct{}, MaxConcurrent)

func idKey(password string, salt []byte, t, m uint32, p uint8, n uint32) []byte {
	slots <- struct{}{}
	defer func() { <-slots }()
	return argon2.IDKey([]byte(password), salt, t, m, p, n)
}

// Hasher is the Argon2id accounts.Passwords. Safe for concurrent use;
// at most MaxConcurrent hashes run at once in a process.
// Hasher hashes with argon2id at Time passes over Memory KiB; zero
// values take the defaults above (RFC 9106's second recommendation).
// Verify reads the cost from the hash, so hashes made at any cost verify.
type Hasher struct{ Time, Memory uint32 }

var _ accounts.Passwords = Hasher{}

// Hash returns password's hash with a fresh salt.
func (h Hasher) Hash(password string) (string, error) {
	t, m := cmp.Or(h.Time, Time), cmp.Or(h.Memory, Memory)
	salt := make([]byte, SaltLen)
	rand.Read(salt)
	key := idKey(password, salt, t, m, Threads, KeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches hash, comparing the keys in
// constant time; a malformed hash matches nothing. It reads the
// parameters from the hash, so older hashes keep working.
func (Hasher) Verify(hash, password string) bool {
	f := strings.Split(hash, "$")
	if len(f) != 6 || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || m > 256*1024 || t == 0 || t > 10 || p == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(f[4])
	key, err2 := b64.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(key) == 0 || len(key) > 64 {
		return false
	}
	got := idKey(password, salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}
