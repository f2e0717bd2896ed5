//go:build !unix

package dirlock

import "os"

// tryLock is a no-op where flock(2) does not exist: Tideline's targets
// (Linux servers, Linux edge devices, macOS for development) all have it.
func tryLock(*os.File) (held bool, err error) { return false, nil }

// alive cannot tell here; callers only use it to bound a wait.
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}
