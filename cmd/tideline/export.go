package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/export"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	analyticsv1 "github.com/tideline/tideline/schemas/gen/tideline/analytics/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/analytics/v1/analyticsv1connect"
)

const exportUsage = `usage:
  tideline export [--format jsonl|parquet] [--out PATH] [selection] [--server URL] [--data DIR]

Exports events from a running server (tideline.analytics.v1.AnalyticsService
ExportEvents, with an admin token signed by the key in --data) up to the
event stream's end as of the call.

  --format jsonl    one event a line, payload as protojson; --out is a file
                    ("-", the default, is standard output)
  --format parquet  one file per event type (DangerDetected.parquet) with
                    the payload's fields as typed columns; --out is a directory

Files are written as NAME.partial and renamed when the export completes.

Selection (all optional, combined):
  --from N --to N        commit positions, inclusive
  --since T --until T    recorded time, since inclusive, until exclusive:
                         RFC 3339 (2026-03-01T08:00:00Z) or a date (2026-03-01, UTC)
  --context C            contexts, comma-separated or repeated
  --type T               event types, full (tideline.safety.v1.DangerDetected) or short (DangerDetected)
  --stream S             streams, <context>.<type>.<id>

On a terminal, progress is drawn on stderr; otherwise one summary line
(events=... positions=... seconds=... rate=... files=...) is printed there.`

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// parseWhen reads an RFC 3339 time or a date (midnight UTC).
func parseWhen(flag, v string) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return timestamppb.New(t), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return timestamppb.New(t), nil
	}
	return nil, fmt.Errorf("export: --%s %q: want RFC 3339 (2026-03-01T08:00:00Z) or a date (2026-03-01)", flag, v)
}

func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", exportUsage, stderr)
	server := fs.String("server", "http://127.0.0.1:8080", "URL of the running server")
	data := fs.String("data", "./data", "the server's data directory (its key signs an admin token)")
	format := fs.String("format", "jsonl", "jsonl or parquet")
	out := fs.String("out", "", `output: a file for jsonl ("-" or empty: stdout), a directory for parquet`)
	from := fs.Uint64("from", 0, "first commit position")
	to := fs.Uint64("to", 0, "last commit position")
	sinceS := fs.String("since", "", "recorded at or after (RFC 3339 or date)")
	untilS := fs.String("until", "", "recorded before (RFC 3339 or date)")
	var contexts, types, streams listFlag
	fs.Var(&contexts, "context", "contexts (comma-separated or repeated)")
	fs.Var(&types, "type", "event types, full or short names")
	fs.Var(&streams, "stream", "streams, <context>.<type>.<id>")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("export: unexpected %q", fs.Arg(0))
	}
	since, err := parseWhen("since", *sinceS)
	if err != nil {
		return err
	}
	until, err := parseWhen("until", *untilS)
	if err != nil {
		return err
	}
	if *out == "" {
		if *format == "parquet" {
			return errors.New("export: --out names the directory of the parquet files")
		}
		*out = "-"
	}
	w, err := export.Of(*format, *out, stdout)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer w.Abort() // removes the partial files unless Close renamed them
	tokens, err := api.LoadTokens(*data)
	if err != nil {
		return err
	}
	tok, err := tokens.Issue(auth.Principal{Subject: "cli", Role: auth.Admin}, 24*time.Hour)
	if err != nil {
		return err
	}
	// Uncompressed: gzip costs the server more CPU than the export itself.
	client := analyticsv1connect.NewAnalyticsServiceClient(http.DefaultClient, *server, connect.WithAcceptCompression("gzip", nil, nil))
	s, err := client.ExportEvents(ctx, adminRequest(&analyticsv1.ExportEventsRequest{
		FromPosition: *from, ToPosition: *to, Since: since, Until: until,
		Filter: &analyticsv1.EventFilter{Contexts: contexts, Types: types, Streams: streams},
	}, tok))
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer s.Close()
	p := newProgress(stderr)
	var first, last uint64
	for s.Receive() {
		m := s.Msg()
		for _, e := range m.Events {
			if err := w.Write(e); err != nil {
				return fmt.Errorf("export: %w", err)
			}
		}
		first, last = m.FirstPosition, m.LastPosition
		p.update(len(m.Events), m.FirstPosition, m.LastPosition, m.Position)
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	paths, err := w.Close()
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	p.done(first, last, paths)
	return nil
}

// progress reports an export's progress: a bar redrawn on a terminal,
// one summary line otherwise.
type progress struct {
	w      io.Writer
	tty    bool
	start  time.Time
	drawn  time.Time
	events int
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd())), start: time.Now()}
}

func (p *progress) update(events int, first, last, pos uint64) {
	p.events += events
	if !p.tty || time.Since(p.drawn) < 200*time.Millisecond || last < first {
		return
	}
	p.drawn = time.Now()
	frac := float64(pos-first+1) / float64(last-first+1)
	frac = min(max(frac, 0), 1)
	elapsed := time.Since(p.start)
	rate := float64(p.events) / elapsed.Seconds()
	eta := "-"
	if frac > 0 {
		eta = (time.Duration(float64(elapsed)/frac) - elapsed).Round(time.Second).String()
	}
	total := "?"
	if frac > 0 {
		total = fmt.Sprintf("~%d", int(float64(p.events)/frac))
	}
	const width = 30
	bar := strings.Repeat("=", int(frac*width)) + strings.Repeat(" ", width-int(frac*width))
	fmt.Fprintf(p.w, "\r[%s] %3.0f%%  %d/%s events  %.0f ev/s  ETA %s   ", bar, frac*100, p.events, total, rate, eta)
}

func (p *progress) done(first, last uint64, paths []string) {
	elapsed := time.Since(p.start)
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	fmt.Fprintf(p.w, "events=%d positions=%d-%d seconds=%.3f rate=%.0f files=%s\n",
		p.events, first, last, elapsed.Seconds(), float64(p.events)/elapsed.Seconds(), strings.Join(paths, ","))
}
