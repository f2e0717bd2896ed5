package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/personal"
	"github.com/tideline/tideline/wire"
)

// AccountKeysBucket is the KV bucket of users' personal data keys.
const AccountKeysBucket = "ACCOUNT_KEYS"

// AccountKeys keeps users' personal data keys in a JetStream KV bucket,
// one key per user, without history: a deleted key is purged, so that
// nothing of it stays in the bucket's stream, and its purge marker stays
// to tell a forgotten user from one who never had a key. Safe for
// concurrent use.
type AccountKeys struct {
	kv jetstream.KeyValue
	nc *nats.Conn
	// get is the subject of the bucket stream's message get, which only
	// the stream's leader answers: a Direct Get (kv.Get's) may be
	// answered by a replica that has not yet applied a key another node
	// just created, and Key would then call a user with a key keyless,
	// or forgotten.
	get string
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
	get := strings.TrimSuffix(js.Options().APIPrefix, ".") + ".STREAM.MSG.GET.KV_" + AccountKeysBucket
	return &AccountKeys{kv: kv, nc: js.Conn(), get: get}, nil
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
		// Another wrote it first. On a cluster its write can still be
		// in flight (proposed, not yet applied, when the leader refused
		// this one): it is there within moments.
		for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
			got, err := k.Key(ctx, userID)
			if !errors.Is(err, personal.ErrNoKey) {
				return got, err
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("create key of user %s: another's key not readable: %w", userID, ctx.Err())
			case <-time.After(wait):
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create key of user %s: %w", userID, err)
	}
	return key, nil
}

// Key returns userID's key, or an error wrapping personal.ErrNoKey
// (never made) or personal.ErrForgotten (deleted).
func (k *AccountKeys) Key(ctx context.Context, userID string) ([]byte, error) {
	// The subject's last message, as kv.Get reads it, but from the
	// stream's leader (see get), and a delete or purge marker is told
	// apart from no message at all.
	body, _ := json.Marshal(wire.MsgGetRequest{LastBySubject: "$KV." + AccountKeysBucket + "." + kvKey(userID)})
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, directGetTimeout)
		defer cancel()
	}
	reply, err := k.nc.RequestWithContext(ctx, k.get, body)
	if err != nil {
		return nil, fmt.Errorf("key of user %s: %w", userID, err)
	}
	var res wire.MsgGetReply
	if err := json.Unmarshal(reply.Data, &res); err != nil {
		return nil, fmt.Errorf("key of user %s: %w", userID, err)
	}
	switch {
	case res.Error != nil && res.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, fmt.Errorf("user %s: %w", userID, personal.ErrNoKey)
	case res.Error != nil:
		return nil, fmt.Errorf("key of user %s: %w", userID, res.Error)
	case res.Message == nil:
		return nil, fmt.Errorf("key of user %s: the leader's answer has no message", userID)
	}
	h, err := wire.MsgHeaders(res.Message.Header)
	if err != nil {
		return nil, fmt.Errorf("key of user %s: %w", userID, err)
	}
	if textproto.MIMEHeader(h).Get("KV-Operation") != "" { // DEL or PURGE (keys read canonical)
		return nil, fmt.Errorf("user %s: %w", userID, personal.ErrForgotten)
	}
	return res.Message.Data, nil
}

// Delete purges userID's key.
func (k *AccountKeys) Delete(ctx context.Context, userID string) error {
	if err := k.kv.Purge(ctx, kvKey(userID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete key of user %s: %w", userID, err)
	}
	return nil
}
