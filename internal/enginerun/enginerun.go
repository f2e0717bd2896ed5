// Package enginerun runs engine programs (tesseract, espeak-ng,
// pocketsphinx) as child processes for the adapters that wrap them: at
// most n at once, each with a time limit, input on stdin, output from
// stdout, and the tail of stderr in the error. It imports only the
// standard library; each adapter turns its errors into the media ports'
// (a missing program is exec.ErrNotFound, a run past its time limit
// ErrTimeout).
package enginerun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// ErrTimeout says a run took longer than the pool's time limit.
var ErrTimeout = errors.New("engine timed out")

// Pool bounds how many runs go at once and how long each may take. Safe
// for concurrent use.
type Pool struct {
	slots   chan struct{}
	timeout time.Duration
}

// NewPool returns a pool of n slots (n < 1: the number of CPUs) whose
// runs each last at most timeout (0: no limit but the caller's context).
func NewPool(n int, timeout time.Duration) *Pool {
	if n < 1 {
		n = runtime.NumCPU()
	}
	return &Pool{slots: make(chan struct{}, n), timeout: timeout}
}

// Cmd is one run of a program.
type Cmd struct {
	Name  string
	Args  []string
	Stdin []byte
	Env   []string // added to the process's environment
	Dir   string
}

// Error is a run that started and failed: its exit and stderr's tail.
type Error struct {
	Name   string
	Err    error
	Stderr string
}

func (e *Error) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("%s: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Name, e.Err, e.Stderr)
}

func (e *Error) Unwrap() error { return e.Err }

const stderrTail = 2000

// Run waits for a slot (or ctx), runs c and returns its stdout. A missing
// program fails with an error wrapping exec.ErrNotFound, ctx's end with
// one wrapping ctx.Err(), the time limit with ErrTimeout, any other
// failure with an *Error.
func (p *Pool) Run(ctx context.Context, c Cmd) ([]byte, error) {
	if _, err := exec.LookPath(c.Name); err != nil {
		return nil, err
	}
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for %s: %w", c.Name, ctx.Err())
	}
	runCtx := ctx
	if p.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(runCtx, c.Name, c.Args...)
	cmd.Stdin = bytes.NewReader(c.Stdin)
	cmd.Dir = c.Dir
	// After the engine exits, its output is still copied from the pipes:
	// on a loaded machine (CI under -race) that has taken over a second.
	// WaitDelay only bounds a stray child that holds the pipes open.
	cmd.WaitDelay = 10 * time.Second
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	switch {
	case err == nil:
		return stdout.Bytes(), nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: %w", c.Name, ctx.Err())
	case runCtx.Err() != nil:
		return nil, fmt.Errorf("%s after %v: %w", c.Name, p.timeout, ErrTimeout)
	}
	tail := strings.TrimSpace(stderr.String())
	if len(tail) > stderrTail {
		tail = "..." + tail[len(tail)-stderrTail:]
	}
	return nil, &Error{Name: c.Name, Err: err, Stderr: tail}
}
