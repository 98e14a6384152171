//go:build !linux

package diskguard

import "errors"

// Supported reports whether this platform can measure free space: off outside Linux,
// where the guard never refuses a write.
const Supported = false

func statfs(string) (Usage, error) {
	return Usage{}, errors.New("diskguard: free space is not measured on this platform")
}
