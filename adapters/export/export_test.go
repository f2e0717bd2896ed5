package export_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/export"
	analyticsv1 "github.com/tideline/tideline/schemas/gen/tideline/analytics/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

func danger(tb testing.TB, seq uint64, rider string) *analyticsv1.RecordedEvent {
	tb.Helper()
	data, err := anypb.New(&safetyv1.DangerDetected{EventId: "d", RiderId: rider, Kind: safetyv1.DangerKind_DANGER_KIND_CRASH, PeakAccelG: 3})
	if err != nil {
		tb.Fatal(err)
	}
	return &analyticsv1.RecordedEvent{Position: &analyticsv1.Position{Seq: seq}, EventId: "e", CommitId: "e", Stream: "safety.rider." + rider,
		Type: "tideline.safety.v1.DangerDetected", OccurredAt: timestamppb.Now(), RecordedAt: timestamppb.Now(), Data: data}
}

func TestParquetColumnsAreTyped(t *testing.T) {
	dir := t.TempDir()
	w, err := export.NewParquet(dir, export.ParquetOptions{RowGroupRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.Write(danger(t, uint64(i+1), "r1")); err != nil {
			t.Fatal(err)
		}
	}
	unknown := &analyticsv1.RecordedEvent{Position: &analyticsv1.Position{Seq: 9}, Type: "tideline.future.v9.Thing", OccurredAt: timestamppb.Now(), RecordedAt: timestamppb.Now()}
	if err := w.Write(unknown); err != nil {
		t.Fatal(err)
	}
	paths, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "DangerDetected.parquet"), filepath.Join(dir, "tideline.future.v9.Thing.parquet")}; !slices.Equal(paths, want) {
		t.Fatalf("files %v; want %v", paths, want)
	}
	f, err := os.Open(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if pf.NumRows() != 5 || len(pf.RowGroups()) != 3 {
		t.Errorf("%d rows in %d row groups; want 5 in 3", pf.NumRows(), len(pf.RowGroups()))
	}
	types := map[string]string{}
	for _, c := range pf.Schema().Fields() {
		types[c.Name()] = c.Type().String()
	}
	for col, want := range map[string]string{"rider_id": "STRING", "kind": "STRING", "peak_accel_g": "DOUBLE", "data_event_id": "STRING",
		"event_id": "STRING", "seq": "INT(64,false)", "occurred_at": "TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)"} {
		if types[col] != want {
			t.Errorf("column %s: %q; want %q (all: %v)", col, types[col], want, types)
		}
	}
}

func TestJSONLLine(t *testing.T) {
	var buf bytes.Buffer
	w := export.NewJSONLTo(&buf)
	if err := w.Write(danger(t, 7, "r2")); err != nil {
		t.Fatal(err)
	}
	var line struct {
		Seq  uint64
		Type string
		Data map[string]any
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line.Seq != 7 || line.Data["rider_id"] != "r2" || line.Data["kind"] != "DANGER_KIND_CRASH" {
		t.Fatalf("line %s: %+v, %v", buf.String(), line, err)
	}
}

func TestAbortLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	j, err := export.NewJSONL(filepath.Join(dir, "e.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := export.NewParquet(filepath.Join(dir, "pq"), export.ParquetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []export.Writer{j, p} {
		if err := w.Write(danger(t, 1, "r1")); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"e.jsonl.partial", "pq/DangerDetected.parquet.partial"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("while writing: %v", err)
		}
	}
	j.Abort()
	p.Abort()
	left, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	left2, _ := filepath.Glob(filepath.Join(dir, "*.*"))
	if len(left)+len(left2) > 0 {
		t.Fatalf("left after abort: %v %v", left, left2)
	}
}
