package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/rewards"
)

// SeedsBucket is the KV bucket of raffles' secret draw seeds.
const SeedsBucket = "RAFFLE_SEEDS"

// Seeds keeps raffle seeds in a JetStream KV bucket, one key per raffle,
// created once and never changed. Safe for concurrent use, from any
// number of servers.
type Seeds struct{ kv jetstream.KeyValue }

var _ rewards.Seeds = (*Seeds)(nil)

// OpenSeeds opens (creating when absent) the seeds bucket of js, with
// the replicas the event store has (1 embedded, 3 clustered).
func OpenSeeds(ctx context.Context, js jetstream.JetStream, replicas int) (*Seeds, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SeedsBucket, History: 1,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		Description: "secret raffle draw seeds, revealed in RaffleDrawn"})
	if err != nil {
		return nil, fmt.Errorf("seeds bucket: %w", err)
	}
	return &Seeds{kv: kv}, nil
}

// Seed returns raffleID's seed, creating it with crypto/rand if it has
// none: the bucket's create-if-absent makes racing callers agree on the
// first one stored.
func (s *Seeds) Seed(ctx context.Context, raffleID string) ([]byte, error) {
	key := hex.EncodeToString([]byte(raffleID)) // KV keys allow no ':'
	for range 3 {
		e, err := s.kv.Get(ctx, key)
		if err == nil {
			return e.Value(), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("seed of raffle %s: %w", raffleID, err)
		}
		seed := make([]byte, rewards.SeedBytes)
		rand.Read(seed)
		_, err = s.kv.Create(ctx, key, seed)
		if err == nil {
			return seed, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("create seed of raffle %s: %w", raffleID, err)
		}
	}
	return nil, fmt.Errorf("seed of raffle %s: created and not found", raffleID)
}
