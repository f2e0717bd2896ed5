package frame_test

import (
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/tideline/tideline/edge/frame"
)

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// The golden frames pin the documented layout byte for byte; the CRCs were
// checked with an independent implementation.
var golden = []struct {
	name string
	hex  string
	r    frame.Reading
}{
	{
		name: "boot_clock_no_location",
		//    tag flags seq         time (µs)               accel mg          gyro 0.1°/s        crc
		hex: "D1 00  07 00 00 00 40 42 0F 00 00 00 00 00 01 00 18 FC DC 05 01 00 3C F6 00 00 97 7D",
		r: frame.Reading{
			Seq: 7, HasSeq: true, Clock: frame.ClockBoot, Micros: 1_000_000,
			Accel: [3]float64{0.001, -1, 1.5}, Gyro: [3]float64{0.1, -250, 0},
		},
	},
	{
		name: "unix_clock_with_location",
		hex: "D1 03 FF FF FF FF 00 40 1E 18 24 0A 06 00 00 00 00 00 E8 03 00 00 00 00 00 00" +
			"C2 EA 4D 1F FC 90 02 F8 34 07",
		r: frame.Reading{
			Seq: math.MaxUint32, HasSeq: true, Clock: frame.ClockUnix, Micros: 1_700_000_000_000_000,
			Accel: [3]float64{0, 0, 1}, HasLocation: true, Lat: 52.5200066, Lng: -13.404954,
		},
	},
}

func TestDecodeTidelineGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			b := unhex(t, g.hex)
			r, err := frame.DecodeTideline(b)
			if err != nil {
				t.Fatal(err)
			}
			if r != g.r {
				t.Fatalf("got %+v\nwant %+v", r, g.r)
			}
			if enc := frame.AppendTideline(nil, g.r); string(enc) != string(b) {
				t.Fatalf("encoded % X\nwant        % X", enc, b)
			}
		})
	}
}

func TestAppendTidelineRoundsAndSaturates(t *testing.T) {
	in := frame.Reading{
		Accel: [3]float64{0.0004, 0.0006, 40},
		Gyro:  [3]float64{-5000, math.NaN(), 12.34},
	}
	r, err := frame.DecodeTideline(frame.AppendTideline(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if want := [3]float64{0, 0.001, 32.767}; r.Accel != want {
		t.Errorf("accel %v, want %v", r.Accel, want)
	}
	if want := [3]float64{-3276.8, 0, 12.3}; r.Gyro != want {
		t.Errorf("gyro %v, want %v", r.Gyro, want)
	}
}

func TestAppendTidelineAppends(t *testing.T) {
	b := frame.AppendTideline([]byte("prefix"), golden[0].r)
	if !strings.HasPrefix(string(b), "prefix") {
		t.Fatal("prefix lost")
	}
	if _, err := frame.DecodeTideline(b[len("prefix"):]); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeTidelineRejects(t *testing.T) {
	valid := unhex(t, golden[0].hex)
	withLoc := unhex(t, golden[1].hex)
	edit := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, frame.ErrShort},
		{"tag_only", valid[:1], frame.ErrShort},
		{"truncated_by_default_mtu", valid[:20], frame.ErrShort},
		{"one_short", valid[:27], frame.ErrShort},
		{"trailing_byte", append(append([]byte(nil), valid...), 0), frame.ErrLong},
		{"location_flag_without_location", edit(valid, func(b []byte) []byte { b[1] = 0x02; return b }), frame.ErrShort},
		{"location_cut", withLoc[:30], frame.ErrShort},
		{"thingy_bytes", make([]byte, 18), frame.ErrMagic},
		{"future_version", edit(valid, func(b []byte) []byte { b[0] = 0xD2; return b }), frame.ErrVersion},
		{"reserved_flag", edit(valid, func(b []byte) []byte { b[1] = 0x80; return b }), frame.ErrFlags},
		{"flipped_bit", edit(valid, func(b []byte) []byte { b[15] ^= 0x10; return b }), frame.ErrCRC},
		{"flipped_crc", edit(valid, func(b []byte) []byte { b[27] ^= 1; return b }), frame.ErrCRC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := frame.DecodeTideline(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzDecodeTideline: never panics, fails only with a documented error, and
// what it accepts re-encodes to the same bytes. `go test` runs the seeds.
func FuzzDecodeTideline(f *testing.F) {
	for _, g := range golden {
		b := unhex(f, g.hex)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{})
	f.Add([]byte{frame.TidelineTag})
	f.Add([]byte{frame.TidelineTag, 0xFF})
	f.Add(make([]byte, frame.TidelineLocLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := frame.DecodeTideline(b)
		if err != nil {
			for _, known := range []error{frame.ErrShort, frame.ErrLong, frame.ErrMagic, frame.ErrVersion, frame.ErrFlags, frame.ErrCRC} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("undocumented error: %v", err)
		}
		if enc := frame.AppendTideline(nil, r); string(enc) != string(b) {
			t.Fatalf("decoded %+v from % X, re-encoded % X", r, b, enc)
		}
	})
}
