package poll_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/internal/poll"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	took := poll.Until(t, 5*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 || took <= 0 || took > 5*time.Second {
		t.Fatalf("%d calls, took %v; want 3 calls", calls, took)
	}
}

// fatalTB records the message of the Fatalf that stops the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestUntilFailsAfterTheDeadline(t *testing.T) {
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		poll.Until(tb, 50*time.Millisecond, "never", func() bool { return false })
		t.Error("Until returned on a condition that never held")
	}()
	<-done
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("failed after %v, before the deadline", took)
	}
	if want := "timed out after 50ms waiting for never"; !strings.Contains(tb.msg, want) {
		t.Errorf("message %q, want %q", tb.msg, want)
	}
}

func TestWithin(t *testing.T) {
	if !poll.Within(time.Second, func() bool { return true }) {
		t.Error("Within false on a condition that holds")
	}
	if poll.Within(20*time.Millisecond, func() bool { return false }) {
		t.Error("Within true on a condition that never holds")
	}
}
