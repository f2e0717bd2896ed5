package frame

import "errors"

// Clock says what a [Reading]'s Micros count from.
type Clock uint8

const (
	// ClockNone: the frame carries no time; the receiver stamps its arrival.
	ClockNone Clock = iota
	// ClockBoot: µs since the device booted.
	ClockBoot
	// ClockUnix: µs since the Unix epoch, from a device that knows the wall clock.
	ClockUnix
)

// Reading is one decoded IMU sample, in physical units.
type Reading struct {
	Seq    uint32 // device frame counter; valid only if HasSeq
	HasSeq bool
	Clock  Clock
	Micros uint64 // device time; meaning given by Clock

	// Accel is the specific force in g along the device's axes: (0, 0, 1)
	// for a device lying still with +z up, as safety.Sample has it.
	Accel [3]float64
	Gyro  [3]float64 // angular rate, °/s

	Mag    [3]float64 // µT; valid only if HasMag
	HasMag bool

	Lat, Lng    float64 // degrees; valid only if HasLocation
	HasLocation bool
}

// Errors the decoders return, wrapped with the detail of what was wrong.
var (
	ErrShort   = errors.New("frame too short")
	ErrLong    = errors.New("frame too long")
	ErrMagic   = errors.New("not a Tideline frame")
	ErrVersion = errors.New("unsupported frame version")
	ErrFlags   = errors.New("reserved flag set")
	ErrCRC     = errors.New("frame checksum mismatch")
)
