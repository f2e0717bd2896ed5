package jetstream_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/rewards"
)

// Seeds are created once per raffle: racing callers, and a second
// process opening the bucket again, all get the first seed stored.
func TestSeedsCreateOnceAndAgree(t *testing.T) {
	s := openStore(t, tljs.Config{})
	ctx := context.Background()
	a, err := tljs.OpenSeeds(ctx, s.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tljs.OpenSeeds(ctx, s.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	got := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			seeds := a
			if i%2 == 1 {
				seeds = b
			}
			var err error
			if got[i], err = seeds.Seed(ctx, "raffle:1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if len(got[i]) != rewards.SeedBytes || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("seed %d = %x, seed 0 = %x: want one %d-byte seed", i, got[i], got[0], rewards.SeedBytes)
		}
	}
	other, err := a.Seed(ctx, "raffle:2")
	if err != nil || bytes.Equal(other, got[0]) {
		t.Fatalf("another raffle's seed %x (%v): want its own", other, err)
	}
}
