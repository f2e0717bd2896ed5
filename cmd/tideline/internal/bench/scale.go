package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/procstatus"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/projections/projtest/city"
	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
	"github.com/tideline/tideline/wire"
)

// scaleConfig is `tideline bench --scale`: for each size, a store of
// that many events of a city's mix, served by a real `tideline serve`
// process started twice, without and with snapshots.
type scaleConfig struct {
	sizes     []int
	server    string        // the tideline binary that serves
	clients   int           // concurrent callers per query
	queryTime time.Duration // how long each query is called
	watchers  int           // WatchDashboard streams
	pushes    int           // changes each watcher is timed on
	keep      string        // keep each size's data dir in this dir; "" removes them
	serveArgs []string      // more flags for the served binary
	progress  io.Writer
}

// latency is a query's or a push's figures.
type latency struct {
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Rate  float64 `json:"per_s,omitempty"`
	Count int     `json:"n"`
	// AnswerBytes is a query's mean answer size, its protobuf encoding:
	// a query whose answer grows with the data is not one of constant cost.
	AnswerBytes float64         `json:"answer_bytes,omitempty"`
	took        []time.Duration // the calls timed, for pooling rounds
}

// scaleRow is one size's line of the growth table; its JSON form is the
// --json output.
type scaleRow struct {
	Events        int     `json:"events"`
	Walkers       int     `json:"walkers"`
	Waiting       int     `json:"waiting_orders"`
	LoadPerS      float64 `json:"load_events_per_s"`
	StoreBytes    int64   `json:"store_bytes"`
	ColdStartS    float64 `json:"start_without_snapshots_s"`
	ColdRSS       int64   `json:"rss_after_replay_bytes"`
	SteadyRSS     int64   `json:"rss_after_queries_bytes"`
	PeakRSS       int64   `json:"peak_rss_bytes"`
	StopS         float64 `json:"stop_s"`
	SnapshotBytes int64   `json:"snapshot_bytes"`
	WarmStartS    float64 `json:"start_from_snapshots_s"`
	WarmRSS       int64   `json:"rss_from_snapshots_bytes"`
	// Queries are by queryKey: name/callers.
	Queries map[string]latency `json:"queries"`
	// VsFirst is, at every size after the first, each query's p50 over
	// the first size's, by queryKey, from rounds that alternate between
	// this size's server and the first size's (kept running for that),
	// so that both sides see the machine alike.
	VsFirst        map[string]float64 `json:"p50_vs_first,omitempty"`
	Push           latency            `json:"watcher_push"`
	WatchersPushed int                `json:"watchers"`
	Clients        int                `json:"clients"`
}

// scaleRounds is how many rounds of each query alternate between a size's
// server and the first size's, each c.queryTime/scaleRounds long on each
// side.
const scaleRounds = 3

// scaleQueries names the timed queries in the order they run.
var scaleQueries = []string{"dashboard", "leaderboard", "steps", "nearby"}

// scaleReactionMaxAge is the servers' --reaction-max-age: the loaded
// history counts as past for the reactions that notify.
const scaleReactionMaxAge = time.Second

// scaleDays is how many dates the walkers' counts spread over.
const scaleDays = 30

// scaleWaiting is how many orders wait for a rider when the servers
// start, at every size: beyond the n events of history, placed as the
// load ends (city.Waiting). The history's own orders are accepted 2
// minutes after they are placed, so it leaves about two waiting, and
// SearchNearbyOrders would time a search that finds nothing; with these
// it finds its 20 nearest among about 80 within 3 km.
const scaleWaiting = 1000

// scaleWalkers is how many walkers n events hold: as many as count once
// on each of the scaleDays dates, so that at every size a walker's
// GetSteps over a week answers 7 days. (With more walkers than that at
// small sizes, each would count on only some dates, and the larger sizes'
// ratios would measure their larger answers, not their larger history.)
func scaleWalkers(n int) int { return max(1, n/2/scaleDays) }

func (c *scaleConfig) logf(format string, args ...any) {
	fmt.Fprintf(c.progress, "bench: "+format+"\n", args...)
}

// parseServeArgs reads --serve-args: flags separated by spaces, none of
// those the bench sets itself.
func parseServeArgs(s string) ([]string, error) {
	args := strings.Fields(s)
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && slices.Contains([]string{"data", "listen", "log-level"}, name) {
			return nil, fmt.Errorf("--serve-args: %s is the bench's to set", a)
		}
	}
	return args, nil
}

// parseSizes reads --scale: sizes separated by commas, each a number of
// events with an optional k or M.
func parseSizes(s string) ([]int, error) {
	var sizes []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"):
			mult = 1000
		case strings.HasSuffix(f, "M"):
			mult = 1000_000
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSuffix(f, "k"), "M"))
		if err != nil || n*mult < 1000 {
			return nil, fmt.Errorf("bench: --scale: %q is not a number of events of at least 1000 (e.g. 10k,1M)", f)
		}
		sizes = append(sizes, n*mult)
	}
	return sizes, nil
}

// runScale measures every size in turn and prints the table (or a JSON
// line per size).
func (c *scaleConfig) run(ctx context.Context, stdout io.Writer, asJSON bool) error {
	var rows []scaleRow
	var first *warm // the first size's server, while later sizes are measured against it
	var firstDir string
	defer func() {
		if first != nil {
			first.srv.kill()
			c.finish(firstDir)
		}
	}()
	for i, n := range c.sizes {
		dir, err := os.MkdirTemp(c.keep, "tideline-scale-")
		if err != nil {
			return fmt.Errorf("bench: temp dir: %w", err)
		}
		row, srv, err := c.measure(ctx, dir, n, first)
		switch {
		case err == nil && i == 0 && len(c.sizes) > 1:
			first, firstDir = srv, dir // stopped after the last size
		case err == nil:
			err = srv.srv.stop()
			c.finish(dir)
		default:
			c.finish(dir)
		}
		if err != nil {
			return fmt.Errorf("bench: %d events: %w", n, err)
		}
		rows = append(rows, row)
		if asJSON {
			b, err := json.Marshal(row)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
				return err
			}
		}
	}
	if first != nil {
		if err := first.srv.stop(); err != nil {
			return fmt.Errorf("bench: %d events: %w", c.sizes[0], err)
		}
	}
	if !asJSON {
		printScale(stdout, rows)
	}
	return nil
}

// finish removes a size's data dir, or says where it is kept.
func (c *scaleConfig) finish(dir string) {
	if c.keep == "" {
		os.RemoveAll(dir)
		return
	}
	c.logf("kept the data dir %s ('tideline serve --data %s' serves it)", dir, dir)
}

// warm is a size's server started from its snapshots, with what its
// queries need.
type warm struct {
	srv     *served
	token   string
	walkers int
}

// measure loads n events into a store in dir, then serves it: first
// without snapshots (every read model replays the history), stopped
// cleanly as soon as it is ready (the stop writes the snapshots); then
// from the snapshots, timing the queries and the watchers' pushes. With
// first (the first size's server), each query alternates between the
// two servers. It returns the server started from snapshots, running:
// the caller stops it.
func (c *scaleConfig) measure(ctx context.Context, dir string, n int, first *warm) (scaleRow, *warm, error) {
	row, srv, err := c.measureServed(ctx, dir, n, first)
	if err != nil && srv != nil {
		srv.srv.kill()
		return row, nil, err
	}
	return row, srv, err
}

func (c *scaleConfig) measureServed(ctx context.Context, dir string, n int, first *warm) (scaleRow, *warm, error) {
	row := scaleRow{Events: n, Walkers: scaleWalkers(n), Waiting: scaleWaiting, Queries: map[string]latency{}, Clients: c.clients}
	began := time.Now()
	if err := c.load(ctx, dir, n, row.Walkers); err != nil {
		return row, nil, fmt.Errorf("load: %w", err)
	}
	row.LoadPerS = float64(n) / time.Since(began).Seconds()
	streams, err := streamBytes(dir)
	if err != nil {
		return row, nil, err
	}
	row.StoreBytes = streams[wire.EventsStream]
	c.logf("%d events: loaded at %.0f/s, %s on disk", n, row.LoadPerS, mb(row.StoreBytes))

	tokens, err := api.LoadOrCreateTokens(dir)
	if err != nil {
		return row, nil, err
	}
	token, err := tokens.Issue(auth.Principal{Subject: "bench", Role: auth.Admin}, 24*time.Hour)
	if err != nil {
		return row, nil, err
	}

	cold, took, err := c.serve(ctx, dir)
	if err != nil {
		return row, nil, fmt.Errorf("start without snapshots: %w", err)
	}
	defer cold.kill()
	row.ColdStartS, row.ColdRSS = took.Seconds(), cold.rss("VmRSS")
	c.logf("%d events: ready without snapshots after %.1f s, RSS %s", n, row.ColdStartS, mb(row.ColdRSS))
	stopped := time.Now()
	if err := cold.stop(); err != nil {
		return row, nil, err
	}
	row.StopS, row.PeakRSS = time.Since(stopped).Seconds(), cold.peak
	streams, err = streamBytes(dir)
	if err != nil {
		return row, nil, err
	}
	for name, b := range streams {
		if strings.HasPrefix(name, "OBJ_") {
			row.SnapshotBytes += b
		}
	}
	c.logf("%d events: stopped in %.1f s; snapshots %s; peak RSS %s", n, row.StopS, mb(row.SnapshotBytes), mb(row.PeakRSS))

	// The queries and the watchers are timed on the server started from
	// its snapshots: a server in its steady state, not one still writing
	// the first snapshots of what it replayed.
	srv, took, err := c.serve(ctx, dir)
	if err != nil {
		return row, nil, fmt.Errorf("start from snapshots: %w", err)
	}
	w := &warm{srv: srv, token: token, walkers: row.Walkers}
	row.WarmStartS, row.WarmRSS = took.Seconds(), srv.rss("VmRSS")
	c.logf("%d events: ready from snapshots after %.1f s, RSS %s", n, row.WarmStartS, mb(row.WarmRSS))
	if first != nil {
		row.VsFirst = map[string]float64{}
	}
	for _, q := range scaleQueries {
		for _, clients := range []int{1, c.clients} {
			l, vs, err := c.timeQuery(ctx, w, first, q, clients)
			if err != nil {
				return row, w, fmt.Errorf("query %s: %w", q, err)
			}
			row.Queries[queryKey(q, clients)] = l
			if first != nil {
				row.VsFirst[queryKey(q, clients)] = vs
				c.logf("%d events: %s p50 %.2f ms (%.2fx the first size's in alternating rounds), p99 %.2f ms, %.0f/s at %d clients", n, q, l.P50, vs, l.P99, l.Rate, clients)
			} else {
				c.logf("%d events: %s p50 %.2f ms, p99 %.2f ms, %.0f/s at %d clients", n, q, l.P50, l.P99, l.Rate, clients)
			}
		}
	}
	if row.Push, err = c.push(ctx, srv.url, token); err != nil {
		return row, w, fmt.Errorf("watchers: %w", err)
	}
	row.WatchersPushed = c.watchers
	c.logf("%d events: a change reached %d watchers: p50 %.1f ms, p99 %.1f ms", n, c.watchers, row.Push.P50, row.Push.P99)
	row.SteadyRSS = srv.rss("VmRSS")
	row.PeakRSS = max(row.PeakRSS, srv.rss("VmHWM")) // as stop reads it: the caller stops the server
	return row, w, nil
}

// timeQuery times query name at clients callers on w for c.queryTime.
// With first, it alternates scaleRounds rounds between w and first
// (c.queryTime on each in all) and also returns w's p50 over first's in
// those rounds.
func (c *scaleConfig) timeQuery(ctx context.Context, w, first *warm, name string, clients int) (latency, float64, error) {
	if first == nil {
		l, err := c.query(ctx, w.srv.url, w.token, name, w.walkers, clients, c.queryTime)
		return l, 0, err
	}
	var mine, theirs []time.Duration
	var rate, answered float64
	each := c.queryTime / scaleRounds
	for round := range scaleRounds {
		sides := []*warm{w, first}
		if round%2 == 1 {
			sides[0], sides[1] = first, w
		}
		for _, s := range sides {
			l, err := c.query(ctx, s.srv.url, s.token, name, s.walkers, clients, each)
			if err != nil {
				return latency{}, 0, err
			}
			if s == w {
				mine = append(mine, l.took...)
				rate += l.Rate / scaleRounds
				answered += l.AnswerBytes * float64(len(l.took))
			} else {
				theirs = append(theirs, l.took...)
			}
		}
	}
	l, base := summarise(mine), summarise(theirs)
	l.Rate = rate
	if l.Count > 0 {
		l.AnswerBytes = answered / float64(l.Count)
	}
	if base.P50 == 0 {
		return l, 0, fmt.Errorf("no call timed on the first size's server")
	}
	return l, l.P50 / base.P50, nil
}

// load appends n commits of city.Mixed to a store in dir, then
// scaleWaiting orders placed now (city.Waiting), with no read model
// running, so that the first start replays them all.
func (c *scaleConfig) load(ctx context.Context, dir string, n, walkers int) error {
	ns, err := natsserver.Start(natsserver.Config{StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := natsserver.Connect(ns, "tideline-bench")
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := tljs.Open(ctx, nc, tljs.Config{})
	if err != nil {
		return err
	}
	now := time.Now()
	// The city's history ends two days ago (an order a minute, 5.4 events
	// a minute). Its commits are new to NATS all the same: the servers'
	// --reaction-max-age makes them past for the reactions (see serve).
	mix := city.Mix{Walkers: walkers, Days: scaleDays,
		DeliveryStart: now.Add(-48*time.Hour - time.Duration(n/2)*time.Minute*10/54)}
	if err := city.Append(ctx, store, city.Mixed(n, mix, now), 128, func(done int64) { c.logf("loaded %d of %d events", done, n) }); err != nil {
		return err
	}
	return city.Append(ctx, store, city.Waiting(scaleWaiting, now), 128, nil)
}

// served is a `tideline serve` process.
type served struct {
	cmd  *exec.Cmd
	url  string
	log  *bytes.Buffer
	peak int64 // VmHWM, read as it stops
	done chan error
}

// serve starts `tideline serve` on dir and returns once /readyz says it
// is ready (every read model caught up), with the time that took.
func (c *scaleConfig) serve(ctx context.Context, dir string) (*served, time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &served{url: "http://" + addr, log: &bytes.Buffer{}, done: make(chan error, 1)}
	// The store was loaded a moment ago, but stands for months of a city:
	// as on a server that has run all along, its reactions have nothing
	// left to tell. Without the bound the alert reaction would raise an
	// alert for every danger of the history (165k at 10M events), beside
	// everything measured.
	args := []string{"serve", "--data", dir, "--listen", addr, "--log-level", "warn", "--reaction-max-age", scaleReactionMaxAge.String()}
	s.cmd = exec.CommandContext(ctx, c.server, append(args, c.serveArgs...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	began := time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, 0, err
	}
	go func() { s.done <- s.cmd.Wait() }()
	for {
		res, err := http.Get(s.url + api.ReadyzPath)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, time.Since(began), nil
			}
		}
		select {
		case err := <-s.done:
			return nil, 0, fmt.Errorf("tideline serve ended: %v\n%s", err, s.log)
		case <-time.After(50 * time.Millisecond): // each /readyz asks every read model's lag
		}
		if time.Since(began) > 30*time.Minute {
			s.kill()
			return nil, 0, fmt.Errorf("not ready after 30 minutes\n%s", s.log)
		}
	}
}

// rss returns a /proc/PID/status figure (VmRSS, VmHWM) in bytes, or 0.
func (s *served) rss(field string) int64 {
	v, _ := procstatus.Bytes(s.cmd.Process.Pid, field)
	return v
}

// stop stops the server as an operator would (SIGTERM: the read models
// write their snapshots) and waits for it.
func (s *served) stop() error {
	s.peak = s.rss("VmHWM")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-s.done:
		s.done <- err // for kill
		if err != nil {
			return fmt.Errorf("tideline serve: %v\n%s", err, s.log)
		}
		return nil
	case <-time.After(5 * time.Minute):
		s.kill()
		return fmt.Errorf("tideline serve still running 5 minutes after SIGTERM\n%s", s.log)
	}
}

// kill ends the process if it still runs.
func (s *served) kill() {
	select {
	case err := <-s.done:
		s.done <- err
	default:
		s.cmd.Process.Kill()
	}
}

// queryKey is a query's key in scaleRow.Queries: its name and callers.
func queryKey(name string, clients int) string { return fmt.Sprintf("%s/%d", name, clients) }

// query calls one query from clients callers for d.
func (c *scaleConfig) query(ctx context.Context, url, token, name string, walkers, clients int, d time.Duration) (latency, error) {
	hc := h2cClient()
	defer hc.CloseIdleConnections()
	dash := dashboardv1connect.NewDashboardServiceClient(hc, url)
	st := stepsv1connect.NewStepsServiceClient(hc, url)
	dl := deliveryv1connect.NewDeliveryServiceClient(hc, url)
	today := time.Now().UTC()
	// call makes the k-th call and returns its answer.
	call := func(k int) (proto.Message, error) {
		var answer proto.Message
		var err error
		switch user := fmt.Sprintf("walker-%d", k*7919%walkers); name {
		case "dashboard":
			answer, err = msg(dash.GetDashboard(ctx, authed(&dashboardv1.GetDashboardRequest{}, token)))
		case "leaderboard":
			answer, err = msg(st.GetLeaderboard(ctx, authed(&stepsv1.GetLeaderboardRequest{Date: today.Format(time.DateOnly), Limit: 10, UserId: user}, token)))
		case "steps":
			answer, err = msg(st.GetSteps(ctx, authed(&stepsv1.GetStepsRequest{UserIds: []string{user},
				FromDate: today.AddDate(0, 0, -6).Format(time.DateOnly), ToDate: today.Format(time.DateOnly)}, token)))
		case "nearby":
			answer, err = msg(dl.SearchNearbyOrders(ctx, authed(&deliveryv1.SearchNearbyOrdersRequest{Lat: 37.55, Lng: 126.99, RadiusM: 3000}, token)))
		}
		return answer, err
	}
	if _, err := call(0); err != nil { // the connection, and a clear error
		return latency{}, err
	}
	var mu sync.Mutex
	var all []time.Duration
	var answered int64 // bytes of the answers timed
	var first error
	var wg sync.WaitGroup
	began := time.Now()
	for w := range clients {
		wg.Go(func() {
			var mine []time.Duration
			var size int64
			for k := w; time.Since(began) < d; k += clients {
				t := time.Now()
				answer, err := call(k)
				took := time.Since(t) // without sizing the answer
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
				mine = append(mine, took)
				size += int64(proto.Size(answer))
			}
			mu.Lock()
			all = append(all, mine...)
			answered += size
			mu.Unlock()
		})
	}
	wg.Wait()
	if first != nil {
		return latency{}, first
	}
	l := summarise(all)
	l.took = all
	l.Rate = float64(len(all)) / time.Since(began).Seconds()
	if len(all) > 0 {
		l.AnswerBytes = float64(answered) / float64(len(all))
	}
	return l, nil
}

// msg returns a unary call's answer as a proto.Message.
func msg[T any, PT interface {
	*T
	proto.Message
}](res *connect.Response[T], err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	return PT(res.Msg), nil
}

// push opens c.watchers WatchDashboard streams and times, c.pushes
// times, how long after a PlaceOrder is acknowledged each watcher has
// the changed dashboard.
func (c *scaleConfig) push(ctx context.Context, url, token string) (latency, error) {
	if c.watchers == 0 || c.pushes == 0 {
		return latency{}, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hc := h2cClient()
	defer hc.CloseIdleConnections()
	dash := dashboardv1connect.NewDashboardServiceClient(hc, url)
	got := make(chan time.Time, c.watchers*4)
	errs := make(chan error, c.watchers)
	var opened sync.WaitGroup
	opened.Add(c.watchers)
	for range c.watchers {
		go func() {
			s, err := dash.WatchDashboard(ctx, authed(&dashboardv1.WatchDashboardRequest{}, token))
			if err != nil {
				errs <- err
				opened.Done()
				return
			}
			defer s.Close()
			first := true
			for s.Receive() {
				if first { // the dashboard as it is
					first = false
					opened.Done()
					continue
				}
				got <- time.Now()
			}
			if first {
				opened.Done()
			}
			if ctx.Err() == nil {
				errs <- cmp.Or(s.Err(), errors.New("the watch ended"))
			}
		}()
	}
	opened.Wait()
	select {
	case err := <-errs:
		return latency{}, err
	default:
	}
	dl := deliveryv1connect.NewDeliveryServiceClient(hc, url)
	var all []time.Duration
	for p := range c.pushes {
		sent := time.Now()
		if _, err := dl.PlaceOrder(ctx, authed(&deliveryv1.PlaceOrderRequest{OrderId: fmt.Sprintf("bench-%d-%d", sent.UnixNano(), p), StoreId: "bench",
			Pickup: &deliveryv1.LatLng{Lat: 37.55, Lng: 126.99}, Dropoff: &deliveryv1.LatLng{Lat: 37.56, Lng: 126.98}, Amount: 12000}, token)); err != nil {
			return latency{}, fmt.Errorf("place order: %w", err)
		}
		deadline := time.After(30 * time.Second)
		for range c.watchers {
			select {
			case at := <-got:
				all = append(all, at.Sub(sent))
			case err := <-errs:
				return latency{}, err
			case <-deadline:
				return latency{}, fmt.Errorf("push %d: not every watcher had the change after 30 s", p)
			}
		}
		time.Sleep(100 * time.Millisecond) // apart: bursts are coalesced, and one change is timed at a time
		for len(got) > 0 {                 // a second update of the same change (a figure that follows it)
			<-got
		}
	}
	return summarise(all), nil
}

// authed wraps msg in a request with the bearer token.
func authed[T any](msg *T, token string) *connect.Request[T] {
	r := connect.NewRequest(msg)
	r.Header().Set("Authorization", "Bearer "+token)
	return r
}

// summarise returns the p50 and p99 of ds in milliseconds.
func summarise(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))]) / float64(time.Millisecond)
	}
	return latency{P50: at(0.50), P99: at(0.99), Count: len(ds)}
}

// streamBytes returns the bytes on disk of every JetStream stream under
// dir, by stream name (EVENTS, OBJ_projections, ...).
func streamBytes(dir string) (map[string]int64, error) {
	out := map[string]int64{}
	err := filepath.WalkDir(filepath.Join(dir, "jetstream"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		parts := strings.Split(filepath.ToSlash(path), "/")
		for i := len(parts) - 2; i > 0; i-- {
			if parts[i-1] == "streams" {
				info, err := d.Info()
				if err != nil {
					return err
				}
				out[parts[i]] += info.Size()
				break
			}
		}
		return nil
	})
	return out, err
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

// printScale prints the growth table: one column per size.
func printScale(w io.Writer, rows []scaleRow) {
	if len(rows) == 0 {
		return
	}
	line := func(name string, f func(r scaleRow) string) {
		fmt.Fprintf(w, "%-34s", name)
		for _, r := range rows {
			fmt.Fprintf(w, " %16s", f(r))
		}
		fmt.Fprintln(w)
	}
	line("events", func(r scaleRow) string { return strconv.Itoa(r.Events) })
	line("walkers (30 dates each)", func(r scaleRow) string { return strconv.Itoa(r.Walkers) })
	line("orders waiting (beyond the events)", func(r scaleRow) string { return strconv.Itoa(r.Waiting) })
	line("load, events/s", func(r scaleRow) string { return fmt.Sprintf("%.0f", r.LoadPerS) })
	line("events stream on disk", func(r scaleRow) string { return mb(r.StoreBytes) })
	line("start without snapshots, s", func(r scaleRow) string { return fmt.Sprintf("%.1f", r.ColdStartS) })
	line("RSS after the replay", func(r scaleRow) string { return mb(r.ColdRSS) })
	line("stop (final snapshots), s", func(r scaleRow) string { return fmt.Sprintf("%.1f", r.StopS) })
	line("snapshots on disk", func(r scaleRow) string { return mb(r.SnapshotBytes) })
	line("start from snapshots, s", func(r scaleRow) string { return fmt.Sprintf("%.1f", r.WarmStartS) })
	line("RSS from snapshots", func(r scaleRow) string { return mb(r.WarmRSS) })
	line("RSS after the queries", func(r scaleRow) string { return mb(r.SteadyRSS) })
	line("peak RSS (both starts)", func(r scaleRow) string { return mb(r.PeakRSS) })
	clients := slices.Sorted(func(yield func(int) bool) { yield(1); yield(rows[0].Clients) })
	for _, q := range scaleQueries {
		for _, n := range clients {
			k := queryKey(q, n)
			line(fmt.Sprintf("%s p50 / p99, ms, %d callers", q, n), func(r scaleRow) string {
				return fmt.Sprintf("%.2f / %.2f", r.Queries[k].P50, r.Queries[k].P99)
			})
		}
	}
	for _, q := range scaleQueries {
		k := queryKey(q, 1)
		line(fmt.Sprintf("%s answer, mean bytes", q), func(r scaleRow) string { return fmt.Sprintf("%.0f", r.Queries[k].AnswerBytes) })
	}
	line("watcher push p50 / p99, ms", func(r scaleRow) string { return fmt.Sprintf("%.1f / %.1f", r.Push.P50, r.Push.P99) })
	if base := rows[0]; len(rows) > 1 {
		fmt.Fprintf(w, "\nquery p50 against %d events (rounds alternating with its server):\n", base.Events)
		for _, q := range scaleQueries {
			for _, n := range clients {
				k := queryKey(q, n)
				line(fmt.Sprintf("%s, %d callers", q, n), func(r scaleRow) string {
					if r.VsFirst == nil {
						return "1.00x"
					}
					return fmt.Sprintf("%.2fx", r.VsFirst[k])
				})
			}
		}
	}
}
