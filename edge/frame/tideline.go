package frame

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Tideline frame v1 constants; the layout is in the package doc.
const (
	TidelineTag    = 0xD1 // magic nibble 0xD, version 1
	TidelineLen    = 28   // bytes, without location
	TidelineLocLen = 36   // bytes, with location

	tidelineMagic = 0xD0
	flagUnixTime  = 1 << 0
	flagLocation  = 1 << 1

	mgPerG      = 1000
	decidegPerS = 10
	e7PerDegree = 1e7
)

// DecodeTideline decodes a Tideline frame v1. Errors: ErrShort, ErrLong,
// ErrMagic (first byte is not 0xD_), ErrVersion (not v1), ErrFlags (a
// reserved flag is set) and ErrCRC.
func DecodeTideline(b []byte) (Reading, error) {
	if len(b) == 0 {
		return Reading{}, fmt.Errorf("%w: tideline: empty", ErrShort)
	}
	if b[0]&0xF0 != tidelineMagic {
		return Reading{}, fmt.Errorf("%w: tag 0x%02x", ErrMagic, b[0])
	}
	if v := b[0] & 0x0F; v != TidelineTag&0x0F {
		return Reading{}, fmt.Errorf("%w: tideline v%d, want v%d", ErrVersion, v, TidelineTag&0x0F)
	}
	if len(b) < 2 {
		return Reading{}, fmt.Errorf("%w: tideline: got %d bytes, want at least %d", ErrShort, len(b), TidelineLen)
	}
	flags := b[1]
	if reserved := flags &^ (flagUnixTime | flagLocation); reserved != 0 {
		return Reading{}, fmt.Errorf("%w: tideline flags 0x%02x", ErrFlags, flags)
	}
	want := TidelineLen
	if flags&flagLocation != 0 {
		want = TidelineLocLen
	}
	switch {
	case len(b) < want:
		return Reading{}, fmt.Errorf("%w: tideline: got %d bytes, want %d", ErrShort, len(b), want)
	case len(b) > want:
		return Reading{}, fmt.Errorf("%w: tideline: got %d bytes, want %d", ErrLong, len(b), want)
	}
	if got, sum := binary.LittleEndian.Uint16(b[want-2:]), crc16(b[:want-2]); got != sum {
		return Reading{}, fmt.Errorf("%w: tideline: carries 0x%04x, computed 0x%04x", ErrCRC, got, sum)
	}

	r := Reading{
		Seq:    binary.LittleEndian.Uint32(b[2:]),
		HasSeq: true,
		Clock:  ClockBoot,
		Micros: binary.LittleEndian.Uint64(b[6:]),
	}
	if flags&flagUnixTime != 0 {
		r.Clock = ClockUnix
	}
	for i := range 3 {
		r.Accel[i] = float64(i16(b[14+2*i:])) / mgPerG
		r.Gyro[i] = float64(i16(b[20+2*i:])) / decidegPerS
	}
	if flags&flagLocation != 0 {
		r.HasLocation = true
		r.Lat = float64(int32(binary.LittleEndian.Uint32(b[26:]))) / e7PerDegree
		r.Lng = float64(int32(binary.LittleEndian.Uint32(b[30:]))) / e7PerDegree
	}
	return r, nil
}

// AppendTideline appends r encoded as a Tideline frame v1 to dst: the
// reference encoder for device firmware and simulators. Values are rounded to
// the frame's resolution and saturate at its range (NaN encodes as 0). Clock
// ClockUnix sets the Unix-time flag; any other clock encodes as time since
// boot. Mag is not carried.
func AppendTideline(dst []byte, r Reading) []byte {
	start := len(dst)
	var flags byte
	if r.Clock == ClockUnix {
		flags |= flagUnixTime
	}
	if r.HasLocation {
		flags |= flagLocation
	}
	dst = append(dst, TidelineTag, flags)
	dst = binary.LittleEndian.AppendUint32(dst, r.Seq)
	dst = binary.LittleEndian.AppendUint64(dst, r.Micros)
	for _, v := range r.Accel {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(quantize(v*mgPerG, math.MinInt16, math.MaxInt16)))
	}
	for _, v := range r.Gyro {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(quantize(v*decidegPerS, math.MinInt16, math.MaxInt16)))
	}
	if r.HasLocation {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(quantize(r.Lat*e7PerDegree, math.MinInt32, math.MaxInt32)))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(quantize(r.Lng*e7PerDegree, math.MinInt32, math.MaxInt32)))
	}
	return binary.LittleEndian.AppendUint16(dst, crc16(dst[start:]))
}

func quantize(v, lo, hi float64) int32 {
	switch v = math.Round(v); {
	case math.IsNaN(v):
		return 0
	case v < lo:
		return int32(lo)
	case v > hi:
		return int32(hi)
	}
	return int32(v)
}

// crc16 is CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no
// final XOR. Bitwise: a frame is 34 bytes at most.
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
