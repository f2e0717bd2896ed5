package jetstream

import "time"

// SetSnapshotStall sets how long an object read may go without data,
// and the pause between restore's tries, for a test, and returns the old
// values.
func SetSnapshotStall(stall, pause time.Duration) (oldStall, oldPause time.Duration) {
	oldStall, oldPause = snapshotStall, restorePause
	snapshotStall, restorePause = stall, pause
	return oldStall, oldPause
}
