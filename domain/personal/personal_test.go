package personal_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tideline/tideline/domain/personal"
)

// keys is an in-memory personal.Keys: nil marks a deleted key.
type keys map[string][]byte

func (k keys) Create(_ context.Context, id string) ([]byte, error) {
	key, ok := k[id]
	switch {
	case ok && key == nil:
		return nil, personal.ErrForgotten
	case !ok:
		key = make([]byte, personal.KeyBytes)
		key[0] = byte(len(k) + 1)
		k[id] = key
	}
	return key, nil
}

func (k keys) Key(_ context.Context, id string) ([]byte, error) {
	key, ok := k[id]
	switch {
	case !ok:
		return nil, personal.ErrNoKey
	case key == nil:
		return nil, personal.ErrForgotten
	}
	return key, nil
}

func (k keys) Delete(_ context.Context, id string) error {
	k[id] = nil
	return nil
}

// Sealed data opens only with its user's key and id; once the key is
// deleted it reads as forgotten, and the user gets no key again.
func TestData(t *testing.T) {
	ctx := context.Background()
	d := personal.Data{Keys: keys{}}
	sealed, err := d.Seal(ctx, "kim", "kim@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := d.Seal(ctx, "kim", "kim@example.com"); string(again) == string(sealed) {
		t.Error("sealing twice gave the same bytes: the nonce is not random")
	}
	if got, err := d.Reveal(ctx, "kim", sealed); err != nil || got != "kim@example.com" {
		t.Fatalf("reveal: %q, %v", got, err)
	}
	if _, err := d.Seal(ctx, "lee", "x"); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Reveal(ctx, "lee", sealed); err == nil {
		t.Errorf("kim's data revealed as lee's: %q", got)
	}
	key, _ := d.Keys.Key(ctx, "kim")
	if got, err := personal.Open(key, "lee", sealed); err == nil {
		t.Errorf("kim's data opened with her key under lee's id: %q", got)
	}
	if f, err := d.Forgotten(ctx, "kim"); f || err != nil {
		t.Errorf("forgotten before deleted: %v, %v", f, err)
	}
	if f, err := d.Forgotten(ctx, "nobody"); f || err != nil {
		t.Errorf("a user who never had a key forgotten: %v, %v", f, err)
	}
	if err := d.Keys.Delete(ctx, "kim"); err != nil {
		t.Fatal(err)
	}
	if got, err := d.Reveal(ctx, "kim", sealed); !errors.Is(err, personal.ErrForgotten) {
		t.Errorf("reveal after delete: %q, %v; want ErrForgotten", got, err)
	}
	if f, err := d.Forgotten(ctx, "kim"); !f || err != nil {
		t.Errorf("forgotten after delete: %v, %v", f, err)
	}
	if _, err := d.Seal(ctx, "kim", "again"); !errors.Is(err, personal.ErrForgotten) {
		t.Errorf("seal after delete: %v; want ErrForgotten", err)
	}
}
