// Package dirlock makes a data directory single-owner: the process that
// serves from it holds an OS file lock on DIR/LOCK for its whole life, with
// its PID and address written inside, and a second process that wants the
// same directory is refused at once with the holder named.
//
// The lock is flock(2) on an open file description: the kernel drops it
// when the holder exits, however it exits (kill -9 included), so a stale
// LOCK file never blocks a restart. Two opens in one process are two
// descriptions, so the lock also excludes a second owner in-process.
//
// Only owners lock; a tool that merely adds a file to the directory (a
// device's credentials, a NATS user) does not, and works while the owner
// runs.
package dirlock

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// FileName is the lock file inside the directory.
const FileName = "LOCK"

// Holder describes the process holding a lock, as written in the file.
type Holder struct {
	PID     int       `json:"pid"`
	Program string    `json:"program"`
	Addr    string    `json:"addr,omitempty"` // where to reach it (the API, or the device it runs)
	Started time.Time `json:"started"`
}

func (h Holder) String() string {
	s := fmt.Sprintf("pid %d", h.PID)
	if h.Program != "" {
		s += " (" + h.Program + ")"
	}
	if h.Addr != "" {
		s += " at " + h.Addr
	}
	return s
}

// HeldError is returned by Acquire when another owner holds the lock.
type HeldError struct {
	Dir    string
	Holder Holder // zero if the file could not be read
}

func (e *HeldError) Error() string {
	if e.Holder.PID == 0 {
		return fmt.Sprintf("data dir %s is in use by another process (%s is locked)", e.Dir, filepath.Join(e.Dir, FileName))
	}
	return fmt.Sprintf("data dir %s is in use by %s; stop it first or use another --data", e.Dir, e.Holder)
}

// ErrHeld matches a *HeldError with errors.Is.
var ErrHeld = errors.New("data dir in use")

// Is reports whether target is ErrHeld.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// Owner returns the holder DIR/LOCK names when that process is still
// alive: an owner running or starting up. It only reads the file and
// never takes the lock, so it cannot make a starting owner fail; the
// price is that a stale file naming a recycled PID reads as alive.
func Owner(dir string) (Holder, bool) {
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return Holder{}, false
	}
	var h Holder
	if json.Unmarshal(b, &h) != nil || h.PID <= 0 {
		return Holder{}, false
	}
	return h, alive(h.PID)
}

// Lock is a held directory lock. Release (or the process's exit) frees it.
type Lock struct {
	f      *os.File
	holder Holder
}

// Acquire creates dir if needed and locks it for this process, writing
// holder (PID and start time filled in if zero) into DIR/LOCK. If another
// process or another Lock in this one holds it, it returns a *HeldError
// naming the holder, without waiting.
func Acquire(dir string, holder Holder) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	if held {
		he := &HeldError{Dir: dir}
		if b, err := os.ReadFile(path); err == nil {
			_ = json.Unmarshal(b, &he.Holder) // a torn or foreign file: the holder stays unnamed
		}
		f.Close()
		return nil, he
	}
	if holder.PID == 0 {
		holder.PID = os.Getpid()
	}
	if holder.Started.IsZero() {
		holder.Started = time.Now().UTC()
	}
	l := &Lock{f: f}
	if err := l.Update(holder); err != nil {
		l.Release()
		return nil, err
	}
	return l, nil
}

// Holder returns what the lock file says about this process.
func (l *Lock) Holder() Holder { return l.holder }

// Update rewrites the holder description (for instance once the API's
// port is known). The lock stays held throughout.
func (l *Lock) Update(h Holder) error {
	b, _ := json.Marshal(h)
	b = append(b, '\n')
	// Write over the old text, then cut what is left of it: a reader sees
	// the old or the new description, or at worst one it cannot parse.
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("data dir lock: %w", err)
	}
	if err := l.f.Truncate(int64(len(b))); err != nil {
		return fmt.Errorf("data dir lock: %w", err)
	}
	l.holder = h
	return nil
}

// Release frees the lock. The LOCK file stays (removing it would race
// with a new owner locking it); it is harmless once unlocked. Releasing
// twice is a no-op.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	return err
}
