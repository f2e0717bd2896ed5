package edge

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tideline/tideline/domain/safety"
)

// Source produces motion samples: a BLE sensor (edge/ble), a recorded
// trace (Replay), a simulator (edge/sim). Run passes samples to emit in
// increasing time until the source ends (nil), ctx ends, or emit returns
// an error (which Run returns).
type Source interface {
	Run(ctx context.Context, emit func(safety.Sample) error) error
}

// Replay replays a recorded trace file: CSV with a header line, or JSON
// Lines, one sample per line, with the same field names:
//
//	t          sample time: RFC 3339 (2026-03-01T10:00:00.01Z) or seconds
//	           as a number (Unix or relative, e.g. 0.01)
//	ax ay az   acceleration in g (device frame; 0 0 1 lying flat, z up)
//	gx gy gz   angular rate in degrees per second
//	lat lng    optional position fix in degrees (both or neither)
//	seq        optional sensor frame counter
//
// CSV example:
//
//	t,ax,ay,az,gx,gy,gz
//	0.00,0.01,-0.02,1.00,0.3,0.1,-0.2
//
// JSON Lines example:
//
//	{"t":0.00,"ax":0.01,"ay":-0.02,"az":1.0,"gx":0.3,"gy":0.1,"gz":-0.2}
//
// Sample times are rebased so events carry current times, the trace's
// spacing kept: in real time (Speed 1) the trace starts now; faster (or
// as fast as possible) it ends now, read once ahead to learn its length,
// so that no event is dated in the future (the hub refuses those, see
// safety.MaxClockSkew). Lines starting with # are comments.
type Replay struct {
	Path string
	// Speed paces the replay: 1 is real time, 2 twice as fast, 0 (or less)
	// as fast as possible.
	Speed float64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

var (
	_ Source = (*Replay)(nil)
	_ Source = (*Sim)(nil)
)

// Run implements Source.
func (r *Replay) Run(ctx context.Context, emit func(safety.Sample) error) error {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	var length time.Duration // how far the trace's last sample is from its first
	if aheadOfTime(r.Speed) {
		var t0 time.Time
		if err := r.read(ctx, func(s safety.Sample) error {
			if t0.IsZero() {
				t0 = s.T
			}
			length = max(length, s.T.Sub(t0))
			return nil
		}); err != nil {
			return err
		}
	}
	var start, wall, t0 time.Time
	return r.read(ctx, func(rec safety.Sample) error {
		if start.IsZero() {
			wall, t0 = now(), rec.T
			start = wall.Add(-length)
		}
		offset := rec.T.Sub(t0)
		rec.T = start.Add(offset)
		if err := pace(ctx, wall, offset, r.Speed); err != nil {
			return err
		}
		return emit(rec)
	})
}

// aheadOfTime reports whether a source paced at speed would run ahead of
// the clock.
func aheadOfTime(speed float64) bool { return speed <= 0 || speed > 1 }

// read parses the trace, passing each record to each.
func (r *Replay) read(ctx context.Context, each func(safety.Sample) error) error {
	f, err := os.Open(r.Path)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	first, err := br.Peek(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("replay %s: %w", r.Path, err)
	}
	next := r.csvReader(br)
	if len(first) == 1 && first[0] == '{' {
		next = r.jsonReader(br)
	}
	for line := 1; ; line++ {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("replay %s: record %d: %w", r.Path, line, err)
		}
		if err := each(rec); err != nil {
			return err
		}
		if line%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// replayFields are a trace record's named fields.
var replayFields = []string{"t", "ax", "ay", "az", "gx", "gy", "gz", "lat", "lng", "seq"}

func (r *Replay) csvReader(br *bufio.Reader) func() (safety.Sample, error) {
	cr := csv.NewReader(br)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	var col map[string]int
	return func() (safety.Sample, error) {
		if col == nil {
			head, err := cr.Read()
			if err != nil {
				return safety.Sample{}, err
			}
			col = map[string]int{}
			for i, h := range head {
				col[strings.ToLower(strings.TrimSpace(h))] = i
			}
			for _, need := range replayFields[:7] {
				if _, ok := col[need]; !ok {
					return safety.Sample{}, fmt.Errorf("csv header lacks column %q (want %s)", need, strings.Join(replayFields, ","))
				}
			}
		}
		rec, err := cr.Read()
		if err != nil {
			return safety.Sample{}, err
		}
		get := func(name string) (string, bool) {
			i, ok := col[name]
			if !ok || i >= len(rec) || strings.TrimSpace(rec[i]) == "" {
				return "", false
			}
			return strings.TrimSpace(rec[i]), true
		}
		return parseSample(func(name string) (any, bool) {
			v, ok := get(name)
			return v, ok
		})
	}
}

func (r *Replay) jsonReader(br *bufio.Reader) func() (safety.Sample, error) {
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return func() (safety.Sample, error) {
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || line[0] == '#' {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				return safety.Sample{}, err
			}
			return parseSample(func(name string) (any, bool) {
				v, ok := m[name]
				return v, ok && v != nil
			})
		}
		if err := sc.Err(); err != nil {
			return safety.Sample{}, err
		}
		return safety.Sample{}, io.EOF
	}
}

// parseSample reads one record through get, which returns a field as a
// string (CSV) or a JSON value.
func parseSample(get func(string) (any, bool)) (safety.Sample, error) {
	num := func(name string) (float64, bool, error) {
		v, ok := get(name)
		if !ok {
			return 0, false, nil
		}
		switch x := v.(type) {
		case float64:
			return x, true, nil
		case string:
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				return 0, true, fmt.Errorf("field %s: %q is not a number", name, x)
			}
			return f, true, nil
		}
		return 0, true, fmt.Errorf("field %s: %v is not a number", name, v)
	}
	var s safety.Sample
	tv, ok := get("t")
	if !ok {
		return s, errors.New("missing field t")
	}
	if ts, isStr := tv.(string); isStr {
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
			s.T = t
		}
	}
	if s.T.IsZero() {
		secs, _, err := num("t")
		if err != nil {
			return s, fmt.Errorf("field t: want RFC 3339 or seconds")
		}
		s.T = time.Unix(0, int64(secs*1e9))
	}
	for i, name := range []string{"ax", "ay", "az", "gx", "gy", "gz"} {
		v, ok, err := num(name)
		if err != nil {
			return s, err
		}
		if !ok {
			return s, fmt.Errorf("missing field %s", name)
		}
		if i < 3 {
			s.Accel[i] = v
		} else {
			s.Gyro[i-3] = v
		}
	}
	lat, okLat, err := num("lat")
	if err != nil {
		return s, err
	}
	lng, okLng, err := num("lng")
	if err != nil {
		return s, err
	}
	if okLat && okLng {
		s.Loc = &safety.Location{Lat: lat, Lng: lng}
	}
	if seq, ok, err := num("seq"); err != nil {
		return s, err
	} else if ok {
		s.Seq = uint32(seq)
	}
	return s, nil
}

// pace waits until a sample at offset from start is due at speed (1 real
// time, 2 twice as fast, 0 or less at once), or ctx ends.
func pace(ctx context.Context, start time.Time, offset time.Duration, speed float64) error {
	if speed <= 0 {
		return ctx.Err()
	}
	wait := time.Until(start.Add(time.Duration(float64(offset) / speed)))
	if wait <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
