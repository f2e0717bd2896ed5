//go:build !linux

package natstest

import "testing"

// SmallDisk skips the test: it mounts a tmpfs, which needs Linux.
func SmallDisk(tb testing.TB, size int64) string {
	tb.Helper()
	tb.Skip("skipping: mounting a small tmpfs to fill needs Linux and root")
	return ""
}

// FillDisk is not reached: SmallDisk skipped the test.
func FillDisk(tb testing.TB, path string) int64 {
	tb.Helper()
	tb.Skip("skipping: needs SmallDisk")
	return 0
}
