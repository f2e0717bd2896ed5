package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
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

// On a cluster, users' keys created at once through every node agree,
// and each node reads every key straight after: a replica behind the
// others never calls a user with a key keyless (reads go to the bucket
// stream's leader). It failed a node's start in CI: three nodes creating
// the e-mail index key at once, and one read "no personal data key".
func TestAccountKeysOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	stores := openClusterStores(t)
	ctx := context.Background()
	var nodes []*tljs.AccountKeys
	for _, s := range stores {
		err := tljs.WhileClusterForms(ctx, true, func(ctx context.Context) (err error) {
			k, err := tljs.OpenAccountKeys(ctx, s.JetStream(), 3)
			if err == nil {
				nodes = append(nodes, k)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for u := range 20 {
		user := fmt.Sprintf("u%d", u)
		got := make([][]byte, len(nodes))
		errs := make([]error, len(nodes))
		var wg sync.WaitGroup
		for i, k := range nodes {
			wg.Go(func() { got[i], errs[i] = k.Create(ctx, user) })
		}
		wg.Wait()
		for i := range nodes {
			if errs[i] != nil {
				t.Fatalf("%s created through node %d: %v", user, i, errs[i])
			}
			if !bytes.Equal(got[i], got[0]) {
				t.Fatalf("%s: node %d has key %x, node 0 %x", user, i, got[i], got[0])
			}
			if read, err := nodes[(i+1)%len(nodes)].Key(ctx, user); err != nil || !bytes.Equal(read, got[0]) {
				t.Fatalf("%s read through node %d straight after: %x, %v", user, (i+1)%len(nodes), read, err)
			}
		}
	}
}
