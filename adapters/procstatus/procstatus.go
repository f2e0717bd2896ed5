// Package procstatus reads a process's memory figures from Linux's
// /proc/PID/status, for the benchmarks that report resident memory.
package procstatus

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Self is the pid Bytes reads for the calling process.
const Self = 0

// Bytes returns field (VmRSS, VmHWM, ...) of process pid's status, in
// bytes; pid Self reads the caller's. It fails where there is no /proc
// (not Linux), the process is gone, or it has no such field.
func Bytes(pid int, field string) (int64, error) {
	path := "/proc/self/status"
	if pid != Self {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, field, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}
