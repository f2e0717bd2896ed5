package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/personal"
)

// A key is created once, read back, and after Delete is gone from the
// bucket's stream itself, not only hidden behind a delete marker; a
// deleted key is told from one never made, and is never made again.
func TestAccountKeys(t *testing.T) {
	s := openStore(t, tljs.Config{})
	ctx := context.Background()
	keys, err := tljs.OpenAccountKeys(ctx, s.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := keys.Create(ctx, "u1")
	if err != nil || len(k1) != personal.KeyBytes {
		t.Fatalf("create: %x %v", k1, err)
	}
	if again, err := keys.Create(ctx, "u1"); err != nil || !bytes.Equal(again, k1) {
		t.Fatalf("create again: %x %v", again, err)
	}
	if got, err := keys.Key(ctx, "u1"); err != nil || !bytes.Equal(got, k1) {
		t.Fatalf("key: %x %v", got, err)
	}
	if err := keys.Delete(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Key(ctx, "u1"); !errors.Is(err, personal.ErrForgotten) || errors.Is(err, personal.ErrNoKey) {
		t.Fatalf("key after delete: %v, want ErrForgotten", err)
	}
	if k, err := keys.Create(ctx, "u1"); !errors.Is(err, personal.ErrForgotten) {
		t.Fatalf("create after delete: %x %v, want ErrForgotten", k, err)
	}
	if _, err := keys.Key(ctx, "never"); !errors.Is(err, personal.ErrNoKey) || errors.Is(err, personal.ErrForgotten) {
		t.Fatalf("key never made: %v, want ErrNoKey", err)
	}
	// An identity provider's user id has a ':', which KV keys may not.
	idp, err := keys.Create(ctx, "oidc:auth0=7Cabc")
	if err != nil || len(idp) != personal.KeyBytes {
		t.Fatalf("create of an IdP user: %x %v", idp, err)
	}
	if got, err := keys.Key(ctx, "oidc:auth0=7Cabc"); err != nil || !bytes.Equal(got, idp) {
		t.Fatalf("key of an IdP user: %x %v", got, err)
	}
	if err := keys.Delete(ctx, "u1"); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
	st, err := s.JetStream().Stream(ctx, "KV_"+tljs.AccountKeysBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := st.GetMsg(ctx, seq); err == nil && bytes.Contains(m.Data, k1) {
			t.Fatalf("the deleted key is still at seq %d", seq)
		} else if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatal(err)
		}
	}
}
