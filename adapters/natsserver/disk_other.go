//go:build !(linux || darwin || freebsd)

package natsserver

// diskSpace cannot read free space here: the guard then acts only on
// writes that failed for lack of space.
func diskSpace(string) (free, total uint64, ok bool) { return 0, 0, false }
