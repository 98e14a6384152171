package chronicle

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// The binary layouts below are written by hand, field by field, so that what is hashed
// and what is stored depends on this repository alone, never on how a library happens to
// encode a struct. Every integer is fixed-width big-endian; every string is a 4-byte
// big-endian length followed by its bytes; times are Unix nanoseconds as a signed
// 64-bit integer. Changing any of this changes every hash: see testdata/golden.

// appendU8, appendU32, ... append one field.
func appendU8(b []byte, v uint8) []byte   { return append(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func appendI64(b []byte, v int64) []byte  { return binary.BigEndian.AppendUint64(b, uint64(v)) }

func appendStr(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}

// appendTime writes t as Unix nanoseconds. Times outside what int64 nanoseconds hold
// (before 1678 or after 2262) are clamped; commit times come from a clock and are never
// near either end.
func appendTime(b []byte, t time.Time) []byte { return appendI64(b, StoredNanos(t)) }

// StoredNanos is t as the binary layouts store it: Unix nanoseconds, with the zero time
// (year 1) kept distinguishable and times outside what int64 nanoseconds hold clamped.
// A store that keeps times in memory as these integers (raftstore's account table) gets
// back exactly what decoding the layout gives.
func StoredNanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return math.MinInt64
	case t.Before(time.Unix(0, math.MinInt64+1)):
		return math.MinInt64 + 1
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// TimeFromStoredNanos is the time StoredNanos stored as n, in UTC.
func TimeFromStoredNanos(n int64) time.Time {
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// decoder reads fields in order and remembers the first error, so a layout reads as a
// straight list of fields with one check at the end.
type decoder struct {
	b    []byte
	off  int
	err  error
	what string // the record being decoded, for error messages
}

// maxDecodedString bounds one string field: nothing the ledger writes comes near it, and
// a damaged length must not allocate gigabytes.
const maxDecodedString = 1 << 20

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("decode %s at byte %d: %s", d.what, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail("need %d bytes, %d left", n, len(d.b)-d.off)
		return nil
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p
}

func (d *decoder) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) i64() int64 { return int64(d.u64()) }

func (d *decoder) time() time.Time { return TimeFromStoredNanos(d.i64()) }

func (d *decoder) str() string {
	n := d.u32()
	if n > maxDecodedString {
		d.fail("string of %d bytes exceeds %d", n, maxDecodedString)
		return ""
	}
	return string(d.take(int(n)))
}

// version reads a leading format byte and refuses any other than want.
func (d *decoder) version(want uint8) {
	if v := d.u8(); d.err == nil && v != want {
		d.fail("format version %d, this build reads version %d", v, want)
	}
}

// done reports the first error, or trailing bytes (a layout this build does not know).
func (d *decoder) done() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d unexpected trailing bytes", len(d.b)-d.off)
	}
	return d.err
}
