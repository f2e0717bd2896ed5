package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// duckDB returns a function running SQL with DuckDB (the npm package
// @duckdb/node-api installed by `npm ci` in testdata/duckdb, as .ci/run
// does) and decoding its rows. Without node or the package the test is
// skipped, unless CI is set: CI must prove the files with a real reader.
func duckDB(tb testing.TB) func(sql string) []map[string]any {
	tb.Helper()
	dir, _ := filepath.Abs(filepath.Join("testdata", "duckdb"))
	_, errNode := exec.LookPath("node")
	_, errMod := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api"))
	if errNode != nil || errMod != nil {
		msg := "DuckDB check needs node and @duckdb/node-api: run `npm ci` in cmd/tideline/testdata/duckdb"
		if os.Getenv("CI") != "" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return func(sql string) []map[string]any {
		tb.Helper()
		cmd := exec.Command("node", filepath.Join(dir, "query.mjs"), sql)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			tb.Fatalf("duckdb %q: %v\n%s", sql, err, stderr.String())
		}
		var rows []map[string]any
		if err := json.Unmarshal(out, &rows); err != nil {
			tb.Fatalf("duckdb %q: %v: %s", sql, err, out)
		}
		return rows
	}
}

// TestExportReadByDuckDB records steps through the API and danger events,
// exports them with `tideline export` as Parquet and JSON Lines, and has
// DuckDB read the files: its counts and sums equal the read model's
// answers and what was appended, with typed columns and no JSON parsing.
func TestExportReadByDuckDB(t *testing.T) {
	query := duckDB(t)
	f := servertest.Start(t)
	ctx := context.Background()
	admin := f.Token(t, "ops", auth.Admin)
	steps := stepsv1connect.NewStepsServiceClient(http.DefaultClient, f.URL)
	today := time.Now().UTC().Format(time.DateOnly)
	yesterday := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	var last uint64
	users := []string{"ann", "bob", "cem"}
	for i, u := range users {
		for _, d := range []string{yesterday, today} {
			for k := 1; k <= 3; k++ { // cumulative counts through the day
				res, err := steps.RecordSteps(ctx, adminRequest(&stepsv1.RecordStepsRequest{UserId: u, Date: d, Steps: int32(1000*(i+1) + 100*k)}, admin))
				if err != nil {
					t.Fatal(err)
				}
				last = res.Msg.Position
			}
		}
	}
	danger := map[string]int{"r1": 2, "r2": 3}
	for rider, n := range danger {
		for k := range n {
			_, err := f.Store.Append(ctx, es.StreamID{Context: "safety", Type: "rider", ID: rider}, []proto.Message{&safetyv1.DangerDetected{
				EventId: fmt.Sprintf("%s-%d", rider, k), RiderId: rider, Kind: safetyv1.DangerKind_DANGER_KIND_FALL, PeakAccelG: 2.5,
			}}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	model, err := steps.GetSteps(ctx, adminRequest(&stepsv1.GetStepsRequest{UserIds: users, FromDate: yesterday, ToDate: today, MinPosition: last}, admin))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	pq := filepath.Join(dir, "parquet")
	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"export", "--server", f.URL, "--data", f.Config.DataDir, "--format", "parquet", "--out", pq,
		"--context", "steps,safety", "--since", yesterday}, &stdout, &stderr); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "events=23 ") {
		t.Errorf("summary: %q; want events=23", stderr.String())
	}
	jl := filepath.Join(dir, "events.jsonl")
	if err := run(ctx, []string{"export", "--server", f.URL, "--data", f.Config.DataDir, "--out", jl, "--type", "StepsRecorded"}, &stdout, &stderr); err != nil {
		t.Fatalf("export jsonl: %v\n%s", err, stderr.String())
	}
	if partial, _ := filepath.Glob(filepath.Join(dir, "*", "*.partial")); len(partial) > 0 {
		t.Errorf("partial files left: %v", partial)
	}

	t.Run("steps_match_the_read_model", func(t *testing.T) {
		rows := query(fmt.Sprintf(`SELECT user_id, date, arg_max(steps, seq) AS steps, count(*) AS n
			FROM '%s/StepsRecorded.parquet' GROUP BY ALL ORDER BY ALL`, pq))
		if len(rows) != len(model.Msg.Steps) {
			t.Fatalf("duckdb: %d user-days; read model: %d", len(rows), len(model.Msg.Steps))
		}
		want := map[string]int32{}
		for _, s := range model.Msg.Steps {
			want[s.UserId+"/"+s.Date] = s.Steps
		}
		for _, r := range rows {
			key := fmt.Sprint(r["user_id"], "/", r["date"])
			if int32(r["steps"].(float64)) != want[key] || r["n"].(float64) != 3 {
				t.Errorf("%s: duckdb %v steps in %v events; read model %d in 3", key, r["steps"], r["n"], want[key])
			}
		}
	})
	t.Run("danger_by_rider_with_typed_columns", func(t *testing.T) {
		rows := query(fmt.Sprintf(`SELECT rider_id, count(*) AS n, sum(peak_accel_g) AS g, any_value(kind) AS kind,
			any_value(typeof(occurred_at)) AS ts_type, any_value(typeof(peak_accel_g)) AS g_type
			FROM '%s/DangerDetected.parquet' GROUP BY rider_id ORDER BY rider_id`, pq))
		if len(rows) != len(danger) {
			t.Fatalf("duckdb: %v", rows)
		}
		for _, r := range rows {
			n := danger[r["rider_id"].(string)]
			if r["n"].(float64) != float64(n) || r["g"].(float64) != 2.5*float64(n) || r["kind"] != "DANGER_KIND_FALL" ||
				!strings.HasPrefix(r["ts_type"].(string), "TIMESTAMP") || r["g_type"] != "DOUBLE" {
				t.Errorf("duckdb row %v; want %d events of 2.5 g, kind DANGER_KIND_FALL, a TIMESTAMP and a DOUBLE", r, n)
			}
		}
	})
	t.Run("jsonl", func(t *testing.T) {
		rows := query(fmt.Sprintf(`SELECT count(*) AS n, count(DISTINCT event_id) AS ids, sum(CAST(data.steps AS BIGINT)) AS total
			FROM read_json('%s') WHERE type = 'tideline.steps.v1.StepsRecorded'`, jl))
		total := 0.0
		for i := range users {
			total += 2 * float64(3*1000*(i+1)+600)
		}
		if len(rows) != 1 || rows[0]["n"].(float64) != 18 || rows[0]["ids"].(float64) != 18 || rows[0]["total"].(float64) != total {
			t.Errorf("duckdb %v; want 18 events summing %v", rows, total)
		}
	})
	t.Run("readme_query_reads_batches_too", func(t *testing.T) {
		// A client stream's batch for a fourth user, with a date that
		// comes back: the README's query takes both kinds of event.
		batch := &stepsv1.StepsBatchRecorded{UserId: "dia", Days: []*stepsv1.DayCounts{
			{Date: yesterday, Steps: []int32{100, 4000, 3000}}, {Date: today, Steps: []int32{5}}, {Date: yesterday, Steps: []int32{4200}},
		}}
		res, err := f.Store.Append(ctx, es.StreamID{Context: "steps", Type: "user", ID: "dia"}, []proto.Message{batch}, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err != nil {
			t.Fatal(err)
		}
		all := append(users, "dia")
		model, err := steps.GetSteps(ctx, adminRequest(&stepsv1.GetStepsRequest{UserIds: all, FromDate: yesterday, ToDate: today, MinPosition: res.Position.Seq}, admin))
		if err != nil {
			t.Fatal(err)
		}
		both := filepath.Join(dir, "steps.jsonl")
		if err := run(ctx, []string{"export", "--server", f.URL, "--data", f.Config.DataDir, "--out", both, "--context", "steps"}, &stdout, &stderr); err != nil {
			t.Fatalf("export jsonl: %v\n%s", err, stderr.String())
		}
		rows := query(strings.ReplaceAll(readmeSQL(t, "read_json('events.jsonl'"), "'events.jsonl'", "'"+both+"'"))
		got := map[string]int32{}
		for _, r := range rows {
			got[fmt.Sprint(r["user_id"], "/", r["date"])] = int32(r["steps"].(float64))
		}
		want := map[string]int32{}
		for _, s := range model.Msg.Steps {
			want[s.UserId+"/"+s.Date] = s.Steps
		}
		if len(rows) != len(want) || !maps.Equal(got, want) || got["dia/"+yesterday] != 4200 {
			t.Errorf("README query: %v; read model: %v", rows, want)
		}
	})
}

// readmeSQL returns the README's first duckdb heredoc (duckdb <<'SQL')
// that contains marker.
func readmeSQL(tb testing.TB, marker string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "duckdb <<'SQL'\n")[1:] {
		sql, _, ok := strings.Cut(block, "\nSQL\n")
		if ok && strings.Contains(sql, marker) {
			return sql
		}
	}
	tb.Fatalf("README.md has no duckdb <<'SQL' block with %q", marker)
	return ""
}

func TestExportRejectsBadInput(t *testing.T) {
	f := servertest.Start(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad_date", []string{"--since", "yesterday"}, "--since"},
		{"unknown_type", []string{"--type", "NoSuchEvent"}, "filter.types"},
		{"until_before_since", []string{"--since", "2026-03-02", "--until", "2026-03-01"}, "until"},
		{"parquet_without_dir", []string{"--format", "parquet"}, "--out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"export", "--server", f.URL, "--data", f.Config.DataDir}, tc.args...), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("export %v: %v; want an error naming %s", tc.args, err, tc.want)
			}
			if strings.Contains(tc.want, ".") && connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Errorf("code %v; want InvalidArgument", connect.CodeOf(err))
			}
		})
	}
}
