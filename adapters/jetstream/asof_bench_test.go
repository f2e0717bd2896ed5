package jetstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	"github.com/tideline/tideline/projections"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// BenchmarkAsOf measures a steps leaderboard as of 1 and 30 "days" back
// (a day is asOfBenchDay commits), from the kept snapshots (one a day)
// and from position 1, against the current-state query in the same run:
//
//	go test ./adapters/jetstream/ -run '^$' -bench AsOf -benchtime 20x
func BenchmarkAsOf(b *testing.B) {
	const asOfBenchDay, days = 1000, 31
	s := runnerStore(b)
	ctx := context.Background()
	live := stepsmodel.New()
	kept := tljs.NewRunner(s, live, tljs.RunnerOptions{Logger: quietLogger, SnapshotEvery: 5 * time.Millisecond,
		HistoryEvery: asOfBenchDay, HistoryKeep: 64})
	stop := startRunner(b, kept)
	var last uint64
	for d := range days {
		date := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, d).Format(time.DateOnly)
		for i := range asOfBenchDay {
			u := fmt.Sprintf("walker-%d", i%500)
			res, err := s.Append(ctx, es.StreamID{Context: "steps", Type: "user", ID: u},
				[]proto.Message{&stepsv1.StepsRecorded{UserId: u, Date: date, Steps: int32(i)}}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
			if err != nil {
				b.Fatal(err)
			}
			last = res.Position.Seq
		}
		// A snapshot kept within each day.
		poll.Until(b, 30*time.Second, "the day's snapshot kept", func() bool {
			h := kept.History()
			return len(h) > 0 && h[len(h)-1] > last-asOfBenchDay
		})
	}
	if err := stop(); err != nil {
		b.Fatal(err)
	}
	fresh := func() projections.Projection { return stepsmodel.New() }
	bare := tljs.NewRunner(s, stepsmodel.New(), tljs.RunnerOptions{Bucket: "bare", HistoryEvery: -1, Logger: quietLogger,
		AsOf: tljs.NewAsOfLimits(1, 1<<30, time.Hour)})
	today := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, days-1).Format(time.DateOnly)
	b.Run("current", func(b *testing.B) {
		for b.Loop() {
			_ = live.Top(today, 10)
		}
	})
	for _, back := range []uint64{1, 30} {
		for _, c := range []struct {
			name string
			r    *tljs.Runner
		}{{"snapshots", kept}, {"from_position_1", bare}} {
			b.Run(fmt.Sprintf("%dd_back/%s", back, c.name), func(b *testing.B) {
				pos := last - back*asOfBenchDay - asOfBenchDay/2 // mid-day: half a day to replay after a kept snapshot
				replayed := 0
				i := uint64(0)
				for b.Loop() {
					i++ // three positions in turn, so the runner's cache of two never answers
					m, err := c.r.AsOf(ctx, fresh, pos-i%3)
					if err != nil {
						b.Fatal(err)
					}
					_ = m.Model.(*stepsmodel.Model).Top(today, 10)
					replayed += m.Replayed
				}
				b.ReportMetric(float64(replayed)/float64(b.N), "replayed/op")
			})
		}
	}
}
