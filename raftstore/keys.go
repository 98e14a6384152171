package raftstore

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// Key layout of the state DB (data format 4; the events are in the events DB, events.go).
// One byte of prefix per record kind; ids are followed by a zero byte (ids never contain
// one) so that one id is never a prefix of another's range. Values are the domain's
// versioned binary layouts (MarshalBinary). The records that name events or stream
// entries (v, y) sort after them, so a snapshot install that stops partway never leaves
// one naming a record it has not written yet.
const (
	prefixEvent      = 'e' // e | position            -> event (stored form: canonical bytes + hash)
	prefixAccount    = 'a' // a | id                  -> account
	prefixStream     = 's' // s | id 0 | version      -> position, commit time, balance after (appendStreamValue)
	prefixCheckpoint = 'v' // v | id 0 | commit time  -> version of a stream entry (keys.go, checkpointEvery)
	prefixTypeBlock  = 'y' // y | type 0 | block      -> bitmap of the block's positions of that type
	prefixIdem       = 'i' // i | key                 -> idempotency record (key, fingerprint, positions)
	prefixIdemExpiry = 'x' // x | commit time | key   -> (empty)
	prefixMeta       = 'm' // m | name                -> head (binary) or applied index (u64)
	prefixNode       = 'n' // n | node id             -> NodeMeta (binary)
	prefixToken      = 'k' // k | token name          -> Token (binary; the secret's hash, never the secret)
	metaApplied      = "applied"
	// Until data format 3: replaced by the stream values and the type blocks (format4.go).
	legacyHistory     = 'h' // h | id 0 | commit time  -> balance, position
	legacyType        = 't' // t | type 0 | position   -> (empty)
	metaHead          = "head"
	maxPurgePerCommit = 1024
)

// timeKey orders times as their bytes: nanoseconds with the sign bit flipped, clamped to
// what int64 nanoseconds can hold (years 1678-2262).
func timeKey(t time.Time) []byte { return pebbleutil.U64(timeOrder(t)) }

// timeOrder is timeKey as the integer its bytes spell.
func timeOrder(t time.Time) uint64 {
	var n int64
	switch {
	case t.Before(time.Unix(0, math.MinInt64)):
		n = math.MinInt64
	case t.After(time.Unix(0, math.MaxInt64)):
		n = math.MaxInt64
	default:
		n = t.UnixNano()
	}
	return uint64(n) ^ 1<<63
}

func keyTime(b []byte) time.Time { return orderTime(binary.BigEndian.Uint64(b)) }

func orderTime(v uint64) time.Time { return time.Unix(0, int64(v^1<<63)).UTC() }

func join(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func eventKey(pos uint64) []byte    { return appendEventKey(nil, pos) }
func accountKey(id string) []byte   { return appendAccountKey(nil, id) }
func streamPrefix(id string) []byte { return appendIDPrefix(nil, prefixStream, id) }
func streamKey(id string, version uint64) []byte {
	return appendStreamKey(nil, id, version)
}
func typeBlockPrefix(eventType string) []byte {
	return appendIDPrefix(nil, prefixTypeBlock, eventType)
}
func typeBlockKey(eventType string, block uint64) []byte {
	return appendTypeBlockKey(nil, eventType, block)
}

// The append forms build a key in a reused buffer: the apply path stages a dozen keys per
// transfer, and Batch.Set copies them.
func appendEventKey(dst []byte, pos uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, prefixEvent), pos)
}
func appendAccountKey(dst []byte, id string) []byte { return append(append(dst, prefixAccount), id...) }

// appendIDPrefix appends p | id 0: the prefix of one id's range.
func appendIDPrefix(dst []byte, p byte, id string) []byte {
	return append(append(append(dst, p), id...), 0)
}
func appendStreamKey(dst []byte, id string, version uint64) []byte {
	return binary.BigEndian.AppendUint64(appendIDPrefix(dst, prefixStream, id), version)
}

// splitIDKey splits a key of the form p | id 0 | u64 into id and the number; ok is false
// when k has not that form.
func splitIDKey(k []byte) (id []byte, n uint64, ok bool) {
	if len(k) < 10 || k[len(k)-9] != 0 {
		return nil, 0, false
	}
	return k[1 : len(k)-9], binary.BigEndian.Uint64(k[len(k)-8:]), true
}

func appendTypeBlockKey(dst []byte, eventType string, block uint64) []byte {
	return binary.BigEndian.AppendUint64(appendIDPrefix(dst, prefixTypeBlock, eventType), block)
}

// A stream entry's value: the event's position, its commit time (timeOrder) and the
// account's balance after it. Commit times never decrease with positions, and so with
// versions, which lets balance-at read an account's stream forward from a checkpoint
// (reader.balanceAt).
const streamValueLen = 24

func appendStreamValue(dst []byte, pos uint64, t time.Time, balance int64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, pos)
	dst = binary.BigEndian.AppendUint64(dst, timeOrder(t))
	return binary.BigEndian.AppendUint64(dst, uint64(balance))
}

// Every checkpointEvery-th entry of a stream (by version) has a checkpoint record too,
// keyed by its commit time; where several share an instant (holds expiring together),
// the record holds the last of them. Balance-at seeks the last checkpoint at or before
// the instant and reads forward from there: the next checkpoint is after the instant, so
// that is at most checkpointEvery+1 entries, and the cost does not grow with the stream
// (a binary search of a million entries took twice as long as one of ten thousand).
const checkpointEvery = 256

func checkpointPrefix(id string) []byte { return appendIDPrefix(nil, prefixCheckpoint, id) }
func appendCheckpointKey(dst []byte, id string, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(appendIDPrefix(dst, prefixCheckpoint, id), timeOrder(t))
}

// streamEntry decodes a stream value.
func streamEntry(v []byte) (pos uint64, t time.Time, balance int64, err error) {
	if len(v) != streamValueLen {
		return 0, time.Time{}, 0, fmt.Errorf("stream entry of %d bytes, want %d", len(v), streamValueLen)
	}
	return binary.BigEndian.Uint64(v), keyTime(v[8:16]), int64(binary.BigEndian.Uint64(v[16:])), nil
}

// The type index: one record per event type and block of typeBlockSize positions, a
// bitmap with bit i of byte j set when position block*typeBlockSize + 8j + i holds an
// event of the type. One record per block instead of one per event: at 256 a transfer's
// two events cost the index almost nothing, and a listing of a rare type still skips
// whole blocks it does not occur in.
const (
	typeBlockSize  = 256
	typeBlockBytes = typeBlockSize / 8
)

func typeBlockOf(pos uint64) (block uint64, byteIdx int, bit byte) {
	return pos / typeBlockSize, int(pos%typeBlockSize) / 8, 1 << (pos % 8)
}
func idemKey(key string) []byte { return join([]byte{prefixIdem}, []byte(key)) }
func idemExpiryKey(t time.Time, key string) []byte {
	return expiryKey(timeOrder(t), key)
}
func expiryKey(at uint64, key string) []byte {
	return join([]byte{prefixIdemExpiry}, pebbleutil.U64(at), []byte(key))
}
func metaKey(name string) []byte { return join([]byte{prefixMeta}, []byte(name)) }
func nodeKey(id string) []byte   { return join([]byte{prefixNode}, []byte(id)) }
func tokenKey(name string) []byte {
	return join([]byte{prefixToken}, []byte(name))
}
