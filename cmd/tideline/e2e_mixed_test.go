package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/internal/poll"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// mixedClients are the public services a mixed load drives.
type mixedClients struct {
	steps     stepsv1connect.StepsServiceClient
	delivery  deliveryv1connect.DeliveryServiceClient
	safety    safetyv1connect.SafetyServiceClient
	dashboard dashboardv1connect.DashboardServiceClient
	admin     adminv1connect.AdminServiceClient
}

func newMixedClients(hc *http.Client, url, tok string) mixedClients {
	auth := connect.WithInterceptors(bearerAuth(tok))
	return mixedClients{
		steps:     stepsv1connect.NewStepsServiceClient(hc, url, auth),
		delivery:  deliveryv1connect.NewDeliveryServiceClient(hc, url, auth),
		safety:    safetyv1connect.NewSafetyServiceClient(hc, url, auth),
		dashboard: dashboardv1connect.NewDashboardServiceClient(hc, url, auth),
		admin:     adminv1connect.NewAdminServiceClient(hc, url, auth),
	}
}

// mixedAcks is what the server acknowledged during a mixed load.
type mixedAcks struct {
	mu      sync.Mutex
	orders  map[string]deliveryv1.OrderStatus // highest acked status
	rated   map[string]bool
	danger  map[string][]string // rider -> acked event ids
	steps   map[string]int32    // walker -> highest acked count
	maxPos  uint64
	count   int
	retries []func(mixedClients) error // writes cut off by the kill, to be retried
}

func (a *mixedAcks) ack(pos uint64, f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
	a.count++
	a.maxPos = max(a.maxPos, pos)
}

// mixedWorker drives one rider through order lifecycles, danger reports
// and step counts until stop is set; its first error ends it.
func mixedWorker(ctx context.Context, c mixedClients, id, cycle int, acks *mixedAcks, stop *atomic.Bool) {
	rider := fmt.Sprintf("rider-%02d", id)
	walker := fmt.Sprintf("walker-%02d", id)
	lat, lng := 37.49+float64(id)*0.002, 127.02+float64(id)*0.002
	for n := 0; !stop.Load(); n++ {
		order := fmt.Sprintf("o-%d-%02d-%d", cycle, id, n)
		steps := int32(cycle*100000 + n)
		ops := []struct {
			do   func(c mixedClients) (uint64, error)
			done func()
		}{
			{func(c mixedClients) (uint64, error) {
				r, err := c.delivery.PlaceOrder(ctx, connect.NewRequest(&deliveryv1.PlaceOrderRequest{OrderId: order, StoreId: "store-1",
					Pickup: &deliveryv1.LatLng{Lat: lat, Lng: lng}, Dropoff: &deliveryv1.LatLng{Lat: lat + 0.01, Lng: lng}, Amount: 12000}))
				return positionOf(r, err)
			}, func() { acks.orders[order] = deliveryv1.OrderStatus_ORDER_STATUS_PLACED }},
			{func(c mixedClients) (uint64, error) {
				r, err := c.delivery.AcceptOrder(ctx, connect.NewRequest(&deliveryv1.AcceptOrderRequest{OrderId: order, RiderId: rider}))
				return positionOf(r, err)
			}, func() { acks.orders[order] = deliveryv1.OrderStatus_ORDER_STATUS_ACCEPTED }},
			{func(c mixedClients) (uint64, error) {
				r, err := c.steps.RecordSteps(ctx, connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: walker, Date: todayUTC(), Steps: steps}))
				return positionOf(r, err)
			}, func() { acks.steps[walker] = max(acks.steps[walker], steps) }},
			{func(c mixedClients) (uint64, error) {
				r, err := c.delivery.PickUpOrder(ctx, connect.NewRequest(&deliveryv1.PickUpOrderRequest{OrderId: order, RiderId: rider}))
				return positionOf(r, err)
			}, func() { acks.orders[order] = deliveryv1.OrderStatus_ORDER_STATUS_PICKED_UP }},
			{func(c mixedClients) (uint64, error) {
				sev := safetyv1.Severity_SEVERITY_MEDIUM
				if n%3 == 0 {
					sev = safetyv1.Severity_SEVERITY_HIGH // raises an alert through the reaction
				}
				r, err := c.safety.ReportDanger(ctx, connect.NewRequest(&safetyv1.ReportDangerRequest{Event: &safetyv1.DangerDetected{
					EventId: order + "-d", RiderId: rider, DeviceId: "phone-" + rider,
					Kind: safetyv1.DangerKind_DANGER_KIND_HARD_BRAKE, Severity: sev, PeakAccelG: 1.2, PeakGyroDps: 40,
					Location: &safetyv1.Location{Lat: lat, Lng: lng}, DetectedAt: timestamppb.Now()}}))
				return positionOf(r, err)
			}, func() { acks.danger[rider] = append(acks.danger[rider], order+"-d") }},
			{func(c mixedClients) (uint64, error) {
				r, err := c.delivery.DeliverOrder(ctx, connect.NewRequest(&deliveryv1.DeliverOrderRequest{OrderId: order, RiderId: rider}))
				return positionOf(r, err)
			}, func() { acks.orders[order] = deliveryv1.OrderStatus_ORDER_STATUS_DELIVERED }},
			{func(c mixedClients) (uint64, error) {
				r, err := c.delivery.RateOrder(ctx, connect.NewRequest(&deliveryv1.RateOrderRequest{OrderId: order, Stars: int32(1 + n%5)}))
				return positionOf(r, err)
			}, func() { acks.rated[order] = true }},
		}
		for _, op := range ops {
			if stop.Load() {
				return
			}
			pos, err := op.do(c)
			if err != nil {
				if stop.Load() { // cut off by the kill: retried after the restart
					acks.mu.Lock()
					acks.retries = append(acks.retries, func(c mixedClients) error {
						pos, err := op.do(c)
						if err == nil {
							op.done()
							acks.maxPos = max(acks.maxPos, pos)
						}
						return err
					})
					acks.mu.Unlock()
				}
				return
			}
			acks.ack(pos, op.done)
		}
	}
}

func positionOf[T any](r *connect.Response[T], err error) (uint64, error) {
	if err != nil {
		return 0, err
	}
	return any(r.Msg).(interface{ GetPosition() uint64 }).GetPosition(), nil
}

// mixedView is every read model's answer, for comparing a live model
// with its rebuild.
type mixedView struct {
	msgs []proto.Message
}

func captureMixed(tb testing.TB, c mixedClients, riders, walkers []string, minPos uint64) mixedView {
	tb.Helper()
	ctx := context.Background()
	var v mixedView
	add := func(what string, m proto.Message, err error) {
		if err != nil {
			tb.Fatalf("capture %s at %d: %v", what, minPos, err)
		}
		v.msgs = append(v.msgs, m)
	}
	add(msgOf(c.steps.GetSteps(ctx, connect.NewRequest(&stepsv1.GetStepsRequest{UserIds: walkers, FromDate: todayUTC(), MinPosition: minPos}))))
	for _, r := range riders {
		add(msgOf(c.safety.ListDangerEvents(ctx, connect.NewRequest(&safetyv1.ListDangerEventsRequest{RiderId: r, Limit: 1000, MinPosition: minPos}))))
	}
	add(msgOf(c.safety.ListAlerts(ctx, connect.NewRequest(&safetyv1.ListAlertsRequest{Limit: 1000, MinPosition: minPos}))))
	add(msgOf(c.delivery.SearchNearbyOrders(ctx, connect.NewRequest(&deliveryv1.SearchNearbyOrdersRequest{Lat: 37.5, Lng: 127.03, RadiusM: 5000, Limit: 100, MinPosition: minPos}))))
	what, dash, err := msgOf(c.dashboard.GetDashboard(ctx, connect.NewRequest(&dashboardv1.GetDashboardRequest{MinPosition: minPos})))
	if err == nil {
		dash.(*dashboardv1.GetDashboardResponse).Dashboard.GeneratedAt = nil
	}
	add(what, dash, err)
	return v
}

// msgOf names a response's message type for messages about it.
func msgOf[T any](r *connect.Response[T], err error) (string, proto.Message, error) {
	var zero T
	what := fmt.Sprintf("%T", &zero)
	if err != nil {
		return what, nil, err
	}
	return what, any(r.Msg).(proto.Message), nil
}

func (v mixedView) diff(w mixedView) string {
	if len(v.msgs) != len(w.msgs) {
		return fmt.Sprintf("%d answers vs %d", len(v.msgs), len(w.msgs))
	}
	for i := range v.msgs {
		if !proto.Equal(v.msgs[i], w.msgs[i]) {
			return fmt.Sprintf("answer %d:\nlive:    %v\nrebuilt: %v", i, v.msgs[i], w.msgs[i])
		}
	}
	return ""
}

// settle waits until the stream stops growing (reactions such as alert
// raising append after the writes they react to) and every projection
// has applied it, and returns the stream's last position.
func settle(tb testing.TB, c mixedClients) uint64 {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last uint64
	var behind []string
	stable := 0
	for stable < 5 {
		if time.Now().After(deadline) {
			tb.Fatalf("stream or projections still moving after 30s (at %d; behind: %v)", last, behind)
		}
		l, err := c.admin.ListProjections(context.Background(), connect.NewRequest(&adminv1.ListProjectionsRequest{}))
		if err != nil {
			tb.Fatalf("list projections: %v", err)
		}
		caughtUp := true
		behind = behind[:0]
		for _, p := range l.Msg.Projections {
			caughtUp = caughtUp && p.Lag == 0
			if p.Lag > 0 {
				behind = append(behind, fmt.Sprintf("%s at %d (lag %d, %v %s)", p.Name, p.Position, p.Lag, p.State, p.Reason))
			}
		}
		if caughtUp && l.Msg.LastPosition == last {
			stable++
		} else {
			stable = 0
		}
		last = l.Msg.LastPosition
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	return last
}

// Kill -9 under a mixed load of every context: nothing acknowledged is
// lost, cut-off writes retry cleanly, and every read model equals its
// rebuild.
func TestE2EKill9MixedLoad(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary and SIGKILLs it under load")
	}
	const workers = 8
	bin := buildTideline(t)
	dir := t.TempDir()
	s := startServe(t, bin, dir)
	svcTok := tidelineToken(t, bin, dir, "loadgen", "service")
	adminTok := tidelineToken(t, bin, dir, "e2e", "admin")
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	acks := &mixedAcks{orders: map[string]deliveryv1.OrderStatus{}, rated: map[string]bool{}, danger: map[string][]string{}, steps: map[string]int32{}}
	var riders, walkers []string
	for i := range workers {
		riders = append(riders, fmt.Sprintf("rider-%02d", i))
		walkers = append(walkers, fmt.Sprintf("walker-%02d", i))
	}

	for cycle, killAfter := range []int{600, 1200} {
		svc := newMixedClients(hc, s.url, svcTok)
		var stop atomic.Bool
		var wg sync.WaitGroup
		start := acks.count
		for i := range workers {
			wg.Go(func() { mixedWorker(context.Background(), svc, i, cycle, acks, &stop) })
		}
		var n int
		if !poll.Within(60*time.Second, func() bool {
			acks.mu.Lock()
			defer acks.mu.Unlock()
			n = acks.count - start
			return n >= killAfter
		}) {
			t.Fatalf("cycle %d: %d of %d writes acknowledged within 60s\n%s", cycle, n, killAfter, s.logs)
		}
		stop.Store(true)
		s.kill(t)
		wg.Wait()

		s = startServe(t, bin, dir)
		svc = newMixedClients(hc, s.url, svcTok)
		admin := newMixedClients(hc, s.url, adminTok)
		for _, retry := range acks.retries {
			if err := retry(svc); err != nil {
				t.Fatalf("cycle %d: retry of a write cut off by the kill: %v", cycle, err)
			}
		}
		retried := len(acks.retries)
		acks.retries = nil
		last := settle(t, admin)
		if last < acks.maxPos {
			t.Fatalf("cycle %d: stream ends at %d, below the acked position %d", cycle, last, acks.maxPos)
		}

		// Nothing acknowledged is lost.
		lost := 0
		for order, status := range acks.orders {
			o, err := admin.delivery.GetOrder(context.Background(), connect.NewRequest(&deliveryv1.GetOrderRequest{OrderId: order, MinPosition: last}))
			if err != nil || o.Msg.Order.Status < status || (acks.rated[order] && o.Msg.Order.Stars == 0) {
				lost++
				t.Errorf("cycle %d: order %s acked as %v (rated %v), now %v, %v", cycle, order, status, acks.rated[order], o.Msg.GetOrder(), err)
			}
		}
		for _, rider := range riders {
			d, err := admin.safety.ListDangerEvents(context.Background(), connect.NewRequest(&safetyv1.ListDangerEventsRequest{RiderId: rider, Limit: 1000, MinPosition: last}))
			if err != nil {
				t.Fatal(err)
			}
			have := map[string]bool{}
			for _, e := range d.Msg.Events {
				have[e.EventId] = true
			}
			for _, id := range acks.danger[rider] {
				if !have[id] {
					lost++
					t.Errorf("cycle %d: danger event %s of %s acked but missing", cycle, id, rider)
				}
			}
		}
		st, err := admin.steps.GetSteps(context.Background(), connect.NewRequest(&stepsv1.GetStepsRequest{UserIds: walkers, FromDate: todayUTC(), MinPosition: last}))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int32{}
		for _, d := range st.Msg.Steps {
			got[d.UserId] = d.Steps
		}
		for w, n := range acks.steps {
			if got[w] < n {
				lost++
				t.Errorf("cycle %d: %s has %d steps, %d acked", cycle, w, got[w], n)
			}
		}

		// Every read model equals its rebuild.
		live := captureMixed(t, admin, riders, walkers, last)
		for _, name := range []string{"steps", "safety", "alerts", "dashboard", "delivery-nearby"} {
			if _, err := admin.admin.RebuildProjection(context.Background(), authed(&adminv1.RebuildProjectionRequest{Name: name}, adminTok)); err != nil {
				t.Fatalf("cycle %d: rebuild %s: %v", cycle, name, err)
			}
		}
		if d := captureMixed(t, admin, riders, walkers, last).diff(live); d != "" {
			t.Fatalf("cycle %d: a read model differs from its rebuild: %s", cycle, d)
		}
		t.Logf("cycle %d: %d writes acked in total (%d orders, stream at %d), %d cut off and retried, %d lost", cycle, acks.count, len(acks.orders), last, retried, lost)
		if t.Failed() {
			t.FailNow()
		}
	}
}
