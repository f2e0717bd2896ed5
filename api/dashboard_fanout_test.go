package api_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
)

// BenchmarkDashboardFanOut is one change pushed to 1, 100 and 1000
// watchers of the default query through the real server (gzip accepted,
// as connect-go clients do): the time from the append until every watcher
// has the update (ns/op), and the process's CPU per update, clients'
// decoding included (cpu-ms/update). The dashboard has 40 zones and 100
// active deliveries (about 12 KB). Run it with:
//
//	go test ./api -run '^$' -bench DashboardFanOut -benchtime 50x
func BenchmarkDashboardFanOut(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
			f := start(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			now := time.Now()
			var msgs []proto.Message
			for i := range 100 {
				id := fmt.Sprintf("busy-%d", i)
				msgs = append(msgs, &deliveryv1.OrderPlaced{OrderId: id, Zone: fmt.Sprintf("zone-%02d", i%40), Amount: 12000, PlacedAt: timestamppb.New(now)},
					&deliveryv1.OrderAccepted{OrderId: id, RiderId: fmt.Sprintf("rider-%02d", i), AcceptedAt: timestamppb.New(now)})
			}
			appendTo(b, f, "busy", msgs...)
			tok := f.Token(b, "ops", auth.Admin)
			c := dashboardv1connect.NewDashboardServiceClient(h2c, f.URL)
			positions := make([]atomic.Uint64, n)
			wake := make(chan struct{}, 1)
			var size atomic.Int64
			for i := range n {
				s, err := c.WatchDashboard(ctx, withToken(&dashboardv1.WatchDashboardRequest{}, tok))
				if err != nil {
					b.Fatal(err)
				}
				go func() {
					defer s.Close()
					for s.Receive() {
						if i == 0 {
							size.Store(int64(proto.Size(s.Msg())))
						}
						positions[i].Store(s.Msg().Dashboard.Position)
						select {
						case wake <- struct{}{}:
						default:
						}
					}
				}()
			}
			all := func(pos uint64) {
				deadline := time.After(30 * time.Second)
				for i := range positions {
					for positions[i].Load() < pos {
						select {
						case <-wake:
						case <-deadline:
							b.Fatalf("watcher %d has position %d, not %d", i, positions[i].Load(), pos)
						}
					}
				}
			}
			all(f.Last(b))
			cpu := cpuTime(b)
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("o%d", i)
				all(appendTo(b, f, id, &deliveryv1.OrderPlaced{OrderId: id, Zone: "zone-00", Amount: 9000, PlacedAt: timestamppb.Now()}))
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/update")
			b.ReportMetric(float64(size.Load()), "response-B")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
