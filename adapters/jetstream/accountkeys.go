package jetstream

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/accounts"
)

// AccountKeysBucket is the KV bucket of users' personal data keys.
const AccountKeysBucket = "ACCOUNT_KEYS"

// AccountKeys keeps users' personal data keys in a JetStream KV bucket,
// one key per user, without history: a deleted key is purged, so that
// nothing of it stays in the bucket's stream. Safe for concurrent use.
type AccountKeys struct{ kv jetstream.KeyValue }

var _ accounts.Keys = (*AccountKeys)(nil)

// OpenAccountKeys opens (creating when absent) the keys bucket of js.
func OpenAccountKeys(ctx context.Context, js jetstream.JetStream, replicas int) (*AccountKeys, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: AccountKeysBucket, History: 1,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		Description: "users' personal data keys; deleting one forgets the user's personal data"})
	if err != nil {
		return nil, fmt.Errorf("account keys bucket: %w", err)
	}
	return &AccountKeys{kv: kv}, nil
}

// Create makes userID's key if it has none (create-if-absent: racing
// callers agree on the first) and returns the one stored.
func (k *AccountKeys) Create(ctx context.Context, userID string) ([]byte, error) {
	key := make([]byte, accounts.KeyBytes)
	rand.Read(key)
	_, err := k.kv.Create(ctx, userID, key)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return k.Key(ctx, userID)
	}
	if err != nil {
		return nil, fmt.Errorf("create key of user %s: %w", userID, err)
	}
	return key, nil
}

// Key returns userID's key, or an error wrapping accounts.ErrNoKey.
func (k *AccountKeys) Key(ctx context.Context, userID string) ([]byte, error) {
	e, err := k.kv.Get(ctx, userID)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("user %s: %w", userID, accounts.ErrNoKey)
	}
	if err != nil {
		return nil, fmt.Errorf("key of user %s: %w", userID, err)
	}
	return e.Value(), nil
}

// Delete purges userID's key.
func (k *AccountKeys) Delete(ctx context.Context, userID string) error {
	if err := k.kv.Purge(ctx, userID); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete key of user %s: %w", userID, err)
	}
	return nil
}
