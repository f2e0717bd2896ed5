package frame

import "testing"

func TestCRC16IsCCITTFalse(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x29B1 {
		t.Fatalf("crc16(123456789) = 0x%04X, want the CRC-16/CCITT-FALSE check value 0x29B1", got)
	}
}
