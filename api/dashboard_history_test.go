package api_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections/dashboard"
	"github.com/tideline/tideline/projections/projtest/city"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
)

// standing is a read model runner standing still at a position.
type standing uint64

func (s standing) Position() uint64                      { return uint64(s) }
func (s standing) WaitFor(context.Context, uint64) error { return nil }
func (s standing) Advanced() <-chan struct{}             { return nil }

// BenchmarkGetDashboardHistory is GetDashboard over Connect (gzip
// accepted, as connect-go clients do) from a model holding 10k and 1M
// events of city.Delivery, applied in-process (so no NATS): its cost
// must not grow with the history. Each is run again with 1,000 orders
// waiting (city.Waiting), in the city's real zones (about 400 of them,
// where the history's orders are in 25): an answer lists every zone. Run
// it with:
//
//	go test ./api/ -run '^$' -bench GetDashboardHistory -benchtime 2000x
func BenchmarkGetDashboardHistory(b *testing.B) {
	for _, c := range []struct{ n, waiting int }{{10_000, 0}, {1_000_000, 0}, {10_000, 1000}, {1_000_000, 1000}} {
		n := c.n
		b.Run(fmt.Sprintf("events=%dk/waiting=%d", n/1000, c.waiting), func(b *testing.B) {
			m := dashboard.New()
			var end time.Time
			seq := uint64(0)
			start := time.Now().Add(-time.Duration(n*10/54) * time.Minute) // about 5.4 events a minute: the history ends about now
			for msg := range city.Delivery(n, start, &end) {
				seq++
				m.Apply(es.Event{Type: string(msg.ProtoReflect().Descriptor().FullName()), Data: msg, Position: es.Position{Seq: seq}})
			}
			for w := range city.Waiting(c.waiting, end) {
				seq++
				m.Apply(es.Event{Type: string(w.Event.ProtoReflect().Descriptor().FullName()), Data: w.Event, Position: es.Position{Seq: seq}})
			}
			tokens, err := api.LoadOrCreateTokens(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			a, err := api.New(api.Config{Tokens: tokens}, api.DashboardServices(m, standing(seq), nil)...)
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := api.NewServer(a.Handler())
			go srv.Serve(ln)
			defer srv.Close()
			tok, err := tokens.Issue(auth.Principal{Subject: "ops", Role: auth.Admin}, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			c := dashboardv1connect.NewDashboardServiceClient(h2c, "http://"+ln.Addr().String())
			lat := make([]time.Duration, 0, b.N)
			var size int
			for b.Loop() {
				start := time.Now()
				res, err := c.GetDashboard(context.Background(), withToken(&dashboardv1.GetDashboardRequest{}, tok))
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				size = proto.Size(res.Msg)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(size), "response-B")
		})
	}
}
