// Package pebbleutil holds the small Pebble helpers every Pebble-backed package needs:
// a slog adapter for Pebble's logger, key-range bounds, copying gets and big-endian
// integers.
package pebbleutil

import (
	"context"
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// Logger routes Pebble's messages to l, tagged with component. Info is demoted to Debug
// because Pebble narrates every flush and compaction.
func Logger(l *slog.Logger, component string) pebble.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return logger{l: l, component: component}
}

type logger struct {
	l         *slog.Logger
	component string
}

func (p logger) Infof(format string, args ...any) {
	if !p.l.Enabled(context.Background(), slog.LevelDebug) {
		return // Skip formatting messages nobody will see.
	}
	p.l.Debug(fmt.Sprintf(format, args...), "component", p.component)
}

func (p logger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", p.component)
}

// Fatalf is called when Pebble cannot continue; panic rather than os.Exit so deferred
// cleanup runs and the caller's process policy decides.
func (p logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", p.component, "fatal", true)
	panic(p.component + ": pebble fatal: " + msg)
}

// Events is an event listener for a store whose reads report damage as errors: Pebble's
// default for a corrupt block is Logger.Fatalf, which would panic the process on the
// request or the apply that read it. Here damage is logged (with the file) and the read
// fails with an error wrapping pebble.ErrCorruption, which the caller turns into a
// refusal.
func Events(l *slog.Logger, component string) *pebble.EventListener {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &pebble.EventListener{DataCorruption: func(info pebble.DataCorruptionInfo) {
		l.Error("pebble found damaged data", "component", component, "path", info.Path, "err", info.Details)
	}}
}

// PrefixEnd is the first key after every key that starts with p (nil when there is none:
// p is all 0xff bytes).
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// withValue calls use with key's value while Pebble's buffer is valid, or reports ok false
// when the key is absent. Every Get helper below is this plus a decoding.
func withValue(r pebble.Reader, key []byte, use func([]byte) error) (ok bool, err error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer closer.Close()
	if err := use(v); err != nil {
		return false, fmt.Errorf("decode %q: %w", key, err)
	}
	return true, nil
}

// Get returns a copy of key's value (non-nil, even when empty), or ok false when the key
// is absent. Pebble's own Get hands out a buffer valid only until its closer is closed.
func Get(r pebble.Reader, key []byte) (value []byte, ok bool, err error) {
	ok, err = withValue(r, key, func(v []byte) error {
		value = append(make([]byte, 0, len(v)), v...)
		return nil
	})
	return value, ok, err
}

// GetJSON decodes key's JSON value into v; ok is false (and v untouched) when the key is
// absent.
func GetJSON(r pebble.Reader, key []byte, v any) (ok bool, err error) {
	return withValue(r, key, func(b []byte) error { return json.Unmarshal(b, v) })
}

// GetBinary decodes key's value with v's UnmarshalBinary; ok is false (and v untouched)
// when the key is absent. Decoders must copy what they keep: the buffer goes back to Pebble.
func GetBinary(r pebble.Reader, key []byte, v encoding.BinaryUnmarshaler) (ok bool, err error) {
	return withValue(r, key, v.UnmarshalBinary)
}

// GetUint64 reads a big-endian uint64 value; ok is false when the key is absent, and a
// value of any length but 8 is an error.
func GetUint64(r pebble.Reader, key []byte) (v uint64, ok bool, err error) {
	ok, err = withValue(r, key, func(b []byte) error {
		if len(b) != 8 {
			return fmt.Errorf("corrupt uint64 of %d bytes, want 8", len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	})
	return v, ok, err
}

// U64 encodes v big-endian, so that integers order as their bytes.
func U64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

// FormatMajorVersion is the Pebble on-disk format every Chronicle database is created
// with, pinned so that upgrading Pebble never moves existing data forward on its own.
// Pebble opens a database at the version it was written with; raising this is a
// deliberate format change (with a data format bump in raftstore).
const FormatMajorVersion = pebble.FormatValueSeparation
