//go:build !unix

package dirlock

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// lockFile is a no-op where flock(2) does not exist: the stores' own LOCK files still
// keep a second process out, with a less helpful message.
func lockFile(*os.File) error { return nil }
