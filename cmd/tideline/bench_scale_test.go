package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// `tideline bench --scale` loads a store, serves it with the binary
// twice (without and with snapshots) and reports every figure of its
// growth table; a second size's queries alternate with the first's
// server, which says how they compare.
func TestBenchScale(t *testing.T) {
	t.Parallel()
	bin := buildTideline(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--scale", "1k,3k", "--json", "--server", bin, "--clients", "4", "--query-time", "200ms", "--watchers", "5", "--pushes", "2"}
	if err := run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("tideline %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var row struct {
		Events, Walkers, Watchers int
		Waiting                   int     `json:"waiting_orders"`
		StoreBytes                int64   `json:"store_bytes"`
		SnapshotBytes             int64   `json:"snapshot_bytes"`
		ColdStart                 float64 `json:"start_without_snapshots_s"`
		WarmStart                 float64 `json:"start_from_snapshots_s"`
		ColdRSS                   int64   `json:"rss_after_replay_bytes"`
		WarmRSS                   int64   `json:"rss_from_snapshots_bytes"`
		PeakRSS                   int64   `json:"peak_rss_bytes"`
		Queries                   map[string]struct {
			N           int
			AnswerBytes float64 `json:"answer_bytes"`
		}
		Push    struct{ N int }    `json:"watcher_push"`
		VsFirst map[string]float64 `json:"p50_vs_first"`
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q: want a line for each of 2 sizes", stdout.String())
	}
	if err := json.Unmarshal([]byte(lines[0]), &row); err != nil || row.Events != 1000 || row.VsFirst != nil {
		t.Errorf("first line %q (%v): want 1000 events, not compared with itself", lines[0], err)
	}
	row.VsFirst = nil
	if err := json.Unmarshal([]byte(lines[1]), &row); err != nil {
		t.Fatalf("output %q: %v", stdout.String(), err)
	}
	// 1,500 step counts: 50 walkers counting on each of 30 dates.
	if row.Events != 3000 || row.Walkers != 50 || row.Watchers != 5 {
		t.Errorf("events %d, walkers %d, watchers %d; want 3000, 50, 5", row.Events, row.Walkers, row.Watchers)
	}
	for name, v := range map[string]float64{"store_bytes": float64(row.StoreBytes), "snapshot_bytes": float64(row.SnapshotBytes),
		"start_without_snapshots_s": row.ColdStart, "start_from_snapshots_s": row.WarmStart,
		"rss_after_replay_bytes": float64(row.ColdRSS), "rss_from_snapshots_bytes": float64(row.WarmRSS), "peak_rss_bytes": float64(row.PeakRSS)} {
		if v <= 0 {
			t.Errorf("%s = %v, want positive\n%s", name, v, stdout.String())
		}
	}
	for _, q := range []string{"dashboard", "leaderboard", "steps", "nearby"} {
		for _, k := range []string{q + "/1", q + "/4"} {
			if row.Queries[k].N == 0 || row.Queries[k].AnswerBytes <= 0 {
				t.Errorf("query %s: %d calls timed, answers of %v bytes; want some of each\n%s", k, row.Queries[k].N, row.Queries[k].AnswerBytes, stdout.String())
			}
			if row.VsFirst[k] <= 0 {
				t.Errorf("query %s: p50 against the first size's %v, want a ratio\n%s", k, row.VsFirst[k], stdout.String())
			}
		}
	}
	// The orders waiting: nearby answers its default 20 of about 80
	// within 3 km, each order some 60 bytes.
	if row.Waiting != 1000 || row.Queries["nearby/1"].AnswerBytes < 20*40 {
		t.Errorf("%d orders waiting, nearby answers of %v bytes; want 1000, and 20 orders in each answer\n%s", row.Waiting, row.Queries["nearby/1"].AnswerBytes, stdout.String())
	}
	if row.Push.N != 5*2 {
		t.Errorf("watcher pushes timed: %d, want 10 (5 watchers × 2 changes)", row.Push.N)
	}
	if err := run(ctx, []string{"bench", "--scale", "10"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "at least 1000") {
		t.Errorf("--scale 10: %v, want 'at least 1000'", err)
	}
	// --serve-args reach the served binary: a bad value fails its start.
	args = []string{"bench", "--scale", "1k", "--server", bin, "--serve-args", "--memory-limit 3GB"}
	if err := run(ctx, args, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "--memory-limit") {
		t.Errorf("tideline %s: %v, want the server's --memory-limit error", strings.Join(args, " "), err)
	}
	if err := run(ctx, []string{"bench", "--serve-args", "--memory-limit 1GiB"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "--scale") {
		t.Errorf("--serve-args without --scale: %v, want an error naming --scale", err)
	}
}
