package jetstream

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/personal"
)

// AccountKeysBucket is the KV bucket of users' personal data keys.
const AccountKeysBucket = "ACCOUNT_KEYS"

// AccountKeys keeps users' personal data keys in a JetStream KV bucket,
// one key per user, without history: a deleted key is purged, so that
// nothing of it stays in the bucket's stream, and its purge marker stays
// to tell a forgotten user from one who never had a key. Safe for
// concurrent use.
type AccountKeys struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream // the bucket's, whose purge markers Key reads
}

var _ personal.Keys = (*AccountKeys)(nil)

// OpenAccountKeys opens (creating when absent) the keys bucket of js.
func OpenAccountKeys(ctx context.Context, js jetstream.JetStream, replicas int) (*AccountKeys, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: AccountKeysBucket, History: 1,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		Description: "users' personal data keys; deleting one forgets the user's personal data"})
	if err != nil {
		return nil, fmt.Errorf("account keys bucket: %w", err)
	}
	stream, err := js.Stream(ctx, "KV_"+AccountKeysBucket)
	if err != nil {
		return nil, fmt.Errorf("account keys bucket: %w", err)
	}
	return &AccountKeys{kv: kv, stream: stream}, nil
}

// kvKey is userID's name in the bucket: user ids may hold ':' (an
// identity provider's "oidc:..."), which KV keys may not, and never '/'.
func kvKey(userID string) string { return strings.ReplaceAll(userID, ":", "/") }

// Create makes userID's key if it has none (create-if-absent: racing
// callers agree on the first) and returns the one stored; a deleted key
// is an error wrapping personal.ErrForgotten.
func (k *AccountKeys) Create(ctx context.Context, userID string) ([]byte, error) {
	key := make([]byte, personal.KeyBytes)
	rand.Read(key)
	// Revision 0 writes only where nothing was ever written; unlike
	// kv.Create, not over a purge marker, so a forgotten user never gets
	// a key again (data sealed anew would contradict the forgetting).
	_, err := k.kv.Update(ctx, kvKey(userID), key, 0)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return k.Key(ctx, userID)
	}
	if err != nil {
		return nil, fmt.Errorf("create key of user %s: %w", userID, err)
	}
	return key, nil
}

// Key returns userID's key, or an error wrapping personal.ErrNoKey
// (never made) or personal.ErrForgotten (deleted).
func (k *AccountKeys) Key(ctx context.Context, userID string) ([]byte, error) {
	// The subject's last message, as kv.Get reads it, but a delete or
	// purge marker is told apart from no message at all.
	m, err := k.stream.GetLastMsgForSubject(ctx, "$KV."+AccountKeysBucket+"."+kvKey(userID))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, fmt.Errorf("user %s: %w", userID, personal.ErrNoKey)
	case err != nil:
		return nil, fmt.Errorf("key of user %s: %w", userID, err)
	case m.Header.Get("KV-Operation") != "": // DEL or PURGE
		return nil, fmt.Errorf("user %s: %w", userID, personal.ErrForgotten)
	}
	return m.Data, nil
}

// Delete purges userID's key.
func (k *AccountKeys) Delete(ctx context.Context, userID string) error {
	if err := k.kv.Purge(ctx, kvKey(userID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete key of user %s: %w", userID, err)
	}
	return nil
}
