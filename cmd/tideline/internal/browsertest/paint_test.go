package browsertest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"

	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
)

// TestDashboardFirstPaint measures the time from a page load to the
// dashboard's first paint with figures, against a server holding
// $TIDELINE_PAINT_ORDERS delivered orders and, in the same run, against
// one holding 100 (the baseline). It is a measurement, not a check: it
// runs only when the variable is set, e.g.
//
//	TIDELINE_PAINT_ORDERS=100000 go test -run TestDashboardFirstPaint -v -timeout 30m ./cmd/tideline/internal/browsertest/
func TestDashboardFirstPaint(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TIDELINE_PAINT_ORDERS"))
	if n <= 0 {
		t.Skip("a measurement: set TIDELINE_PAINT_ORDERS=100000 to run it")
	}
	path := chromium(t)
	ctx := browser(t, path, 25*time.Minute)
	base := paint(t, ctx, 100)
	big := paint(t, ctx, n)
	t.Logf("first dashboard paint: p50 %.0f ms with %d orders, %.0f ms with 100 (ratio %.2f)", big, n, base, big/base)
}

// paint loads a server with n orders and returns the median of 7 page
// loads' time to the dashboard's first paint (performance mark
// tideline:dashboard), in ms.
func paint(t *testing.T, ctx context.Context, n int) float64 {
	s := servertest.Start(t)
	load(t, s, n)
	tok := s.Token(t, "root", auth.Admin)
	if err := chromedp.Do(ctx, chromedp.Navigate(s.URL+"/console/")); err != nil {
		t.Fatal(err)
	}
	set := fmt.Sprintf(`sessionStorage.setItem("tideline.session", JSON.stringify({access: %q, accessExpires: Date.now() + 3600e3, refresh: "", userId: "root", role: "admin"})); true`, tok)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](set)); err != nil {
		t.Fatal(err)
	}
	var ms []float64
	for i := range 7 {
		err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/console/?load=%d#/dashboard", s.URL, i)),
			until("the dashboard painted", `performance.getEntriesByName('tideline:dashboard').length > 0`))
		if err != nil {
			t.Fatal(err)
		}
		v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.getEntriesByName('tideline:dashboard')[0].startTime`))
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, v)
	}
	slices.Sort(ms)
	t.Logf("%d orders: first paint %v ms", n, ms)
	return ms[len(ms)/2]
}

// load places, accepts, delivers and rates n orders through the API
// (32 at a time; 500 riders, each with one order at a time).
func load(t *testing.T, s *servertest.Server, n int) {
	t.Helper()
	client := deliveryv1connect.NewDeliveryServiceClient(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}, s.URL)
	shop := s.Token(t, "shop", auth.Service)
	const riders = 500
	toks := make([]string, riders)
	for i := range toks {
		toks[i] = s.Token(t, fmt.Sprintf("rider-%03d", i), auth.Rider)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	start := time.Now()
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				rider := i % riders
				if err := lifecycle(client, shop, toks[rider], fmt.Sprintf("rider-%03d", rider), fmt.Sprintf("o%d", i), rng); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d orders in %s", n, time.Since(start).Round(time.Second))
}

func lifecycle(c deliveryv1connect.DeliveryServiceClient, shop, rtok, rider, id string, rng *rand.Rand) error {
	ctx := context.Background()
	lat, lng := 37.45+0.2*rng.Float64(), 126.85+0.3*rng.Float64()
	if _, err := c.PlaceOrder(ctx, bearer(&deliveryv1.PlaceOrderRequest{OrderId: id, StoreId: "store-1", Amount: 9000 + rng.Int64N(30000),
		Pickup: &deliveryv1.LatLng{Lat: lat, Lng: lng}, Dropoff: &deliveryv1.LatLng{Lat: lat + 0.01, Lng: lng + 0.01}}, shop)); err != nil {
		return fmt.Errorf("place %s: %w", id, err)
	}
	for _, call := range []func() error{
		func() error {
			_, err := c.AcceptOrder(ctx, bearer(&deliveryv1.AcceptOrderRequest{OrderId: id, RiderId: rider}, rtok))
			return err
		},
		func() error {
			_, err := c.PickUpOrder(ctx, bearer(&deliveryv1.PickUpOrderRequest{OrderId: id, RiderId: rider}, rtok))
			return err
		},
		func() error {
			_, err := c.DeliverOrder(ctx, bearer(&deliveryv1.DeliverOrderRequest{OrderId: id, RiderId: rider}, rtok))
			return err
		},
		func() error {
			_, err := c.RateOrder(ctx, bearer(&deliveryv1.RateOrderRequest{OrderId: id, Stars: 3 + rng.Int32N(3)}, shop))
			return err
		},
	} {
		if err := call(); err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
			return fmt.Errorf("order %s: %w", id, err)
		}
	}
	return nil
}
