package ble

import (
	"testing"
	"time"

	"github.com/tideline/tideline/edge/frame"
)

func TestDeviceClock(t *testing.T) {
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return at.Add(time.Duration(n) * time.Millisecond) }
	boot := func(us uint64) frame.Reading { return frame.Reading{Clock: frame.ClockBoot, Micros: us} }
	type frameAt struct {
		r       frame.Reading
		arrived time.Time
		want    time.Time
	}
	tests := []struct {
		name   string
		frames []frameAt
	}{
		{"boot_time_keeps_the_device_spacing_whatever_the_arrival", []frameAt{
			{boot(5_000_000), ms(30), ms(30)},
			{boot(5_010_000), ms(31), ms(40)}, // arrived in a burst
			{boot(5_020_000), ms(75), ms(50)}, // delayed
		}},
		{"device_restart_reanchors", []frameAt{
			{boot(5_000_000), ms(0), ms(0)},
			{boot(1_000), ms(500), ms(500)},
			{boot(11_000), ms(505), ms(510)},
		}},
		{"unix_time_is_the_device's", []frameAt{
			{frame.Reading{Clock: frame.ClockUnix, Micros: uint64(at.UnixMicro())}, ms(20), at},
		}},
		{"no_time_is_arrival_and_strictly_increases", []frameAt{
			{frame.Reading{}, ms(1), ms(1)},
			{frame.Reading{}, ms(1), ms(1).Add(time.Microsecond)},
			{frame.Reading{}, ms(0), ms(1).Add(2 * time.Microsecond)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c deviceClock
			for i, f := range tt.frames {
				if got := c.wall(f.r, f.arrived); !got.Equal(f.want) {
					t.Errorf("frame %d: %v, want %v", i, got.Sub(at), f.want.Sub(at))
				}
			}
		})
	}
}
