// Package demo is `tideline demo`: a realistic day of riders, orders,
// steps and danger reports driven through the public API.
package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// demoConfig is what `tideline demo` takes.
type demoConfig struct {
	server string // API URL; empty starts an embedded server
	data   string // the server's data dir, whose key mints the demo's tokens
	riders int
	orders int
	// speed is simulated seconds per real second; a day of 144 ten-minute
	// ticks takes 86400/speed seconds, or as long as the calls take.
	speed float64
	seed  uint64
	hold  bool // keep the embedded server running after the day
	// labeling runs the data-labeling scenario instead of the day, with
	// pages and labelers.
	labeling        bool
	pages, labelers int
	out             io.Writer
	log             *slog.Logger // the embedded server's logger
}

// demoSummary is what a demo day produced, as the API reported it.
type demoSummary struct {
	Placed, Accepted, Delivered, Cancelled, Rated, Dangers int
	Stars                                                  int
	Top                                                    []*stepsv1.LeaderboardEntry
	Alerts                                                 []*safetyv1.Alert
	OpenAlerts                                             int
	Dashboard                                              *dashboardv1.Dashboard
}

// Run runs `tideline demo` with args (its flags), printing the day to
// stdout and the embedded server's log to stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: tideline demo [--server URL --data DIR] [--riders N] [--orders N] [--speed X]
       tideline demo --labeling [--server URL --data DIR] [--pages N] [--labelers N]

Drives a realistic day through the public API so every read model fills up:
riders moving around Seoul, orders placed with hourly and zone patterns,
accepted, picked up, delivered and rated, steps and the live step ranking,
a few danger reports and the alerts they raise. Without --server it starts
an embedded server in a temporary directory and prints its URL and an
admin token, so you can query it while the demo runs (--hold keeps it up).

With --labeling it runs data labeling instead, from upload to raffle: an
enterprise uploads pages of shop signs, an admin approves them, tesseract
cuts them into line tasks, labelers do their wake-up missions (one of them
sloppy), the verification batch accepts and rejects their labels, they
earn points, spend them on a raffle drawn verifiably, and the enterprise
exports the verified labels. It needs tesseract (Debian tesseract-ocr).`)
		fs.PrintDefaults()
	}
	c := demoConfig{out: stdout}
	fs.StringVar(&c.server, "server", "", "URL of a running server (default: start an embedded one)")
	fs.StringVar(&c.data, "data", "", "data directory of the --server, whose key signs the demo's tokens")
	fs.IntVar(&c.riders, "riders", 30, "riders")
	fs.IntVar(&c.orders, "orders", 600, "orders over the day")
	fs.Float64Var(&c.speed, "speed", 1440, "simulated seconds per real second (1440: the day in a minute)")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed")
	fs.BoolVar(&c.hold, "hold", false, "keep the embedded server running after the day, until interrupted")
	fs.BoolVar(&c.labeling, "labeling", false, "run the data-labeling scenario (dataset → tasks → missions → verification → points → raffle) instead of the day")
	fs.IntVar(&c.pages, "pages", 12, "--labeling: pages of three lines each the enterprise uploads")
	fs.IntVar(&c.labelers, "labelers", 5, "--labeling: labelers")
	level := fs.String("log-level", "warn", "log level of the embedded server (alerts are logged at warn)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.server != "" && c.data == "" {
		return errors.New("demo: --server needs --data (the server's data dir, to mint tokens)")
	}
	if c.labeling && (c.pages < 1 || c.pages > 1000 || c.labelers < 3) {
		return errors.New("demo: --pages must be 1..1000 and --labelers at least 3 (three labels an item)")
	}
	if c.riders < 1 || c.orders < 0 || c.speed <= 0 {
		return errors.New("demo: --riders and --speed must be positive, --orders not negative")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	c.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if c.labeling {
		_, err := runLabeling(ctx, c)
		return err
	}
	_, err := runDemo(ctx, c)
	return err
}

// zone is a Seoul neighbourhood where orders start, with its share.
type zone struct {
	name     string
	lat, lng float64
	weight   float64
}

var seoulZones = []zone{
	{"Gangnam", 37.4979, 127.0276, 3},
	{"Hongdae", 37.5563, 126.9220, 2.5},
	{"Jamsil", 37.5133, 127.1001, 2},
	{"Seongsu", 37.5445, 127.0557, 1.5},
	{"Yeouido", 37.5219, 126.9245, 1.5},
	{"Jongno", 37.5704, 126.9920, 1.5},
	{"Itaewon", 37.5345, 126.9946, 1},
	{"Mokdong", 37.5270, 126.8750, 0.8},
}

// hourlyDemand is the share of a day's orders per hour (KST): quiet
// nights, a lunch peak and a bigger dinner peak.
var hourlyDemand = [24]float64{0.6, 0.4, 0.25, 0.15, 0.1, 0.15, 0.4, 0.8, 1.2, 1.3, 2, 4, 5, 3, 1.8, 1.6, 2, 3.5, 5, 4.8, 3.2, 2.2, 1.6, 1}

const ticksPerHour = 6 // one tick is ten simulated minutes

type riderState struct {
	id       string
	lat, lng float64
	order    string // held order, "" when idle
	picked   bool
	wait     int // ticks until the next leg ends
	steps    int32
	stars    float64 // how customers tend to rate this rider
	pos      uint64
	rng      *rand.Rand // the rider's own: riders act concurrently
}

type demoOrder struct {
	id         string
	placedTick int
	dlat, dlng float64
	plat, plng float64
	accepted   bool
}

// demo is one run's clients and state.
type demo struct {
	c        demoConfig
	rng      *rand.Rand
	delivery deliveryv1connect.DeliveryServiceClient
	steps    stepsv1connect.StepsServiceClient
	safety   safetyv1connect.SafetyServiceClient
	dash     dashboardv1connect.DashboardServiceClient
	tokens   *api.Tokens
	admin    string
	shop     string
	riders   []*riderState
	rtok     map[string]string
	orders   map[string]*demoOrder
	open     []string // placed, not yet accepted or cancelled
	runID    string
	date     string
	sum      demoSummary
	lastPos  uint64
	seq      int
	severe   bool // a HIGH or CRITICAL danger was reported
}

type tokenKey struct{}

func withBearer(ctx context.Context, tok string) context.Context {
	return context.WithValue(ctx, tokenKey{}, tok)
}

// bearer sets the Authorization header from the context's token, on
// unary calls and on streams.
var bearer connect.Interceptor = bearerInterceptor{}

type bearerInterceptor struct{}

func (bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if tok, ok := ctx.Value(tokenKey{}).(string); ok {
			req.Header().Set("Authorization", "Bearer "+tok)
		}
		return next(ctx, req)
	}
}

func (bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if tok, ok := ctx.Value(tokenKey{}).(string); ok {
			conn.RequestHeader().Set("Authorization", "Bearer "+tok)
		}
		return conn
	}
}

func (bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func runDemo(ctx context.Context, c demoConfig) (*demoSummary, error) {
	start := time.Now()
	if c.out == nil {
		c.out = io.Discard
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.server == "" {
		stop, err := c.embedded(ctx, nil, "")
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	c.server = strings.TrimSuffix(c.server, "/")
	tokens, err := api.LoadTokens(c.data)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d := &demo{c: c, rng: rand.New(rand.NewPCG(c.seed, c.seed^0x5eed)), tokens: tokens,
		rtok: map[string]string{}, orders: map[string]*demoOrder{},
		runID: strconv.FormatInt(time.Now().UnixMilli()%1e9, 36), date: time.Now().UTC().Format("2006-01-02")}
	if d.admin, err = d.issue("demo-admin", auth.Admin); err != nil {
		return nil, err
	}
	if d.shop, err = d.issue("demo-shop", auth.Service); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.out, "Admin token (24 h):\n  %s\nTry, while it runs:\n  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' -d '{}' %s/tideline.safety.v1.SafetyService/ListAlerts\n",
		d.admin, c.server)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	opts := connect.WithInterceptors(bearer)
	d.delivery = deliveryv1connect.NewDeliveryServiceClient(hc, c.server, opts)
	d.steps = stepsv1connect.NewStepsServiceClient(hc, c.server, opts)
	d.safety = safetyv1connect.NewSafetyServiceClient(hc, c.server, opts)
	d.dash = dashboardv1connect.NewDashboardServiceClient(hc, c.server, opts)
	for i := range c.riders {
		z := d.pickZone()
		r := &riderState{id: fmt.Sprintf("rider-%02d", i+1), stars: 3.6 + 1.4*d.rng.Float64(), rng: rand.New(rand.NewPCG(c.seed, uint64(i)))}
		r.lat, r.lng = jitter(d.rng, z.lat, z.lng, 1500)
		if d.rtok[r.id], err = d.issue(r.id, auth.Rider); err != nil {
			return nil, err
		}
		d.riders = append(d.riders, r)
	}
	fmt.Fprintf(c.out, "Driving a day: %d riders, %d orders, speed ×%g\n", c.riders, c.orders, c.speed)

	perHour := spread(c.orders, hourlyDemand[:])
	tick := time.Duration(float64(10*time.Minute) / c.speed)
	next := time.Now()
	for t := 0; t < 24*ticksPerHour; t++ {
		h := t / ticksPerHour
		n := perHour[h] / ticksPerHour
		if t%ticksPerHour < perHour[h]%ticksPerHour {
			n++
		}
		if err := d.tick(ctx, t, n); err != nil {
			return nil, err
		}
		if (t+1)%ticksPerHour == 0 && (h+1)%3 == 0 {
			d.progress(ctx, h+1)
		}
		next = next.Add(tick)
		if wait := time.Until(next); wait > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		}
	}
	// After midnight no new orders: riders finish what they hold.
	for t := 24 * ticksPerHour; t < 26*ticksPerHour && d.busy() > 0; t++ {
		if err := d.tick(ctx, t, 0); err != nil {
			return nil, err
		}
	}
	if err := d.finish(ctx); err != nil {
		return nil, err
	}
	d.report(time.Since(start))
	if c.hold {
		fmt.Fprintf(c.out, "Server still running at %s; Ctrl-C to stop.\n", c.server)
		<-ctx.Done()
	}
	return &d.sum, nil
}

// embedded starts a server in a temporary directory (tune adjusts its
// configuration) and points c at it; stop closes it and removes the
// directory.
func (c *demoConfig) embedded(ctx context.Context, tune func(*server.Config), note string) (stop func(), err error) {
	dir, err := os.MkdirTemp("", "tideline-demo-")
	if err != nil {
		return nil, fmt.Errorf("demo: temp dir: %w", err)
	}
	cfg := server.Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: c.log}
	if tune != nil {
		tune(&cfg)
	}
	m := &server.Main{Config: cfg}
	if err := m.Run(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("demo: start embedded server: %w", err)
	}
	c.server, c.data = "http://"+m.Addr(), dir
	fmt.Fprintf(c.out, "Embedded server at %s (data %s, removed on exit%s)\n", c.server, dir, note)
	return func() { m.Close(); os.RemoveAll(dir) }, nil
}

func (d *demo) issue(sub string, role auth.Role) (string, error) {
	tok, err := d.tokens.Issue(auth.Principal{Subject: sub, Role: role}, 24*time.Hour)
	if err != nil {
		return "", fmt.Errorf("demo: token for %s: %w", sub, err)
	}
	return tok, nil
}

// spread splits total into len(weights) whole parts proportional to them.
func spread(total int, weights []float64) []int {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	out := make([]int, len(weights))
	acc, given := 0.0, 0
	for i, w := range weights {
		acc += float64(total) * w / sum
		out[i] = int(math.Round(acc)) - given
		given += out[i]
	}
	return out
}

func (d *demo) pickZone() zone {
	var sum float64
	for _, z := range seoulZones {
		sum += z.weight
	}
	x := d.rng.Float64() * sum
	for _, z := range seoulZones {
		if x -= z.weight; x < 0 {
			return z
		}
	}
	return seoulZones[0]
}

// jitter returns a point up to r metres from lat, lng.
func jitter(rng *rand.Rand, lat, lng, r float64) (float64, float64) {
	dist, bearing := r*math.Sqrt(rng.Float64()), 2*math.Pi*rng.Float64()
	dlat := dist * math.Cos(bearing) / 111320
	dlng := dist * math.Sin(bearing) / (111320 * math.Cos(lat*math.Pi/180))
	return lat + dlat, lng + dlng
}

func (d *demo) busy() int {
	n := 0
	for _, r := range d.riders {
		if r.order != "" {
			n++
		}
	}
	return n
}

// parallel runs f for 0..n-1 on up to 16 goroutines and returns the
// first error.
func parallel(n int, f func(i int) error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func (d *demo) seen(pos uint64) {
	if pos > d.lastPos {
		d.lastPos = pos
	}
}

// tick plays ten simulated minutes: n new orders, riders' moves, steps
// and the odd danger.
func (d *demo) tick(ctx context.Context, t, n int) error {
	shop := withBearer(ctx, d.shop)
	// New orders, placed by the shop system.
	placed := make([]*demoOrder, n)
	for i := range placed {
		z := d.pickZone()
		d.seq++
		o := &demoOrder{id: fmt.Sprintf("demo-%s-%d", d.runID, d.seq), placedTick: t}
		o.plat, o.plng = jitter(d.rng, z.lat, z.lng, 1200)
		o.dlat, o.dlng = jitter(d.rng, o.plat, o.plng, 2500)
		placed[i] = o
	}
	positions := make([]uint64, n)
	if err := parallel(n, func(i int) error {
		o := placed[i]
		res, err := d.delivery.PlaceOrder(shop, connect.NewRequest(&deliveryv1.PlaceOrderRequest{
			OrderId: o.id, StoreId: fmt.Sprintf("store-%d", d.seq%40), Amount: 9000 + int64(i*1700%30000),
			Pickup: &deliveryv1.LatLng{Lat: o.plat, Lng: o.plng}, Dropoff: &deliveryv1.LatLng{Lat: o.dlat, Lng: o.dlng}}))
		if err != nil {
			return fmt.Errorf("demo: place order: %w", err)
		}
		positions[i] = res.Msg.Position
		return nil
	}); err != nil {
		return err
	}
	for i, o := range placed {
		d.orders[o.id] = o
		d.open = append(d.open, o.id)
		d.seen(positions[i])
	}
	d.sum.Placed += n

	// Orders nobody took within an hour are cancelled.
	var stale []string
	d.open = slices.DeleteFunc(d.open, func(id string) bool {
		o := d.orders[id]
		if o.accepted {
			return true
		}
		if t-o.placedTick >= ticksPerHour {
			stale = append(stale, id)
			return true
		}
		return false
	})
	if err := parallel(len(stale), func(i int) error {
		_, err := d.delivery.CancelOrder(shop, connect.NewRequest(&deliveryv1.CancelOrderRequest{OrderId: stale[i], Reason: "no rider available"}))
		if err != nil {
			return fmt.Errorf("demo: cancel order: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}
	d.sum.Cancelled += len(stale)

	// Riders: idle ones look for nearby orders; busy ones move on.
	type plan struct {
		danger *safetyv1.DangerDetected
		rate   int32
	}
	plans := make([]plan, len(d.riders))
	for i, r := range d.riders {
		if d.rng.Float64() < 0.006 || (i == 0 && t == 12*ticksPerHour+3) || (i == 1 && t >= 18*ticksPerHour && t < 18*ticksPerHour+3) {
			plans[i].danger = d.danger(r, i == 0 && t == 12*ticksPerHour+3, i == 1)
		}
		if r.order != "" && r.picked && r.wait <= 1 && d.rng.Float64() < 0.85 {
			plans[i].rate = int32(math.Max(1, math.Min(5, math.Round(r.stars+d.rng.NormFloat64()*0.7))))
		}
	}
	var mu sync.Mutex // guards d.orders' accepted flags and counters below
	accepted, delivered, rated := 0, 0, 0
	err := parallel(len(d.riders), func(i int) error {
		r := d.riders[i]
		rctx := withBearer(ctx, d.rtok[r.id])
		if p := plans[i].danger; p != nil {
			res, err := d.safety.ReportDanger(rctx, connect.NewRequest(&safetyv1.ReportDangerRequest{Event: p}))
			if err != nil {
				return fmt.Errorf("demo: report danger: %w", err)
			}
			r.pos = max(r.pos, res.Msg.Position)
		}
		switch {
		case r.order == "":
			res, err := d.delivery.SearchNearbyOrders(rctx, connect.NewRequest(&deliveryv1.SearchNearbyOrdersRequest{
				Lat: r.lat, Lng: r.lng, RadiusM: 5000, Limit: 5,
				MinPosition: r.pos})) // read our own last delivery: not offered it again
			if err != nil {
				return fmt.Errorf("demo: search nearby orders: %w", err)
			}
			for _, o := range res.Msg.Orders {
				_, err := d.delivery.AcceptOrder(rctx, connect.NewRequest(&deliveryv1.AcceptOrderRequest{OrderId: o.OrderId, RiderId: r.id}))
				if connect.CodeOf(err) == connect.CodeFailedPrecondition || connect.CodeOf(err) == connect.CodeAborted {
					continue // another rider was faster, or it was cancelled
				}
				if err != nil {
					return fmt.Errorf("demo: accept order: %w", err)
				}
				mu.Lock()
				if do := d.orders[o.OrderId]; do != nil {
					do.accepted = true
				}
				accepted++
				mu.Unlock()
				r.order, r.picked, r.wait = o.OrderId, false, 1+int(o.DistanceM/1500)
				r.lat, r.lng = (r.lat+o.Pickup.Lat)/2, (r.lng+o.Pickup.Lng)/2
				break
			}
		case r.wait > 1:
			r.wait--
			r.steps += 40
		case !r.picked:
			if _, err := d.delivery.PickUpOrder(rctx, connect.NewRequest(&deliveryv1.PickUpOrderRequest{OrderId: r.order, RiderId: r.id})); err != nil {
				return fmt.Errorf("demo: pick up order: %w", err)
			}
			mu.Lock()
			o := d.orders[r.order]
			mu.Unlock()
			if o != nil {
				r.lat, r.lng = o.plat, o.plng
			}
			r.picked, r.wait = true, 1+r.rng.IntN(3)
			r.steps += 120 + int32(r.rng.IntN(200))
		default:
			res, err := d.delivery.DeliverOrder(rctx, connect.NewRequest(&deliveryv1.DeliverOrderRequest{OrderId: r.order, RiderId: r.id}))
			if err != nil {
				return fmt.Errorf("demo: deliver order: %w", err)
			}
			r.pos = max(r.pos, res.Msg.Position)
			mu.Lock()
			o := d.orders[r.order]
			delivered++
			mu.Unlock()
			if o != nil {
				r.lat, r.lng = o.dlat, o.dlng
			}
			if stars := plans[i].rate; stars > 0 {
				if _, err := d.delivery.RateOrder(withBearer(ctx, d.shop), connect.NewRequest(&deliveryv1.RateOrderRequest{OrderId: r.order, Stars: stars})); err != nil {
					return fmt.Errorf("demo: rate order: %w", err)
				}
				mu.Lock()
				rated++
				d.sum.Stars += int(stars)
				mu.Unlock()
			}
			r.order, r.steps = "", r.steps+200+int32(r.rng.IntN(400)) // up the stairs and back
		}
		r.steps += int32(20 + r.rng.IntN(60))
		if t%3 == 2 {
			res, err := d.steps.RecordSteps(withBearer(ctx, d.shop), connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: r.id, Date: d.date, Steps: r.steps}))
			if err != nil {
				return fmt.Errorf("demo: record steps: %w", err)
			}
			r.pos = max(r.pos, res.Msg.Position)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, r := range d.riders {
		d.seen(r.pos)
		if plans[i].danger != nil {
			d.sum.Dangers++
		}
	}
	d.sum.Accepted += accepted
	d.sum.Delivered += delivered
	d.sum.Rated += rated
	return nil
}

// danger makes a phone's danger report for r: mostly hard braking, now
// and then a tip-over or a crash.
func (d *demo) danger(r *riderState, crash, brake bool) *safetyv1.DangerDetected {
	d.seq++
	kind, sev, accel := safetyv1.DangerKind_DANGER_KIND_HARD_BRAKE, safetyv1.Severity_SEVERITY_LOW, 0.6+0.3*d.rng.Float64()
	switch x := d.rng.Float64(); {
	case crash || (!brake && x < 0.1):
		kind, sev, accel = safetyv1.DangerKind_DANGER_KIND_CRASH, safetyv1.Severity_SEVERITY_HIGH, 4+4*d.rng.Float64()
	case !brake && x < 0.3:
		kind, sev, accel = safetyv1.DangerKind_DANGER_KIND_TIPOVER, safetyv1.Severity_SEVERITY_MEDIUM, 1.5+d.rng.Float64()
	}
	if sev >= safetyv1.Severity_SEVERITY_HIGH {
		d.severe = true
	}
	lat, lng := jitter(d.rng, r.lat, r.lng, 30)
	return &safetyv1.DangerDetected{
		EventId:  fmt.Sprintf("phone-%s:%s-%s-%d", r.id, strings.ToLower(strings.TrimPrefix(kind.String(), "DANGER_KIND_")), d.runID, d.seq),
		DeviceId: "phone-" + r.id, RiderId: r.id, Kind: kind, Severity: sev,
		PeakAccelG: accel, PeakGyroDps: 60 + 300*d.rng.Float64(), DurationMs: int64(300 + d.rng.IntN(1500)),
		TiltDeg:    10 + 30*d.rng.Float64(),
		Location:   &safetyv1.Location{Lat: lat, Lng: lng, AccuracyM: 5 + 10*d.rng.Float64()},
		DetectedAt: timestamppb.Now(),
	}
}

// progress prints a line about the simulated hour h.
func (d *demo) progress(ctx context.Context, h int) {
	line := fmt.Sprintf("[%02d:00] orders %4d placed %4d delivered %3d cancelled · riders busy %2d/%d · dangers %2d",
		h, d.sum.Placed, d.sum.Delivered, d.sum.Cancelled, d.busy(), len(d.riders), d.sum.Dangers)
	actx := withBearer(ctx, d.admin)
	if res, err := d.safety.ListAlerts(actx, connect.NewRequest(&safetyv1.ListAlertsRequest{Limit: 1})); err == nil {
		line += fmt.Sprintf(" · alerts %d", res.Msg.Total)
	}
	if res, err := d.steps.GetLeaderboard(actx, connect.NewRequest(&stepsv1.GetLeaderboardRequest{Date: d.date, Limit: 1})); err == nil && len(res.Msg.Leaderboard.GetTop()) > 0 {
		top := res.Msg.Leaderboard.Top[0]
		line += fmt.Sprintf(" · most steps %s %d", top.UserId, top.Steps)
	}
	fmt.Fprintln(d.c.out, line)
}

// finish reads the read models once they have applied the day: the step
// ranking, the alerts (raised asynchronously by a reaction: polled until
// they settle), the dashboard.
func (d *demo) finish(ctx context.Context) error {
	actx := withBearer(ctx, d.admin)
	lb, err := d.steps.GetLeaderboard(actx, connect.NewRequest(&stepsv1.GetLeaderboardRequest{Date: d.date, Limit: 3, MinPosition: d.lastPos}))
	if err != nil {
		return fmt.Errorf("demo: leaderboard: %w", err)
	}
	d.sum.Top = lb.Msg.Leaderboard.GetTop()
	deadline := time.Now().Add(10 * time.Second)
	last, stable := -1, 0
	for {
		res, err := d.safety.ListAlerts(actx, connect.NewRequest(&safetyv1.ListAlertsRequest{Limit: 1000, MinPosition: d.lastPos}))
		if err != nil {
			return fmt.Errorf("demo: alerts: %w", err)
		}
		n := int(res.Msg.Total)
		d.sum.Alerts = res.Msg.Alerts
		if n == last && (n > 0 || !d.severe) {
			stable++
		} else {
			stable = 0
		}
		last = n
		if stable >= 3 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // poll interval; the loop has a deadline
		}
	}
	for _, a := range d.sum.Alerts {
		if a.Acknowledged == nil {
			d.sum.OpenAlerts++
		}
	}
	if res, err := d.dash.GetDashboard(actx, connect.NewRequest(&dashboardv1.GetDashboardRequest{MinPosition: d.lastPos})); err == nil {
		d.sum.Dashboard = res.Msg.Dashboard
	} else {
		fmt.Fprintf(d.c.out, "(dashboard unavailable: %v)\n", err)
	}
	return nil
}

func (d *demo) report(took time.Duration) {
	s := &d.sum
	w := d.c.out
	avg := 0.0
	if s.Rated > 0 {
		avg = float64(s.Stars) / float64(s.Rated)
	}
	fmt.Fprintf(w, "\nDay done in %s: %d orders placed, %d accepted, %d delivered, %d cancelled, %d rated (average %.1f stars); %d danger reports.\n",
		took.Round(time.Millisecond), s.Placed, s.Accepted, s.Delivered, s.Cancelled, s.Rated, avg, s.Dangers)
	fmt.Fprintf(w, "Step ranking %s:", d.date)
	for _, e := range s.Top {
		fmt.Fprintf(w, "  %d. %s %d", e.Rank, e.UserId, e.Steps)
	}
	fmt.Fprintf(w, "\nAlerts: %d raised, %d open\n", len(s.Alerts), s.OpenAlerts)
	for i, a := range s.Alerts {
		if i == 5 {
			fmt.Fprintf(w, "  ... and %d more\n", len(s.Alerts)-5)
			break
		}
		r := a.RaisedV2
		fmt.Fprintf(w, "  %s %s: %s (events: %d)\n", r.AlertId, r.RiderId, r.Reason, len(r.EventIds))
	}
	if db := s.Dashboard; db != nil {
		fmt.Fprintf(w, "Dashboard at position %d: %d zones, %d riders rated, board %d placed / %d accepted / %d picked up, %d delivered today\n",
			db.Position, len(db.Zones), db.RatedRiders, db.GetBoard().GetPlaced(), db.GetBoard().GetAccepted(), db.GetBoard().GetPickedUp(), db.GetBoard().GetDeliveredToday())
	}
}
