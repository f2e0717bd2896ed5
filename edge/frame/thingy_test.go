package frame_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tideline/tideline/edge/frame"
)

func thingyRaw(v [9]int16) []byte {
	b := make([]byte, 0, frame.ThingyRawLen)
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, uint16(x))
	}
	return b
}

func TestDecodeThingyRaw(t *testing.T) {
	tests := []struct {
		name                string
		raw                 [9]int16
		accel, gyro, magnet [3]float64
	}{
		{
			name:   "at_rest_face_up_reads_one_g_on_z",
			raw:    [9]int16{0, 0, 1024, 0, 0, 0, 320, -160, 16},
			accel:  [3]float64{0, 0, 1},
			magnet: [3]float64{20, -10, 1},
		},
		{
			name:  "fractions_keep_their_resolution",
			raw:   [9]int16{-512, 1, 2048, 3200, -16, 1, 0, 0, 0},
			accel: [3]float64{-0.5, 1.0 / 1024, 2},
			gyro:  [3]float64{100, -0.5, 1.0 / 32},
		},
		{
			name:   "full_scale",
			raw:    [9]int16{-32768, 32767, 0, -32768, 32767, 0, -32768, 32767, 0},
			accel:  [3]float64{-32, 32767.0 / 1024, 0},
			gyro:   [3]float64{-1024, 32767.0 / 32, 0},
			magnet: [3]float64{-2048, 32767.0 / 16, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := frame.DecodeThingyRaw(thingyRaw(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if r.Accel != tt.accel || r.Gyro != tt.gyro || r.Mag != tt.magnet {
				t.Fatalf("got accel %v gyro %v mag %v, want %v %v %v", r.Accel, r.Gyro, r.Mag, tt.accel, tt.gyro, tt.magnet)
			}
			if r.HasSeq || r.Clock != frame.ClockNone || !r.HasMag {
				t.Fatalf("got HasSeq %v Clock %v HasMag %v: a Thingy frame has no sequence or time, and has a compass", r.HasSeq, r.Clock, r.HasMag)
			}
		})
	}
}

func TestDecodeThingyRawRejectsWrongLength(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want error
	}{
		{"empty", 0, frame.ErrShort},
		{"one_short", 17, frame.ErrShort},
		{"one_long", 19, frame.ErrLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := frame.DecodeThingyRaw(make([]byte, tt.n)); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzDecodeThingyRaw(f *testing.F) {
	f.Add(thingyRaw([9]int16{0, 0, 1024, 0, 0, 0, 0, 0, 0}))
	f.Add(thingyRaw([9]int16{-32768, 32767, -1, 1, 2, 3, 4, 5, 6}))
	f.Add([]byte{})
	f.Add(make([]byte, 17))
	f.Add(make([]byte, 19))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := frame.DecodeThingyRaw(b)
		if err != nil {
			if !errors.Is(err, frame.ErrShort) && !errors.Is(err, frame.ErrLong) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(b) != frame.ThingyRawLen {
			t.Fatalf("decoded %d bytes", len(b))
		}
		for i := range 3 {
			if r.Accel[i] < -32 || r.Accel[i] >= 32 || r.Gyro[i] < -1024 || r.Gyro[i] >= 1024 {
				t.Fatalf("out of range: %+v", r)
			}
		}
	})
}
