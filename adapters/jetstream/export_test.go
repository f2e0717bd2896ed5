package jetstream

import "time"

// SetSnapshotStall sets how long an object read may go without data, for
// a test, and returns the old value.
func SetSnapshotStall(d time.Duration) time.Duration {
	old := snapshotStall
	snapshotStall = d
	return old
}
