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
	"runtime"
	"sync"
	"sync/atomic"

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
	fatal     *Fatal // nil: Fatalf panics
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

// Fatalf is called when Pebble cannot continue. With a Fatal handler (LoggerWithFatal)
// it reports to it and parks the calling goroutine; without one it panics rather than
// os.Exit so deferred cleanup runs and the caller's process policy decides.
func (p logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", p.component, "fatal", true)
	if p.fatal != nil {
		p.fatal.park(fmt.Errorf("%s: pebble fatal: %s", p.component, msg))
		return // unreachable: park ends the goroutine
	}
	panic(p.component + ": pebble fatal: " + msg)
}

// Fatal handles Pebble's fatal errors without a panic. Pebble calls Logger.Fatalf where
// it cannot go on (a failed WAL write leaves its commit pipeline unusable: "fatal commit
// error"), and carries on as if the operation succeeded if Fatalf returns, so Fatalf
// must not return. Panicking kills the process from a goroutine nobody can recover in
// (Raft's FSM goroutine, Pebble's own); instead Fatalf reports the error to OnFatal (the
// owner marks itself failed: not ready, refusing writes, still serving what it holds in
// memory) and parks the goroutine until Release, which ends it with runtime.Goexit
// (deferred calls run, nothing after Fatalf does). A DB that reported a fatal error must
// not be used for writes again nor closed: its state on disk is recovered from its WAL
// (and, in raftstore, the Raft log) on the next start.
type Fatal struct {
	onFatal func(error)
	release chan struct{}
	once    sync.Once
	err     atomic.Pointer[error]
}

// NewFatal makes a fatal handler calling onFatal (may be nil) with each fatal error.
func NewFatal(onFatal func(error)) *Fatal {
	return &Fatal{onFatal: onFatal, release: make(chan struct{})}
}

// Err is the first fatal error reported, nil if none.
func (f *Fatal) Err() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Release ends every goroutine parked in Fatalf (and any that parks later), so that a
// shutdown waiting for them completes.
func (f *Fatal) Release() { f.once.Do(func() { close(f.release) }) }

// Report records err as Fatalf does (the first one wins) and calls onFatal, without
// parking the caller: for a callback of Pebble's that holds a lock the node's readers
// and its shutdown need.
func (f *Fatal) Report(err error) {
	f.err.CompareAndSwap(nil, &err)
	if f.onFatal != nil {
		f.onFatal(err)
	}
}

func (f *Fatal) park(err error) {
	f.Report(err)
	<-f.release
	runtime.Goexit()
}

// LoggerWithFatal is Logger whose Fatalf reports to f instead of panicking (see Fatal).
func LoggerWithFatal(l *slog.Logger, component string, f *Fatal) pebble.Logger {
	lg := Logger(l, component).(logger)
	lg.fatal = f
	return lg
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
