package projtest

import (
	"syscall"
	"testing"
	"time"
)

// ThreadCPU returns the CPU time the calling OS thread has used.
func ThreadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
