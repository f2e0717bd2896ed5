package enginerun_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tideline/tideline/internal/enginerun"
)

func TestRun(t *testing.T) {
	p := enginerun.NewPool(2, 5*time.Second)
	ctx := context.Background()
	out, err := p.Run(ctx, enginerun.Cmd{Name: "sh", Args: []string{"-c", "tr a-z A-Z; echo $X"}, Stdin: []byte("hi\n"), Env: []string{"X=env"}})
	if err != nil || string(out) != "HI\nenv\n" {
		t.Fatalf("stdout %q, %v", out, err)
	}
	_, err = p.Run(ctx, enginerun.Cmd{Name: "no-such-engine-here"})
	if !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("missing program: %v", err)
	}
	_, err = p.Run(ctx, enginerun.Cmd{Name: "sh", Args: []string{"-c", "echo bad input >&2; exit 3"}})
	var e *enginerun.Error
	if !errors.As(err, &e) || !strings.Contains(e.Stderr, "bad input") {
		t.Fatalf("failing program: %v", err)
	}
	_, err = enginerun.NewPool(1, 100*time.Millisecond).Run(ctx, enginerun.Cmd{Name: "sleep", Args: []string{"5"}})
	if !errors.Is(err, enginerun.ErrTimeout) {
		t.Fatalf("slow program: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err = p.Run(cctx, enginerun.Cmd{Name: "true"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}

// Four runs of 0.3 s through two slots take two rounds: at least 0.6 s.
func TestPoolBoundsConcurrentRuns(t *testing.T) {
	p := enginerun.NewPool(2, 0)
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Run(context.Background(), enginerun.Cmd{Name: "sleep", Args: []string{"0.3"}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("4 runs of 0.3 s through 2 slots took %v", d)
	}
}
