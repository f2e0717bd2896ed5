package natstest

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"testing"
)

// SmallDisk mounts a tmpfs of size bytes on a new temp dir and returns the
// dir; it is unmounted at cleanup, after every cleanup registered later
// (so after the servers on it shut down). The test is skipped when it
// cannot mount: not root, or mounting not permitted (a container).
func SmallDisk(tb testing.TB, size int64) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping: mounting a small tmpfs to fill needs root")
	}
	dir := tb.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+strconv.FormatInt(size, 10)); err != nil {
		tb.Skipf("skipping: cannot mount a tmpfs on %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			tb.Errorf("unmount %s: %v (detaching it)", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// FillDisk writes path until the filesystem holding it has no space left,
// and returns how many bytes it wrote. Removing path frees them.
func FillDisk(tb testing.TB, path string) int64 {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatalf("fill disk: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := f.Write(buf)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			tb.Fatalf("fill disk: %v", err)
		}
	}
	// What is left is under a page; a byte at a time takes the rest.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
		n++
	}
	return n
}
