//go:build !unix

package dirlock

import "os"

// tryLock is a no-op where flock(2) does not exist: Tideline's targets
// (Linux servers, Linux edge devices, macOS for development) all have it.
func tryLock(*os.File) (held bool, err error) { return false, nil }
