package frame

import (
	"encoding/binary"
	"fmt"
)

// ThingyRawLen is the size of a Thingy:52 raw motion notification.
const ThingyRawLen = 18

// Fraction bits of the Thingy:52 raw motion fields; see the package doc.
const (
	thingyAccelScale = 1 << 10 // Q6.10, g
	thingyGyroScale  = 1 << 5  // Q11.5, °/s
	thingyMagScale   = 1 << 4  // Q12.4, µT
)

// DecodeThingyRaw decodes a Nordic Thingy:52 raw motion notification. The
// Reading has no sequence number and ClockNone: the caller numbers and
// stamps it. It returns ErrShort or ErrLong unless b is 18 bytes.
func DecodeThingyRaw(b []byte) (Reading, error) {
	switch {
	case len(b) < ThingyRawLen:
		return Reading{}, fmt.Errorf("%w: thingy raw motion: got %d bytes, want %d", ErrShort, len(b), ThingyRawLen)
	case len(b) > ThingyRawLen:
		return Reading{}, fmt.Errorf("%w: thingy raw motion: got %d bytes, want %d", ErrLong, len(b), ThingyRawLen)
	}
	r := Reading{HasMag: true}
	for i := range 3 {
		r.Accel[i] = float64(i16(b[2*i:])) / thingyAccelScale
		r.Gyro[i] = float64(i16(b[6+2*i:])) / thingyGyroScale
		r.Mag[i] = float64(i16(b[12+2*i:])) / thingyMagScale
	}
	return r, nil
}

func i16(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) }
