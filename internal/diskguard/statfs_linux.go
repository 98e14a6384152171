//go:build linux

package diskguard

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Supported reports whether this platform can measure free space.
const Supported = true

// statfs measures the filesystem holding dir: bytes available to the process (Bavail,
// what an unprivileged writer may still use) and its size.
func statfs(dir string) (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bs := uint64(st.Bsize)
	return Usage{Free: st.Bavail * bs, Total: st.Blocks * bs}, nil
}
