package jetstream

import (
	"testing"
	"time"
)

// SetSnapshotStall sets how long an object read may go without data,
// and the pause between restore's tries, for a test, and returns the old
// values.
func SetSnapshotStall(stall, pause time.Duration) (oldStall, oldPause time.Duration) {
	oldStall, oldPause = snapshotStall, restorePause
	snapshotStall, restorePause = stall, pause
	return oldStall, oldPause
}

// ReadBlocks reads s's stream from its files (Config.BlockDir) from the
// start through upTo, and returns how many messages it read and the last
// sequence.
func (s *Store) ReadBlocks(upTo uint64) (n int, last uint64, err error) {
	last, err = readBlocks(s.cfg.BlockDir, s.cfg.Stream, 0, upTo, func(blockMsg) error { n++; return nil })
	return n, last, err
}

// SetFileDeliverPause makes the delivering goroutine of a replay pass that
// reads the stream's files call pause before each batch, until the test
// ends.
func SetFileDeliverPause(tb testing.TB, pause func()) {
	fileDeliverPause = pause
	tb.Cleanup(func() { fileDeliverPause = nil })
}
