// Package frame decodes the BLE notification payloads of the IMUs Tideline
// reads, and puts frames that carry a sequence number back in order.
//
// Decoders are pure: bytes in, a [Reading] or an error out. They never panic,
// whatever the input, and return one of the sentinel errors below (wrapped
// with detail) for short, long or corrupt frames.
//
// # Tideline frame, version 1
//
// Our own characteristic carries one sample per notification, little-endian:
//
//	| offset   | size | field       | type    | meaning                                                                          |
//	|----------|------|-------------|---------|----------------------------------------------------------------------------------|
//	| 0        | 1    | tag         | u8      | 0xD1: high nibble 0xD marks a Tideline frame, low nibble is the version (1)      |
//	| 1        | 1    | flags       | u8      | bit 0: time is Unix µs, else µs since boot; bit 1: location follows; bits 2-7: 0 |
//	| 2        | 4    | seq         | u32     | +1 per frame, wraps at 2^32, restarts at 0 when the device boots                 |
//	| 6        | 8    | time        | u64     | when the sample was taken, µs (clock chosen by flags bit 0)                      |
//	| 14       | 6    | accel x,y,z | 3 × i16 | specific force, mg (1/1000 g): ±32.767 g                                         |
//	| 20       | 6    | gyro x,y,z  | 3 × i16 | angular rate, 0.1 °/s: ±3276.7 °/s                                               |
//	| 26       | 8    | lat, lng    | 2 × i32 | only if flags bit 1: degrees × 10^7 (about 1 cm)                                 |
//	| 26 or 34 | 2    | crc         | u16     | CRC-16/CCITT-FALSE of all preceding bytes                                        |
//
// A frame is 28 bytes, or 36 with a location. The CRC is the one nRF5 SDK
// (crc16_compute) and Zephyr (crc16_itu_t, seed 0xFFFF) ship: polynomial
// 0x1021, initial value 0xFFFF, no reflection, no final XOR; "123456789"
// gives 0x29B1. The radio has its own CRC; ours catches firmware buffer bugs
// and bytes from a characteristic that is not ours, for two bytes a frame.
//
// The default ATT MTU of 23 leaves 20 bytes per notification, too few: the
// device must negotiate an MTU of at least 31 (39 with location), which nRF5
// SDK, Zephyr and BlueZ all do. A truncated notification fails with
// [ErrShort].
//
// Device time is µs since boot unless the device knows the wall clock: an
// IMU without a real-time clock need not be set, and the receiver anchors its
// clock to its own on each connection. The sequence number, not the time,
// orders frames: BlueZ delivers notifications over D-Bus, and
// tinygo.org/x/bluetooth can hand them over out of order under load.
//
// New fields mean a new version; v1 decoders reject reserved flags.
//
// # Nordic Thingy:52 raw motion
//
// Motion service EF680400-9B35-4933-9B10-52FFA9740042, raw data
// characteristic EF680406-9B35-4933-9B10-52FFA9740042, 18 bytes:
//
//	| offset | field           | type    | format | unit |
//	|--------|-----------------|---------|--------|------|
//	| 0      | accel x,y,z     | 3 × i16 | Q6.10  | g    |
//	| 6      | gyro x,y,z      | 3 × i16 | Q11.5  | °/s  |
//	| 12     | compass x,y,z   | 3 × i16 | Q12.4  | µT   |
//
// Source: Nordic-Thingy52-FW, source/modules/m_motion.c,
// drv_motion_evt_handler (DRV_MOTION_EVT_RAW): the InvenSense MPL returns
// Q16.16 values in g, °/s and µT, which the firmware shifts right by
// RAW_Q_FORMAT_{ACC,GYR,CMP}_INTEGER_BITS = 6, 11, 12, leaving 10, 5 and 4
// fraction bits. So raw/1024 is g, raw/32 is °/s and raw/16 is µT. Nordic's
// Android Thingy app also divides the accelerometer by 1<<10, and a Thingy
// at rest on a table was reported reading z = 0x03F6, +0.99 g
// (devzone.nordicsemi.com question 47415): the firmware's orientation matrix
// makes the accelerometer read specific force, like [Reading.Accel]. Nordic's
// Thingy JavaScript library divides by 64, 2048 and 4096 instead, which would
// read 1 g at rest as 16 g; we follow the firmware. The frame has no sequence
// number and no time: the receiver numbers and stamps frames as they arrive.
package frame
