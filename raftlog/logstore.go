// Package raftlog stores hashicorp/raft's log and stable state in Pebble.
package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// ErrKeyNotFound is returned by Get and GetUint64 for a missing stable key.
// Its text must be exactly "not found" and it must never be wrapped:
// hashicorp/raft tells a fresh store from a broken one by comparing
// err.Error() == "not found" (api.go HasExistingState, NewRaft; raft.go
// requestVote).
var ErrKeyNotFound = errors.New("not found")

// Key prefixes keep raft logs and stable values in disjoint key ranges of one
// Pebble instance, so log iterators can be bounded to [prefixLog, prefixLog+1).
const (
	prefixLog    byte = 'l'
	prefixStable byte = 's'

	logKeyLen = 1 + 8
)

// Log value encoding, version 1:
//
//	version:1 | type:1 | flags:1 | uvarint index | uvarint term |
//	[appendedAt unix nanos: 8 big-endian, if flagAppendedAt] |
//	uvarint len(data) | data | uvarint len(extensions) | extensions
//
// The version byte lets the format change without a migration of old entries.
const (
	encodingV1     byte = 1
	flagAppendedAt byte = 1 << 0
	flagsKnown          = flagAppendedAt
)

// LogStore is a raft.LogStore and raft.StableStore on its own Pebble instance.
// Every write is synced to the WAL before it returns, because raft assumes
// durability of both log entries and term/vote when a call succeeds.
type LogStore struct {
	db *pebble.DB

	// writeMu serialises log writes so that each commit and the cache update
	// that follows it are atomic with respect to other log writers.
	writeMu sync.Mutex

	// mu guards the cached index bounds so FirstIndex/LastIndex are O(1) and
	// never wait on a sync.
	mu    sync.RWMutex
	empty bool
	first uint64
	last  uint64
}

var (
	_ raft.LogStore          = (*LogStore)(nil)
	_ raft.StableStore       = (*LogStore)(nil)
	_ raft.MonotonicLogStore = (*LogStore)(nil)
)

// OpenLogStore opens (creating if needed) the store in dir. A nil logger
// discards Pebble's messages.
func OpenLogStore(dir string, logger *slog.Logger) (*LogStore, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := &pebble.Options{
		// Raft entries are written once, read back soon (replication) and
		// deleted in bulk after snapshots: a small memtable and block cache
		// keep memory modest; the WAL carries durability.
		MemTableSize:       8 << 20,
		CacheSize:          8 << 20,
		FormatMajorVersion: pebbleutil.FormatMajorVersion,
		Logger:             pebbleutil.Logger(logger, "pebble"),
		EventListener:      pebbleutil.Events(logger, "pebble"),
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("raftlog: open pebble at %s: %w", dir, err)
	}
	s := &LogStore{db: db}
	if err := s.loadBounds(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the underlying Pebble instance.
func (s *LogStore) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("raftlog: close pebble: %w", err)
	}
	return nil
}

// IsMonotonic implements raft.MonotonicLogStore: after a snapshot restore raft
// then deletes all old logs instead of leaving an index gap, which one range
// deletion makes cheap here.
func (s *LogStore) IsMonotonic() bool { return true }

// FirstIndex returns the first stored log index, or 0 if there are none.
func (s *LogStore) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.empty {
		return 0, nil
	}
	return s.first, nil
}

// LastIndex returns the last stored log index, or 0 if there are none.
func (s *LogStore) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.empty {
		return 0, nil
	}
	return s.last, nil
}

// GetLog reads the entry at index into log, or returns raft.ErrLogNotFound.
func (s *LogStore) GetLog(index uint64, log *raft.Log) error {
	var key [logKeyLen]byte
	putLogKey(key[:], index)
	val, closer, err := s.db.Get(key[:])
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftlog: get log %d: %w", index, err)
	}
	err = decodeLog(val, log)
	_ = closer.Close() // decodeLog copied everything it keeps.
	if err != nil {
		return fmt.Errorf("raftlog: decode log %d: %w", index, err)
	}
	if log.Index != index {
		return fmt.Errorf("raftlog: decode log %d: corrupt entry claims index %d", index, log.Index)
	}
	return nil
}

// StoreLog stores a single entry.
func (s *LogStore) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs stores entries in one batch with one sync, so a crash leaves all
// or none of them.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, l := range logs {
		// Encode straight into the batch's buffer to avoid a copy per entry.
		op := b.SetDeferred(logKeyLen, encodedLogLen(l))
		putLogKey(op.Key, l.Index)
		encodeLog(op.Value, l)
		if err := op.Finish(); err != nil {
			return fmt.Errorf("raftlog: batch log %d: %w", l.Index, err)
		}
		lo, hi = min(lo, l.Index), max(hi, l.Index)
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftlog: store logs %d..%d: %w", lo, hi, err)
	}
	s.mu.Lock()
	if s.empty {
		s.empty, s.first, s.last = false, lo, hi
	} else {
		s.first, s.last = min(s.first, lo), max(s.last, hi)
	}
	s.mu.Unlock()
	return nil
}

// DeleteRange deletes entries min..max inclusive with a single synced range
// tombstone, which costs the same however many entries it covers.
func (s *LogStore) DeleteRange(minIdx, maxIdx uint64) error {
	if minIdx > maxIdx {
		return nil
	}
	start := make([]byte, logKeyLen)
	putLogKey(start, minIdx)
	end := logKeyAfter(maxIdx)

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(start, end, nil); err != nil {
		return fmt.Errorf("raftlog: batch delete logs %d..%d: %w", minIdx, maxIdx, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftlog: delete logs %d..%d: %w", minIdx, maxIdx, err)
	}

	// Only writers change the bounds and writeMu is held, so reading them
	// without mu here is safe; mu is taken only to publish.
	first, last, empty := s.first, s.last, s.empty
	switch {
	case empty || maxIdx < first || minIdx > last:
		return nil // Nothing stored was in range.
	case minIdx <= first && maxIdx >= last:
		empty, first, last = true, 0, 0
	case minIdx <= first:
		// Head truncation after a snapshot: seek from just past the range so
		// the iterator never walks over earlier tombstones.
		idx, ok, err := s.seekLog(end, logPrefixEnd(), false)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("raftlog: delete logs %d..%d: no log left though last index was %d", minIdx, maxIdx, last)
		}
		first = idx
	case maxIdx >= last:
		// Tail truncation on a conflicting leader's entries.
		idx, ok, err := s.seekLog([]byte{prefixLog}, start, true)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("raftlog: delete logs %d..%d: no log left though first index was %d", minIdx, maxIdx, first)
		}
		last = idx
	default:
		return nil // A hole in the middle leaves both ends in place.
	}
	s.mu.Lock()
	s.empty, s.first, s.last = empty, first, last
	s.mu.Unlock()
	return nil
}

// Set stores a stable value, synced: term and vote must survive a crash or a
// node could vote twice in one term.
func (s *LogStore) Set(key, val []byte) error {
	if err := s.db.Set(stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("raftlog: set %q: %w", key, err)
	}
	return nil
}

// Get returns a copy of a stable value, or ErrKeyNotFound (unwrapped, as raft
// compares its text).
func (s *LogStore) Get(key []byte) ([]byte, error) {
	// Non-nil even when empty: raft treats a nil vote candidate as "no vote".
	val, ok, err := pebbleutil.Get(s.db, stableKey(key))
	if err != nil {
		return nil, fmt.Errorf("raftlog: get %q: %w", key, err)
	}
	if !ok {
		return nil, ErrKeyNotFound
	}
	return val, nil
}

// SetUint64 stores a stable uint64 as 8 big-endian bytes, synced.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, pebbleutil.U64(val))
}

// GetUint64 returns a stable uint64, or 0 and ErrKeyNotFound if absent.
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	v, ok, err := pebbleutil.GetUint64(s.db, stableKey(key))
	if err != nil {
		return 0, fmt.Errorf("raftlog: get %q: %w", key, err)
	}
	if !ok {
		return 0, ErrKeyNotFound
	}
	return v, nil
}

// loadBounds recomputes the cached first/last index from disk.
func (s *LogStore) loadBounds() error {
	first, ok, err := s.seekLog([]byte{prefixLog}, logPrefixEnd(), false)
	if err != nil {
		return err
	}
	if !ok {
		s.empty = true
		return nil
	}
	last, _, err := s.seekLog([]byte{prefixLog}, logPrefixEnd(), true)
	if err != nil {
		return err
	}
	s.empty, s.first, s.last = false, first, last
	return nil
}

// seekLog returns the lowest (or, if last, highest) log index with a key in
// [lower, upper).
func (s *LogStore) seekLog(lower, upper []byte, last bool) (idx uint64, ok bool, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, false, fmt.Errorf("raftlog: new iterator: %w", err)
	}
	if last {
		ok = it.Last()
	} else {
		ok = it.First()
	}
	if ok {
		k := it.Key()
		if len(k) != logKeyLen || k[0] != prefixLog {
			ok = false
			err = fmt.Errorf("raftlog: malformed log key %x", k)
		} else {
			idx = binary.BigEndian.Uint64(k[1:])
		}
	}
	if cerr := it.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("raftlog: iterate logs: %w", cerr)
	}
	if err != nil {
		return 0, false, err
	}
	return idx, ok, nil
}

func putLogKey(dst []byte, index uint64) {
	dst[0] = prefixLog
	binary.BigEndian.PutUint64(dst[1:], index)
}

// logKeyAfter is the exclusive end key for a range ending at index inclusive.
func logKeyAfter(index uint64) []byte {
	if index == math.MaxUint64 {
		return logPrefixEnd()
	}
	k := make([]byte, logKeyLen)
	putLogKey(k, index+1)
	return k
}

// logPrefixEnd is the exclusive upper bound of all log keys.
func logPrefixEnd() []byte { return []byte{prefixLog + 1} }

func stableKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = prefixStable
	copy(k[1:], key)
	return k
}

func encodedLogLen(l *raft.Log) int {
	n := 3 + uvarintLen(l.Index) + uvarintLen(l.Term) +
		uvarintLen(uint64(len(l.Data))) + len(l.Data) +
		uvarintLen(uint64(len(l.Extensions))) + len(l.Extensions)
	if !l.AppendedAt.IsZero() {
		n += 8
	}
	return n
}

// encodeLog writes l into dst, which must be exactly encodedLogLen(l) long.
func encodeLog(dst []byte, l *raft.Log) {
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	dst[0], dst[1], dst[2] = encodingV1, byte(l.Type), flags
	n := 3
	n += binary.PutUvarint(dst[n:], l.Index)
	n += binary.PutUvarint(dst[n:], l.Term)
	if flags&flagAppendedAt != 0 {
		binary.BigEndian.PutUint64(dst[n:], uint64(l.AppendedAt.UnixNano()))
		n += 8
	}
	n += binary.PutUvarint(dst[n:], uint64(len(l.Data)))
	n += copy(dst[n:], l.Data)
	n += binary.PutUvarint(dst[n:], uint64(len(l.Extensions)))
	copy(dst[n:], l.Extensions)
}

var errCorrupt = errors.New("corrupt log entry")

// decodeLog fills every field of l from src, copying byte slices so src may be
// reused. Malformed input yields an error, never a panic.
func decodeLog(src []byte, l *raft.Log) error {
	if len(src) < 3 {
		return fmt.Errorf("%w: %d bytes", errCorrupt, len(src))
	}
	if src[0] != encodingV1 {
		return fmt.Errorf("%w: unknown encoding version %d", errCorrupt, src[0])
	}
	typ, flags := raft.LogType(src[1]), src[2]
	if flags&^flagsKnown != 0 {
		return fmt.Errorf("%w: unknown flags %#x", errCorrupt, flags)
	}
	rest := src[3:]
	index, rest, ok := readUvarint(rest)
	if !ok {
		return fmt.Errorf("%w: bad index", errCorrupt)
	}
	term, rest, ok := readUvarint(rest)
	if !ok {
		return fmt.Errorf("%w: bad term", errCorrupt)
	}
	var appendedAt time.Time
	if flags&flagAppendedAt != 0 {
		if len(rest) < 8 {
			return fmt.Errorf("%w: short appended-at", errCorrupt)
		}
		appendedAt = time.Unix(0, int64(binary.BigEndian.Uint64(rest)))
		rest = rest[8:]
	}
	data, rest, ok := readBytes(rest)
	if !ok {
		return fmt.Errorf("%w: bad data length", errCorrupt)
	}
	ext, rest, ok := readBytes(rest)
	if !ok {
		return fmt.Errorf("%w: bad extensions length", errCorrupt)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(rest))
	}

	// One allocation holds both slices; capacities are clipped so an append
	// to Data cannot overwrite Extensions.
	*l = raft.Log{Index: index, Term: term, Type: typ, AppendedAt: appendedAt}
	if len(data)+len(ext) > 0 {
		buf := make([]byte, len(data)+len(ext))
		copy(buf, data)
		copy(buf[len(data):], ext)
		if len(data) > 0 {
			l.Data = buf[:len(data):len(data)]
		}
		if len(ext) > 0 {
			l.Extensions = buf[len(data):]
		}
	}
	return nil
}

func readUvarint(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, false
	}
	return v, b[n:], true
}

// readBytes reads a uvarint length and that many bytes, without copying.
func readBytes(b []byte) ([]byte, []byte, bool) {
	n, rest, ok := readUvarint(b)
	if !ok || n > uint64(len(rest)) {
		return nil, nil, false
	}
	return rest[:n], rest[n:], true
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
