package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

func TestBenchSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"--json", "--n", "300", "--concurrency", "16", "--rpc-concurrency", "8", "--streams", "4", "--rounds", "2"}
	if err := Run(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	var names []string
	for line := range strings.Lines(stdout.String()) {
		var f struct {
			Name     string   `json:"name"`
			Value    *float64 `json:"value"`
			Unit     string   `json:"unit"`
			Baseline *float64 `json:"baseline"`
			Ratio    *float64 `json:"ratio"`
			Rounds   *float64 `json:"round_ratio"`
		}
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if f.Name == "" || f.Unit == "" || f.Value == nil || f.Baseline == nil || f.Ratio == nil || f.Rounds == nil {
			t.Fatalf("line %q: want name, value, unit, baseline, ratio and round_ratio", line)
		}
		if *f.Rounds <= 0 {
			t.Errorf("%s: round_ratio %v, want positive", f.Name, *f.Rounds)
		}
		if *f.Value <= 0 || *f.Baseline <= 0 {
			t.Errorf("%s: value %v and baseline %v, want both positive", f.Name, *f.Value, *f.Baseline)
		}
		if want := *f.Value / *f.Baseline; math.Abs(*f.Ratio-want) > 1e-9*want {
			t.Errorf("%s: ratio %v, want value/baseline = %v", f.Name, *f.Ratio, want)
		}
		names = append(names, f.Name)
	}
	if got, want := strings.Join(names, ","), "append,append_occ,rebuild,record_steps,stream_ingest"; got != want {
		t.Errorf("figures %s, want %s\nstderr:\n%s", got, want, stderr.String())
	}
}

func TestRoundsMedian(t *testing.T) {
	r := rates{rounds: [][]float64{{100, 50}, {100, 90}, {200, 60}, {100, 80}}}
	// Ratios 0.5, 0.9, 0.3, 0.8: the median of four is between 0.5 and 0.8.
	if got := r.median(1, 0); got < 0.6499 || got > 0.6501 {
		t.Errorf("median of 4 rounds = %v, want 0.65", got)
	}
	r.rounds = r.rounds[:3]
	if got := r.median(1, 0); got != 0.5 {
		t.Errorf("median of 3 rounds = %v, want 0.5", got)
	}
}

func TestBenchRejectsCountsBelowOne(t *testing.T) {
	for _, flag := range []string{"--n", "--rpc-n", "--stream-n", "--streams", "--rounds"} {
		var stdout, stderr bytes.Buffer
		err := Run(context.Background(), []string{flag, "-1"}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), "must be positive") || !strings.Contains(err.Error(), flag) {
			t.Errorf("%s -1: error %v, want one saying %s must be positive", flag, err, flag)
		}
		if stdout.Len() > 0 {
			t.Errorf("%s -1: printed %q", flag, stdout.String())
		}
	}
}
