package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	tljs "github.com/tideline/tideline/adapters/jetstream"
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
	if got, want := strings.Join(names, ","), "append,append_occ,append_wire,rebuild,record_steps,stream_ingest"; got != want {
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

// append_wire's baseline sends what es.Store.Append stores for the
// bench's event: the same headers, and as many bytes of data give or take
// a few (the event's count and the envelope's nanoseconds are varints).
func TestWireBaselineSendsTidelinesMessage(t *testing.T) {
	ctx := context.Background()
	c := &benchConfig{writers: 1, aggregates: 1}
	nc, _, stop, err := startNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	store, err := tljs.Open(ctx, nc, tljs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.occAppend(ctx, store, c.newOCCWriters(func(w, a int) string { return "w0-a0" }), true); err != nil {
		t.Fatal(err)
	}
	st, err := store.JetStream().Stream(ctx, store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}

	rawNC, _, stopRaw, err := startNATS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer stopRaw()
	p, err := c.newRawOCC(ctx, rawNC, "BENCH_RAW_WIRE", "ev.bench.wire", true)
	if err != nil {
		t.Fatal(err)
	}
	// What the server adds to a message it returns.
	for _, h := range []string{"Nats-Stream", "Nats-Sequence", "Nats-Subject", "Nats-Time-Stamp"} {
		stored.Header.Del(h)
	}
	sent := p.message(0, 0, 0)
	if !reflect.DeepEqual(sent.Header, stored.Header) {
		t.Errorf("headers %v, want es.Store.Append's %v", sent.Header, stored.Header)
	}
	if d := len(sent.Data) - len(stored.Data); d < -8 || d > 8 {
		t.Errorf("%d bytes of data, es.Store.Append stored %d", len(sent.Data), len(stored.Data))
	}
}
