// Package bytesize reads sizes as operators write them in flags: "256MiB", "1GiB",
// "500MB", "1048576".
package bytesize

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// units in the order they are tried: the longest suffixes first, so that "MiB" is not
// read as "B".
var units = [...]struct {
	suffix string
	mult   uint64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}

// ErrSize is returned for text that is not a size.
var ErrSize = errors.New("want a size (256MiB, 1GiB, 500MB, bytes)")

// Parse reads a non-negative size of at most math.MaxInt64 bytes. A fraction is allowed
// with a unit ("1.5GiB") and rounded down to whole bytes.
func Parse(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	num, mult := s, uint64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	// Whole numbers exactly (a float64 rounds above 2^53), fractions through a float.
	if n, err := strconv.ParseUint(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, ErrSize
		}
		return n * mult, nil
	}
	v, err := strconv.ParseFloat(num, 64)
	// float64(math.MaxInt64) rounds up to 2^63, so the bound is >=.
	if err != nil || math.IsNaN(v) || v < 0 || v*float64(mult) >= math.MaxInt64 {
		return 0, ErrSize
	}
	return uint64(v * float64(mult)), nil
}
