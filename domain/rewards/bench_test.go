package rewards_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/rewards"
)

// benchDebits runs b.N rounds of 100 concurrent one-point debits through
// four services on the real JetStream store: on one account (contended)
// or on 100 (one each), and reports successful appends a second and the
// conflicts retried per debit.
func benchDebits(b *testing.B, accounts int) {
	const writers = 100
	store := openStore(b)
	ctx := context.Background()
	svcs := []*rewards.Service{rewards.NewService(store, fixedSeeds{}, nil), rewards.NewService(store, fixedSeeds{}, nil),
		rewards.NewService(store, fixedSeeds{}, nil), rewards.NewService(store, fixedSeeds{}, nil)}
	user := func(i int) string { return fmt.Sprintf("u%d", i%accounts) }
	for i := range accounts {
		if _, err := svcs[0].Adjust(ctx, admin, user(i), int64(b.N*writers/accounts), "fund"); err != nil {
			b.Fatal(err)
		}
	}
	store.conflicts.Store(0)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				if _, err := svcs[i%len(svcs)].Adjust(ctx, admin, user(i), -1, "spend"); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*writers)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(store.conflicts.Load())/float64(b.N*writers), "conflicts/debit")
}

// BenchmarkLedgerContention is 100 concurrent debits on one account.
func BenchmarkLedgerContention(b *testing.B) { benchDebits(b, 1) }

// BenchmarkLedgerUncontended is the baseline: 100 concurrent debits on
// 100 accounts, one each.
func BenchmarkLedgerUncontended(b *testing.B) { benchDebits(b, 100) }
