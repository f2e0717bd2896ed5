package es

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MinTime is the earliest date or time any input may name (a day's
// steps, a query range's start): Tideline holds no fact before it, and a
// year like 0001 is a client bug or a probe, never a real record.
var MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// StreamID names one aggregate instance: context, aggregate type and id.
// On JetStream it is the subject ev.<context>.<type>.<id>.
type StreamID struct {
	Context string
	Type    string
	ID      string
}

// String returns the stream's subject form, ev.<context>.<type>.<id>.
func (s StreamID) String() string {
	return "ev." + s.Context + "." + s.Type + "." + s.ID
}

// MaxTokenLen is the longest id accepted as a stream token.
const MaxTokenLen = 64

// ValidateToken reports whether s is a safe single subject token: 1 to
// MaxTokenLen bytes of ASCII letters, digits, '-', '_', '=' or ':'. field
// names the input in the returned Invalid error.
func ValidateToken(field, s string) error {
	if s == "" {
		return Invalidf(field, "must not be empty")
	}
	if len(s) > MaxTokenLen {
		return Invalidf(field, "must be at most %d bytes, got %d", MaxTokenLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=', c == ':':
		default:
			return Invalidf(field, "has character %q at byte %d; allowed: letters, digits, '-', '_', '=', ':'", c, i)
		}
	}
	return nil
}

// Validate checks every part of the stream id.
func (s StreamID) Validate() error {
	if err := ValidateToken("stream.context", s.Context); err != nil {
		return err
	}
	if err := ValidateToken("stream.type", s.Type); err != nil {
		return err
	}
	return ValidateToken("stream.id", s.ID)
}

// ParseStreamID is the inverse of StreamID.String.
// It reads every stored commit's subject, so it cuts rather than splits:
// no allocation.
func ParseStreamID(subject string) (StreamID, error) {
	rest, ev := strings.CutPrefix(subject, "ev.")
	bc, rest, ok1 := strings.Cut(rest, ".")
	typ, id, ok2 := strings.Cut(rest, ".")
	if !ev || !ok1 || !ok2 || strings.Contains(id, ".") {
		return StreamID{}, fmt.Errorf("subject %q is not ev.<context>.<type>.<id>", subject)
	}
	return StreamID{Context: bc, Type: typ, ID: id}, nil
}

// MaxIdempotencyKeyLen bounds client-supplied idempotency keys.
const MaxIdempotencyKeyLen = 128

// ValidateIdempotencyKey accepts empty or 1..128 bytes of printable ASCII.
func ValidateIdempotencyKey(field, k string) error {
	if len(k) > MaxIdempotencyKeyLen {
		return Invalidf(field, "must be at most %d bytes, got %d", MaxIdempotencyKeyLen, len(k))
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return Invalidf(field, "has non-printable or space character at byte %d", i)
		}
	}
	return nil
}

// Truncate returns s cut to at most n bytes at a rune boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// DigestID returns prefix and 26 lowercase base32 letters of the SHA-256
// of parts (each ended by a zero byte): a stable id, a safe stream token,
// derived from what identifies the thing (a user and an image's hash, an
// owner and their own id).
func DigestID(prefix string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil)[:16]))
}
