// Package personal is the kernel's personal data: each user's data key
// (Keys) and the one sealing with it that contexts use for the personal
// data they write into events (accounts: e-mail, name, TOTP secret;
// storytime: the notification address). Events are facts and are never
// erased, so that data goes into them only sealed with its user's key:
// deleting the key (crypto-shredding) makes all of it unreadable at
// once, in every context, in the stream and in its copies.
package personal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeyBytes is the size of a user's personal data key (AES-256).
const KeyBytes = 32

// Forgotten is what sealed personal data reads as once its key is
// deleted.
const Forgotten = "forgotten"

var (
	// ErrNoKey is wrapped by Keys.Key for a user who never had a key.
	ErrNoKey = errors.New("no personal data key")
	// ErrForgotten is wrapped by Keys for a user whose key was deleted,
	// and by Data for personal data that can no longer be read.
	ErrForgotten = errors.New("personal data forgotten")
)

// Keys keeps each user's personal data key (adapters/jetstream, the
// ACCOUNT_KEYS bucket). Implementations are safe for concurrent use.
type Keys interface {
	// Create makes userID's key (KeyBytes random bytes) if they have
	// none and returns the one stored: racing callers agree on the
	// first. A deleted key is not made again: an error wrapping
	// ErrForgotten.
	Create(ctx context.Context, userID string) ([]byte, error)
	// Key returns userID's key: an error wrapping ErrNoKey when they
	// never had one, ErrForgotten once it was deleted.
	Key(ctx context.Context, userID string) ([]byte, error)
	// Delete deletes userID's key for good. Deleting twice is no error.
	Delete(ctx context.Context, userID string) error
}

// Data seals and reveals users' personal data with their keys. Safe for
// concurrent use.
type Data struct{ Keys Keys }

// Seal seals plain with userID's key, making the key when they have
// none. Errors: wrapping ErrForgotten when their key was deleted; the
// key store's.
func (d Data) Seal(ctx context.Context, userID, plain string) ([]byte, error) {
	key, err := d.Keys.Create(ctx, userID)
	if err != nil {
		return nil, err
	}
	return Seal(key, userID, plain)
}

// Reveal opens what Seal sealed for userID. Errors: wrapping
// ErrForgotten when their key is gone (sealed data had one: gone means
// deleted); the key store's; an error when sealed was not sealed with
// their key.
func (d Data) Reveal(ctx context.Context, userID string, sealed []byte) (string, error) {
	key, err := d.Keys.Key(ctx, userID)
	if errors.Is(err, ErrNoKey) {
		return "", fmt.Errorf("%w: %w", ErrForgotten, err)
	}
	if err != nil {
		return "", err
	}
	return Open(key, userID, sealed)
}

// Forgotten reports whether userID's key was deleted: their personal
// data, sealed or (in events older than the sealing) plain, must no
// longer be used.
func (d Data) Forgotten(ctx context.Context, userID string) (bool, error) {
	_, err := d.Keys.Key(ctx, userID)
	switch {
	case errors.Is(err, ErrForgotten):
		return true, nil
	case err == nil || errors.Is(err, ErrNoKey):
		return false, nil
	}
	return false, err
}

// Seal encrypts plain with key (AES-256-GCM), bound to userID (the
// additional data, so that one user's sealed data does not open as
// another's): the nonce, then the ciphertext.
func Seal(key []byte, userID, plain string) ([]byte, error) {
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, []byte(plain), []byte(userID)), nil
}

// Open opens what Seal sealed with key for userID.
func Open(key []byte, userID string, sealed []byte) (string, error) {
	aead, err := gcm(key)
	if err != nil {
		return "", err
	}
	if len(sealed) < aead.NonceSize() {
		return "", errors.New("sealed data too short")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(userID))
	if err != nil {
		return "", fmt.Errorf("open sealed data: %w", err)
	}
	return string(plain), nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("personal data key: %w", err)
	}
	return cipher.NewGCM(block)
}
