// Package dirlock keeps two chronicle processes off one data directory: an exclusive
// flock(2) on DIR/chronicle.lock, holding the owner's pid, kept for as long as the
// process uses the directory. The kernel drops the lock when the descriptor closes,
// including when the process dies, so a crash never leaves the directory locked; the
// file itself stays (deleting it would let a third process lock a new file while the
// second still holds the old one).
//
// The stores keep their own locks as well (Pebble's and the Raft log's LOCK files);
// this one is taken first so that the message names the directory and the process
// holding it instead of "resource temporarily unavailable".
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FileName is the lock file inside a data directory.
const FileName = "chronicle.lock"

// InUseError reports a data directory another process holds.
type InUseError struct {
	Dir string
	// PID is the holder's process id, 0 when it could not be read (it had just taken
	// the lock and not yet written its pid).
	PID int
}

func (e *InUseError) Error() string {
	holder := "another chronicle process"
	if e.PID > 0 {
		holder += fmt.Sprintf(" (pid %d)", e.PID)
	}
	return fmt.Sprintf("data directory %s is in use by %s: stop it first, or give this one another --data-dir", e.Dir, holder)
}

// Lock is a held data directory.
type Lock struct {
	f *os.File
}

// Acquire creates dir if needed and locks it for this process, or fails with an
// *InUseError when another process (or another Lock in this one) holds it.
func Acquire(dir string) (*Lock, error) {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		if errors.Is(err, errLocked) {
			return nil, &InUseError{Dir: dir, PID: readPID(path)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Ours: say whose it is.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release unlocks the directory. Safe on nil and more than once.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
