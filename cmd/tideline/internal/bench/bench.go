// Package bench is `tideline bench`: Tideline's figures against raw
// JetStream and bare connect-go, measured in one run on an embedded
// server.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/steps"
	stepsmodel "github.com/tideline/tideline/projections/steps"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/wire"
)

// figure is one measurement beside its baseline. Its JSON form is the
// --json output line.
type figure struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline"`
	Ratio    float64 `json:"ratio"`
	// RoundRatio is the median over the rounds of value/baseline within
	// each round: beside Ratio (best against best), a figure that a
	// single fast or slow round of either side does not decide.
	RoundRatio float64 `json:"round_ratio"`
	target     float64 // minimum ratio; 0 when the figure has none
}

type benchConfig struct {
	n          int // events per round of append; rebuild replays them all
	rpcN       int // requests per round of record_steps
	streamN    int // messages per round of stream_ingest
	writers    int // concurrent OCC writers in append
	aggregates int // aggregates per writer
	rpcConc    int // concurrent unary callers in record_steps
	streams    int // concurrent client streams in stream_ingest
	rounds     int // interleaved baseline and value rounds; the best of each counts
	only       map[string]bool
	progress   io.Writer
}

func (c *benchConfig) wants(name string) bool { return len(c.only) == 0 || c.only[name] }

// best runs baseline and value alternately c.rounds times and returns the
// best rate of each (load elsewhere on the machine then spoils a round
// rather than one side) and the median of the rounds' ratios.
func (c *benchConfig) best(name string, baseline, value func(round int) (float64, error)) (b, v, median float64, err error) {
	r, err := c.bestOf(name, baseline, value)
	if err != nil {
		return 0, 0, 0, err
	}
	return r.best[0], r.best[1], r.median(1, 0), nil
}

// rates are bestOf's rates: the best of each run, and each round's.
type rates struct {
	best   []float64
	rounds [][]float64 // by round, then run
}

// median returns the median over the rounds of run v's rate over run
// base's.
func (r rates) median(v, base int) float64 {
	ratios := make([]float64, len(r.rounds))
	for i, round := range r.rounds {
		ratios[i] = round[v] / round[base]
	}
	slices.Sort(ratios)
	if n := len(ratios); n%2 == 0 {
		return (ratios[n/2-1] + ratios[n/2]) / 2
	}
	return ratios[len(ratios)/2]
}

// bestOf runs each of runs in turn, c.rounds times, and returns the rates;
// runs[0] is the baseline the others are compared with in the progress
// lines. A round before them, not counted (round -1), warms both sides
// up: without it, the first round's baseline ran where only the figures
// before had run, and record_steps' was 5-38 % faster than in the rounds
// after it (8 full runs), where Tideline's rounds had run before; best
// against best took that round.
func (c *benchConfig) bestOf(name string, runs ...func(round int) (float64, error)) (rates, error) {
	out := rates{best: make([]float64, len(runs))}
	line := fmt.Sprintf("%s warm-up round (not counted):", name)
	for i, run := range runs {
		rate, err := run(-1)
		if err != nil {
			return rates{}, fmt.Errorf("%s warm-up run %d: %w", name, i, err)
		}
		line += fmt.Sprintf(" %.0f", rate)
	}
	c.logf("%s", line)
	for r := range c.rounds {
		line := fmt.Sprintf("%s round %d/%d:", name, r+1, c.rounds)
		round := make([]float64, len(runs))
		for i, run := range runs {
			rate, err := run(r)
			if err != nil {
				return rates{}, fmt.Errorf("%s run %d: %w", name, i, err)
			}
			round[i], out.best[i] = rate, max(out.best[i], rate)
			if i == 0 {
				line += fmt.Sprintf(" baseline %.0f", rate)
			} else {
				line += fmt.Sprintf(", %.0f (%.2f)", rate, rate/round[0])
			}
		}
		out.rounds = append(out.rounds, round)
		c.logf("%s", line)
	}
	return out, nil
}

// benchFigures names the figures in the order they run.
var benchFigures = []string{"append", "append_occ", "append_wire", "rebuild", "record_steps", "stream_ingest"}

// benchPayload is the size of every raw message and of every event.
const benchPayload = 256

// Run runs `tideline bench` with args (its flags), printing progress to
// stderr and the figures to stdout.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: tideline bench [--json] [--n N] [flags]

Measures Tideline against raw JetStream and bare connect-go, in one run, on
an embedded server in a temporary directory (removed afterwards):

  append         OCC appends through es.Store  vs  raw JetStream async publish
  append_occ     the same appends              vs  raw publish with the same OCC header
  append_wire    the same appends              vs  raw publish of Tideline's own message
                 (its envelope and headers, the same OCC header): no target; what
                 Tideline's code costs beyond the size of what it stores
  rebuild        steps projection rebuild       vs  raw ordered-consumer replay
  record_steps   RecordSteps on a real server   vs  the same RPC, trivial handler
  stream_ingest  StreamUserSteps on the server  vs  the same stream, trivial handler

After each round of record_steps and stream_ingest on the real server, the
bench waits (untimed) until every read model has applied what the round
wrote, so that the projections' work does not slow the next baseline round.

With --scale N[,N...] it measures growth instead: for each size, a store of
N events of a city's mix (half walkers' step counts over 30 dates, half
orders and danger reports), then 1,000 orders waiting for a rider, is
served by a real 'tideline serve' process,
started without snapshots, stopped and started again from its snapshots,
queried and watched. The table has a column per size: start times, RSS,
snapshot and store sizes, query p50/p99 at 1 and --clients callers, and
how soon a change reaches --watchers dashboard watchers. The first size's
server is kept running: each later size's queries alternate with it in 3
rounds, and the table's ratios against the first size come from those.

Progress goes to stderr; the table (or JSON lines) to stdout.`)
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print one JSON object per figure: name, value, unit, baseline, ratio")
	c := benchConfig{progress: stderr}
	fs.IntVar(&c.n, "n", 50000, "events per round of append (rebuild replays all rounds' events)")
	fs.IntVar(&c.rpcN, "rpc-n", 0, "requests per round of record_steps (default n/4)")
	fs.IntVar(&c.streamN, "stream-n", 0, "messages per round of stream_ingest, over all its streams (default n)")
	fs.IntVar(&c.writers, "concurrency", 256, "concurrent OCC writers in append; also the raw publish window")
	fs.IntVar(&c.aggregates, "aggregates", 4, "aggregates per append writer")
	total := fs.Int("total-aggregates", 0, "aggregates in all, spread over the append writers (sets --aggregates to this / --concurrency, rounded up)")
	fs.IntVar(&c.rpcConc, "rpc-concurrency", 64, "concurrent callers in record_steps")
	fs.IntVar(&c.streams, "streams", 16, "concurrent client streams in stream_ingest")
	fs.IntVar(&c.rounds, "rounds", 9, "rounds per figure, baseline and value alternately, after one warm-up round of both that is not counted; the best of each counts")
	only := fs.String("only", "", "comma-separated figures to run (default all)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (server included) to this file")
	scale := fs.String("scale", "", "measure growth at these sizes instead, events separated by commas, e.g. 10k,1M,10M")
	sc := scaleConfig{progress: stderr}
	fs.IntVar(&sc.clients, "clients", 32, "with --scale: concurrent callers of each query")
	fs.DurationVar(&sc.queryTime, "query-time", 3*time.Second, "with --scale: how long each query is called")
	fs.IntVar(&sc.watchers, "watchers", 100, "with --scale: WatchDashboard streams a change is timed to")
	fs.IntVar(&sc.pushes, "pushes", 20, "with --scale: changes timed")
	fs.StringVar(&sc.server, "server", "", "with --scale: the tideline binary to serve with (default: this one)")
	serveArgs := fs.String("serve-args", "", "with --scale: more flags for 'tideline serve', separated by spaces, e.g. '--memory-limit 2500MiB' (the bench sets --data, --listen and --log-level)")
	fs.StringVar(&sc.keep, "keep", "", "with --scale: keep each size's data dir (its store and snapshots) in this directory, for a look afterwards; default: removed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serveArgs != "" && *scale == "" {
		return errors.New("bench: --serve-args goes with --scale")
	}
	if *scale != "" {
		var err error
		if sc.sizes, err = parseSizes(*scale); err != nil {
			return err
		}
		if sc.serveArgs, err = parseServeArgs(*serveArgs); err != nil {
			return err
		}
		if sc.clients < 1 || sc.queryTime <= 0 || sc.watchers < 0 || sc.pushes < 0 {
			return errors.New("bench: --clients and --query-time must be positive, --watchers and --pushes not negative")
		}
		if sc.server == "" {
			if sc.server, err = os.Executable(); err != nil {
				return fmt.Errorf("bench: --server: %w", err)
			}
		}
		return sc.run(ctx, stdout, *asJSON)
	}
	if *only != "" {
		c.only = map[string]bool{}
		for _, name := range strings.Split(*only, ",") {
			if !slices.Contains(benchFigures, name) {
				return fmt.Errorf("bench: --only: unknown figure %q (want some of %s)", name, strings.Join(benchFigures, ","))
			}
			c.only[name] = true
		}
	}
	if c.rpcN == 0 {
		c.rpcN = max(c.n/4, 1)
	}
	if c.streamN == 0 {
		c.streamN = c.n
	}
	if *total < 0 {
		return errors.New("bench: --total-aggregates must not be negative")
	}
	if *total > 0 && c.writers > 0 {
		c.aggregates = (*total + c.writers - 1) / c.writers
	}
	if c.n < 1 || c.rpcN < 1 || c.streamN < 1 || c.writers < 1 || c.aggregates < 1 || c.rpcConc < 1 || c.streams < 1 || c.rounds < 1 {
		return errors.New("bench: --n, --rpc-n, --stream-n, --concurrency, --aggregates, --rpc-concurrency, --streams and --rounds must be positive")
	}
	dir, err := os.MkdirTemp("", "tideline-bench-")
	if err != nil {
		return fmt.Errorf("bench: temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var figs []figure
	emit := func(f figure) error {
		f.Ratio = f.Value / f.Baseline
		figs = append(figs, f)
		c.logf("%s: %.0f %s vs %.0f baseline: ratio %.2f (the rounds' median %.2f)", f.Name, f.Value, f.Unit, f.Baseline, f.Ratio, f.RoundRatio)
		if !*asJSON {
			return nil
		}
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	if err := c.storeFigures(ctx, filepath.Join(dir, "store"), emit); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := c.apiFigures(ctx, filepath.Join(dir, "api"), emit); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	c.logf("done in %s", time.Since(start).Round(100*time.Millisecond))
	if !*asJSON {
		printTable(stdout, figs)
	}
	return nil
}

// logger logs warnings and errors of the servers under test to the
// progress output.
func (c *benchConfig) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(c.progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func (c *benchConfig) logf(format string, args ...any) {
	fmt.Fprintf(c.progress, "bench: "+format+"\n", args...)
}

func printTable(w io.Writer, figs []figure) {
	const row = "%-14s %10s %-9s %10s %6s %7s %7s %s\n"
	fmt.Fprintf(w, row, "name", "value", "unit", "baseline", "ratio", "rounds", "target", "result")
	for _, f := range figs {
		target, result := "-", "-"
		if f.target > 0 {
			target, result = fmt.Sprintf("%.2f", f.target), "MISS"
			if f.Ratio >= f.target {
				result = "PASS"
			}
		}
		fmt.Fprintf(w, row, f.Name, fmt.Sprintf("%.0f", f.Value), f.Unit, fmt.Sprintf("%.0f", f.Baseline), fmt.Sprintf("%.2f", f.Ratio), fmt.Sprintf("%.2f", f.RoundRatio), target, result)
	}
}

// storeFigures measures append and rebuild. The raw baseline runs on an
// embedded server of its own, as EVENTS takes every ev.> subject; both
// servers are configured alike and their streams grow alike.
func (c *benchConfig) storeFigures(ctx context.Context, dir string, emit func(figure) error) error {
	appends := c.wants("append") || c.wants("append_occ") || c.wants("append_wire")
	if !appends && !c.wants("rebuild") {
		return nil
	}
	nc, blockDir, stop, err := startNATS(filepath.Join(dir, "events"))
	if err != nil {
		return err
	}
	defer stop()
	store, err := tljs.Open(ctx, nc, tljs.Config{BlockDir: blockDir})
	if err != nil {
		return err
	}
	tl := c.newOCCWriters(func(w, a int) string { return fmt.Sprintf("w%d-a%d", w, a) })
	if appends {
		rawNC, _, stopRaw, err := startNATS(filepath.Join(dir, "raw"))
		if err != nil {
			return err
		}
		defer stopRaw()
		raw, err := c.newRawPublisher(ctx, rawNC)
		if err != nil {
			return err
		}
		rawSeq, err := c.newRawOCC(ctx, rawNC, "BENCH_RAW_OCC", "ev.bench.occ", false)
		if err != nil {
			return err
		}
		rawWire, err := c.newRawOCC(ctx, rawNC, "BENCH_RAW_WIRE", "ev.bench.wire", true)
		if err != nil {
			return err
		}
		// Every aggregate exists before the rounds, so that they measure
		// updates of c.writers × c.aggregates subjects, not their creation.
		for _, p := range []*rawOCC{rawSeq, rawWire} {
			if _, err := p.publish(ctx, true); err != nil {
				return fmt.Errorf("append warm-up: %w", err)
			}
		}
		if _, err := c.occAppend(ctx, store, tl, true); err != nil {
			return fmt.Errorf("append warm-up: %w", err)
		}
		c.logf("append: raw JetStream async publish (window %d), raw async publish with Nats-Expected-Last-Subject-Sequence, the same with Tideline's message, and es.Store.Append with OCC (%d writers × %d aggregates = %d), %d × %d B per round",
			c.writers, c.writers, c.aggregates, c.writers*c.aggregates, c.n, benchPayload)
		r, err := c.bestOf("append",
			func(int) (float64, error) { return raw.publish(ctx) },
			func(int) (float64, error) { return rawSeq.publish(ctx, false) },
			func(int) (float64, error) { return rawWire.publish(ctx, false) },
			func(int) (float64, error) { return c.occAppend(ctx, store, tl, false) })
		if err != nil {
			return err
		}
		const tideline = 3 // r's index of es.Store.Append
		for _, f := range []figure{
			{Name: "append", Value: r.best[tideline], Baseline: r.best[0], RoundRatio: r.median(tideline, 0), target: 0.7},
			{Name: "append_occ", Value: r.best[tideline], Baseline: r.best[1], RoundRatio: r.median(tideline, 1), target: 0.9},
			{Name: "append_wire", Value: r.best[tideline], Baseline: r.best[2], RoundRatio: r.median(tideline, 2)},
		} {
			if !c.wants(f.Name) {
				continue
			}
			f.Unit = "events/s"
			if err := emit(f); err != nil {
				return err
			}
		}
	} else if _, err := c.occAppend(ctx, store, tl, false); err != nil { // rebuild needs events
		return err
	}
	if c.wants("rebuild") {
		base, val, med, err := c.replayFigures(ctx, store)
		if err != nil {
			return err
		}
		return emit(figure{Name: "rebuild", Value: val, Unit: "events/s", Baseline: base, RoundRatio: med, target: 0.7})
	}
	return nil
}

// startNATS starts an embedded server storing in dir and connects to it.
// blockDir is where it keeps the events stream's files, for a store on it
// that reads them as the server's does (tljs.Config.BlockDir).
func startNATS(dir string) (nc *nats.Conn, blockDir string, stop func(), err error) {
	ns, err := natsserver.Start(natsserver.Config{StoreDir: dir, Name: "bench"})
	if err != nil {
		return nil, "", nil, err
	}
	nc, err = natsserver.Connect(ns, "tideline-bench")
	if err != nil {
		ns.Shutdown()
		return nil, "", nil, err
	}
	return nc, natsserver.StreamDir(ns, wire.EventsStream), func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
	}, nil
}

// rawPublisher is the append baseline: JetStream async publish of
// benchPayload-byte messages with c.writers in flight, to a stream
// configured like EVENTS, over as many subjects as the OCC writers use.
type rawPublisher struct {
	c        *benchConfig
	js       jetstream.JetStream
	stream   jetstream.Stream
	subjects []string
	failed   atomic.Int64
	firstErr atomic.Value
}

func (c *benchConfig) newRawPublisher(ctx context.Context, nc *nats.Conn) (*rawPublisher, error) {
	p := &rawPublisher{c: c, subjects: make([]string, c.writers*c.aggregates)}
	for k := range p.subjects {
		p.subjects[k] = "ev.bench.raw." + strconv.Itoa(k)
	}
	var err error
	p.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(c.writers),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			p.failed.Add(1)
			p.firstErr.CompareAndSwap(nil, err)
		}))
	if err != nil {
		return nil, err
	}
	p.stream, err = p.js.CreateStream(ctx, rawStreamConfig("BENCH_RAW", "ev.bench.raw.>"))
	if err != nil {
		return nil, fmt.Errorf("create raw stream: %w", err)
	}
	return p, nil
}

// rawStreamConfig configures a raw baseline's stream like EVENTS.
func rawStreamConfig(name, subjects string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Subjects:    []string{subjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		Replicas:    1,
		Duplicates:  2 * time.Minute,
		AllowDirect: true,
		DenyDelete:  true,
		DenyPurge:   true,
	}
}

// publish publishes c.n messages, waits for every ack and returns msgs/s.
func (p *rawPublisher) publish(ctx context.Context) (float64, error) {
	n := p.c.n
	before, err := p.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	payload := make([]byte, benchPayload)
	t0 := time.Now()
	for i := range n {
		if _, err := p.js.PublishAsync(p.subjects[i%len(p.subjects)], payload, jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, err
		}
		if i%4096 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	select {
	case <-p.js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	elapsed := time.Since(t0)
	if f := p.failed.Load(); f > 0 {
		return 0, fmt.Errorf("%d publishes failed, first: %v", f, p.firstErr.Load())
	}
	after, err := p.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if got := after.State.Msgs - before.State.Msgs; got != uint64(n) {
		return 0, fmt.Errorf("stream gained %d messages, want %d", got, n)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// occWriters is the state of c.writers OCC writers, each with
// c.aggregates aggregates of its own: their names and the version each
// writer last saw, kept across rounds, so that a stream holds
// c.writers × c.aggregates subjects once every aggregate was written.
type occWriters struct {
	c        *benchConfig
	ids      [][]string
	versions [][]uint64
}

func (c *benchConfig) newOCCWriters(id func(w, a int) string) *occWriters {
	o := &occWriters{c: c, ids: make([][]string, c.writers), versions: make([][]uint64, c.writers)}
	for w := range o.ids {
		o.ids[w] = make([]string, c.aggregates)
		o.versions[w] = make([]uint64, c.aggregates)
		for a := range o.ids[w] {
			o.ids[w][a] = id(w, a)
		}
	}
	return o
}

// run makes c.n writes from the writers, each writing its aggregates in
// turn with write (which returns the aggregate's new version), and returns
// writes/s; with each, every writer writes each of its aggregates once.
func (o *occWriters) run(each bool, write func(w, a int, k int, version uint64) (uint64, error)) (float64, error) {
	n := o.writes(each)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range o.ids {
		wg.Go(func() {
			versions := o.versions[w]
			for k := 0; ; k++ {
				if each && k == len(versions) || !each && next.Add(1) > n {
					return
				}
				a := k % len(versions)
				v, err := write(w, a, k, versions[a])
				if err != nil {
					once.Do(func() { firstErr = err })
					next.Store(n) // stop everyone
					return
				}
				versions[a] = v
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(n) / elapsed.Seconds(), nil
}

// writes is how many writes run makes.
func (o *occWriters) writes(each bool) int64 {
	if each {
		return int64(len(o.ids) * len(o.ids[0]))
	}
	return int64(o.c.n)
}

// occAppend appends c.n one-event commits through store from the writers
// of o (one to each aggregate with each), with the expected version
// tracked, and returns events/s.
func (c *benchConfig) occAppend(ctx context.Context, store *tljs.Store, o *occWriters, each bool) (float64, error) {
	first, err := store.LastPosition(ctx)
	if err != nil {
		return 0, err
	}
	date := time.Now().UTC().Format("2006-01-02")
	streams := make([][]es.StreamID, len(o.ids))
	users := make([][]string, len(o.ids))
	for w, ids := range o.ids {
		for _, id := range ids {
			s := steps.Stream(id) // the steps projection rebuilds over these
			streams[w] = append(streams[w], s)
			users[w] = append(users[w], benchUser(s.ID, date))
		}
	}
	rate, err := o.run(each, func(w, a, k int, version uint64) (uint64, error) {
		ev := &stepsv1.StepsRecorded{UserId: users[w][a], Date: date, Steps: int32(k)}
		res, err := store.Append(ctx, streams[w][a], []proto.Message{ev}, es.AppendOptions{ExpectedVersion: int64(version)})
		return res.Position.Seq, err
	})
	if err != nil {
		return 0, err
	}
	last, err := store.LastPosition(ctx)
	if err != nil {
		return 0, err
	}
	if want := uint64(o.writes(each)); last-first != want {
		return 0, fmt.Errorf("stream gained %d commits, want %d", last-first, want)
	}
	return rate, nil
}

// rawOCC is the baseline of append_occ and append_wire: the writers of
// occAppend, each publishing asynchronously with
// Nats-Expected-Last-Subject-Sequence set from its own acks, one in flight
// per writer, to a stream configured like EVENTS (on the raw server, so
// that it and EVENTS hold as many subjects). For append_occ each message
// is benchPayload bytes; for append_wire (asTideline) it is what es.Store.Append
// stores for occAppend's event: the same envelope bytes (wire.AppendEventMessage)
// and commit headers (wire.SetCommitHeaders), made once and sent as they are.
type rawOCC struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	w       *occWriters
	payload []byte
	types   []string // the commit's event types, for wire's headers; nil for append_occ
}

func (c *benchConfig) newRawOCC(ctx context.Context, nc *nats.Conn, name, prefix string, asTideline bool) (*rawOCC, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192), jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	st, err := js.CreateStream(ctx, rawStreamConfig(name, prefix+".>"))
	if err != nil {
		return nil, fmt.Errorf("create raw stream %s: %w", name, err)
	}
	p := &rawOCC{js: js, stream: st, w: c.newOCCWriters(func(w, a int) string { return fmt.Sprintf("%s.w%d-a%d", prefix, w, a) })}
	if !asTideline {
		p.payload = make([]byte, benchPayload)
	} else if p.payload, p.types, err = wireMessage(); err != nil {
		return nil, err
	}
	return p, nil
}

// wireMessage returns the data and event types of the commit es.Store.Append
// stores for one of occAppend's events.
func wireMessage() ([]byte, []string, error) {
	date := time.Now().UTC().Format("2006-01-02")
	ev := &stepsv1.StepsRecorded{UserId: benchUser(steps.Stream("w0-a0").ID, date), Date: date, Steps: 1 << 20}
	typ := string(ev.ProtoReflect().Descriptor().FullName())
	id := ulid.Make().String()
	data, err := wire.AppendEventMessage(nil, []byte(id), typ, time.Now(), ev)
	if err != nil {
		return nil, nil, fmt.Errorf("encode the raw baseline's commit: %w", err)
	}
	return data, []string{typ}, nil
}

// message is writer w's message to aggregate a, expecting version.
func (p *rawOCC) message(w, a int, version uint64) *nats.Msg {
	msg := &nats.Msg{Subject: p.w.ids[w][a], Header: nats.Header{}, Data: p.payload}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(version, 10))
	if p.types != nil {
		wire.SetCommitHeaders(msg.Header, p.types, es.Metadata{})
	}
	return msg
}

// publish publishes c.n messages from the writers (one to each aggregate
// with each) and returns msgs/s.
func (p *rawOCC) publish(ctx context.Context, each bool) (float64, error) {
	before, err := p.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	rate, err := p.w.run(each, func(w, a, _ int, version uint64) (uint64, error) {
		paf, err := p.js.PublishMsgAsync(p.message(w, a, version))
		if err != nil {
			return 0, err
		}
		select {
		case ack := <-paf.Ok():
			return ack.Sequence, nil
		case err := <-paf.Err():
			return 0, err
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	if err != nil {
		return 0, err
	}
	after, err := p.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	if got, want := after.State.Msgs-before.State.Msgs, uint64(p.w.writes(each)); got != want {
		return 0, fmt.Errorf("raw stream gained %d messages, want %d", got, want)
	}
	return rate, nil
}

// benchUser pads id into a user id that makes a StepsRecorded of
// benchPayload bytes.
func benchUser(id, date string) string {
	size := proto.Size(&stepsv1.StepsRecorded{UserId: id, Date: date, Steps: 1 << 20})
	if size >= benchPayload {
		return id
	}
	// The user id's length prefix grows to two bytes past 127.
	return id + strings.Repeat("x", benchPayload-size-1)
}

// replayFigures reads the whole events stream with a raw ordered consumer
// and by rebuilding the steps projection through a running Runner, and
// returns the best rate of each in events/s and the median of the rounds'
// ratios.
func (c *benchConfig) replayFigures(ctx context.Context, store *tljs.Store) (replay, rebuild, median float64, err error) {
	last, err := store.LastPosition(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	runner := tljs.NewRunner(store, stepsmodel.New(), tljs.RunnerOptions{Logger: c.logger()})
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	var runErr error
	go func() {
		runErr = runner.Run(runCtx)
		close(stopped)
	}()
	defer func() {
		cancel()
		<-stopped
		if runErr != nil && err == nil {
			err = runErr
		}
	}()
	// Waits end when the runner stops, whyever it does.
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	go func() {
		select {
		case <-stopped:
			wcancel()
		case <-wctx.Done():
		}
	}()
	if err := runner.WaitFor(wctx, last); err != nil {
		return 0, 0, 0, fmt.Errorf("initial build of steps projection at %d of %d: %w", runner.Position(), last, err)
	}
	c.logf("rebuild: raw ordered consumer vs steps projection Runner.Rebuild, %d events per round", last)
	return c.best("rebuild",
		func(int) (float64, error) {
			t0 := time.Now()
			if err := rawReplay(wctx, store, last); err != nil {
				return 0, err
			}
			return float64(last) / time.Since(t0).Seconds(), nil
		},
		func(int) (float64, error) {
			t0 := time.Now()
			if err := runner.Rebuild(wctx); err != nil {
				return 0, err
			}
			return float64(last) / time.Since(t0).Seconds(), nil
		})
}

// rawReplay reads the events stream from position 1 to last with an
// ordered consumer, counting messages without decoding them.
func rawReplay(ctx context.Context, store *tljs.Store, last uint64) error {
	cons, err := store.JetStream().OrderedConsumer(ctx, store.StreamName(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	var n uint64
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if n++; n == last {
			close(done)
		}
	}, jetstream.PullMaxMessages(2048))
	if err != nil {
		return err
	}
	defer cc.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("read %d of %d messages in 5 minutes", n, last)
	}
}

// apiFigures measures record_steps and stream_ingest against a real Main
// and against a trivial step.StepService on the same kind of server.
func (c *benchConfig) apiFigures(ctx context.Context, dir string, emit func(figure) error) error {
	if !c.wants("record_steps") && !c.wants("stream_ingest") {
		return nil
	}
	bareURL, stopBare, err := startBareServer()
	if err != nil {
		return err
	}
	defer stopBare()
	m := &server.Main{Config: server.Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: c.logger()}}
	if err := m.Run(ctx); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer m.Close()
	token, err := m.Tokens.Issue(auth.Principal{Subject: "bench", Role: auth.Service}, time.Hour)
	if err != nil {
		return err
	}
	bare := stepconnect.NewStepServiceClient(h2cClient(), bareURL)
	tl := stepconnect.NewStepServiceClient(h2cClient(), "http://"+m.Addr())
	date := time.Now().UTC().Format("2006-01-02")
	// settled waits, untimed, until every read model has applied what a
	// round of Tideline's wrote: the projections' work is not the RPC's,
	// and it must not spill into the next baseline round.
	settled := func(rate float64, err error) (float64, error) {
		if err != nil {
			return 0, err
		}
		return rate, waitCaughtUp(ctx, m)
	}

	if c.wants("record_steps") {
		c.logf("record_steps: unary RPC to a trivial handler vs RecordSteps on a real server, %d requests per round, %d concurrent",
			c.rpcN, c.rpcConc)
		base, val, med, err := c.best("record_steps",
			func(r int) (float64, error) { return c.unary(ctx, bare, token, date, fmt.Sprint("b", r)) },
			func(r int) (float64, error) { return settled(c.unary(ctx, tl, token, date, fmt.Sprint("r", r))) })
		if err != nil {
			return err
		}
		if err := emit(figure{Name: "record_steps", Value: val, Unit: "req/s", Baseline: base, RoundRatio: med, target: 0.8}); err != nil {
			return err
		}
	}
	if c.wants("stream_ingest") {
		c.logf("stream_ingest: client streams to a trivial handler vs StreamUserSteps on a real server, %d streams, %d messages per round",
			c.streams, c.streamN)
		base, val, med, err := c.best("stream_ingest",
			func(r int) (float64, error) { return c.ingest(ctx, bare, token, date, fmt.Sprint("b", r)) },
			func(r int) (float64, error) { return settled(c.ingest(ctx, tl, token, date, fmt.Sprint("i", r))) })
		if err != nil {
			return err
		}
		return emit(figure{Name: "stream_ingest", Value: val, Unit: "msgs/s", Baseline: base, RoundRatio: med, target: 0.8})
	}
	return nil
}

// waitCaughtUp waits until every read model of m has applied the last
// commit in its store, for a minute at most.
func waitCaughtUp(ctx context.Context, m *server.Main) error {
	last, err := m.Store.LastPosition(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, r := range m.Runners() {
		if err := r.WaitFor(ctx, last); err != nil {
			return fmt.Errorf("read model %s did not catch up with commit %d: %w", r.Name(), last, err)
		}
	}
	return nil
}

// h2cClient speaks HTTP/2 without TLS, as gRPC clients and the server do.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// bareStep is the trivial step.StepService of the RPC baselines.
type bareStep struct {
	stepconnect.UnimplementedStepServiceHandler
}

func (bareStep) RecordSteps(context.Context, *connect.Request[steppb.StepInput]) (*connect.Response[steppb.StepResponse], error) {
	return connect.NewResponse(&steppb.StepResponse{Message: "ok"}), nil
}

func (bareStep) StreamUserSteps(_ context.Context, s *connect.ClientStream[steppb.StepInput]) (*connect.Response[steppb.StepResponse], error) {
	n := 0
	for s.Receive() {
		n++
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&steppb.StepResponse{Message: fmt.Sprintf("ok: %d recorded", n)}), nil
}

// startBareServer serves bareStep on api.NewServer at a free local port.
func startBareServer() (url string, stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle(stepconnect.NewStepServiceHandler(bareStep{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := api.NewServer(mux)
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// benchUsers is how many users each caller or stream records for.
const benchUsers = 64

// unary sends c.rpcN RecordSteps from c.rpcConc callers and returns req/s.
// Every request is for a user and count not sent before, so none is
// recognised as a resend.
func (c *benchConfig) unary(ctx context.Context, client stepconnect.StepServiceClient, token, date, prefix string) (float64, error) {
	call := func(w, k int) error {
		_, err := client.RecordSteps(ctx, authed(&steppb.StepInput{
			UserId: fmt.Sprintf("%s-%d-%d", prefix, w, k%benchUsers),
			Steps:  int32(k / benchUsers),
			Date:   date,
		}, token))
		return err
	}
	// Warm up: one connection, and each caller's first request.
	for w := range c.rpcConc {
		if err := call(w, 0); err != nil {
			return 0, err
		}
	}
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range c.rpcConc {
		wg.Go(func() {
			for k := 1; ; k++ {
				if next.Add(1) > int64(c.rpcN) {
					return
				}
				if err := call(w, k); err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(c.rpcN))
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(c.rpcN) / elapsed.Seconds(), nil
}

// ingest sends c.streamN StepInput messages over c.streams concurrent
// StreamUserSteps client streams and returns msgs/s, counted when every
// stream's response has arrived.
func (c *benchConfig) ingest(ctx context.Context, client stepconnect.StepServiceClient, token, date, prefix string) (float64, error) {
	errs := make([]error, c.streams)
	var wg sync.WaitGroup
	t0 := time.Now()
	for s := range c.streams {
		count := c.streamN / c.streams
		if s < c.streamN%c.streams {
			count++
		}
		wg.Go(func() {
			stream := client.StreamUserSteps(ctx)
			stream.RequestHeader().Set("Authorization", "Bearer "+token)
			for k := range count {
				msg := &steppb.StepInput{UserId: fmt.Sprintf("%s-%d-%d", prefix, s, k%benchUsers), Steps: int32(k / benchUsers), Date: date}
				if err := stream.Send(msg); err != nil {
					break // the response says why
				}
			}
			res, err := stream.CloseAndReceive()
			if err != nil {
				errs[s] = err
				return
			}
			if want := fmt.Sprintf("ok: %d recorded", count); res.Msg.Message != want {
				errs[s] = fmt.Errorf("stream %d: response %q, want %q", s, res.Msg.Message, want)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(c.streamN) / elapsed.Seconds(), nil
}
