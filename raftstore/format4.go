package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// Data format 4 changed two indexes of the state DB (keys.go); everything else is as
// format 3 had it:
//
//   - A stream entry's value holds the event's commit time and the account's balance
//     after it besides its position, and the history index (h | id | commit time ->
//     balance, position) is gone: balance-at reads the stream instead, from the last
//     checkpoint (c | id | commit time -> version, every 256th entry) before the instant.
//   - The type index has one record per type and block of positions (b | type | block
//     -> bitmap) instead of one per event (t | type | position).
//
// Per transfer the state DB took six index records of about 108 bytes each event pair's
// worth; it now takes two, and compaction, which rewrites them again and again, was a
// third of the node's CPU in batch mode. indexUpgrade rewrites the records of an older
// format as they stream by: when a node opens a format-3 directory (upgradeIndexes), and
// when a snapshot or backup written by an older build is loaded (stateLoad).

// indexUpgrade turns a key-ordered stream of state records of data format 3 or before
// into format 4's.
type indexUpgrade struct {
	// event reads the event at a position (legacy stream values hold only it).
	event func(pos uint64) (chronicle.Event, bool, error)
	// emit stages one record of the new format.
	emit func(k, v []byte) error
	// The type block being gathered from legacy type records, which come in key order:
	// by type, then position.
	typ   string
	block uint64
	bits  [typeBlockBytes]byte
	open  bool
	n     int // legacy records seen
}

// record takes one record and reports whether it was a legacy one (dropped, rewritten or
// gathered); a record it does not take is already in the current format.
func (u *indexUpgrade) record(k, v []byte) (bool, error) {
	switch {
	case len(k) == 0:
		return false, nil
	case k[0] == legacyHistory:
		u.n++
		return true, nil
	case k[0] == prefixStream && len(v) == 8:
		u.n++
		pos := binary.BigEndian.Uint64(v)
		e, ok, err := u.event(pos)
		if err != nil {
			return true, fmt.Errorf("stream entry %x: read event %d: %w", k, pos, err)
		}
		if !ok {
			return true, fmt.Errorf("stream entry %x names event %d, which is missing", k, pos)
		}
		if e.EventVersion%checkpointEvery == 0 {
			// Before the entry: a run cut short after rewriting the entry (which a
			// later run then skips) has written its checkpoint too.
			ck := appendCheckpointKey(nil, e.AggregateID, e.CreatedAt)
			if err := u.emit(ck, binary.BigEndian.AppendUint64(nil, e.EventVersion)); err != nil {
				return true, err
			}
		}
		return true, u.emit(k, appendStreamValue(nil, pos, e.CreatedAt, e.Data.BalanceAfter))
	case k[0] == legacyType:
		u.n++
		if len(k) < 10 || k[len(k)-9] != 0 {
			return true, fmt.Errorf("type index record %x: damaged", k)
		}
		typ, pos := string(k[1:len(k)-9]), binary.BigEndian.Uint64(k[len(k)-8:])
		block, i, bit := typeBlockOf(pos)
		if u.open && (typ != u.typ || block != u.block) {
			if err := u.flush(); err != nil {
				return true, err
			}
		}
		if !u.open {
			u.typ, u.block, u.bits, u.open = typ, block, [typeBlockBytes]byte{}, true
		}
		u.bits[i] |= bit
		return true, nil
	}
	return false, nil
}

// flush emits the type block being gathered, if any.
func (u *indexUpgrade) flush() error {
	if !u.open {
		return nil
	}
	u.open = false
	return u.emit(typeBlockKey(u.typ, u.block), append([]byte(nil), u.bits[:]...))
}

// migrateFormat3 upgrades the indexes of a format-3 data directory in place and then
// writes FORMAT 4 (see upgradeIndexes).
func migrateFormat3(dir string, log *slog.Logger) error {
	start := time.Now()
	db, ev, err := openState(dir, pebbleutil.Tuning{}, log, nil)
	if err != nil {
		return fmt.Errorf("move to data format 4: %w", err)
	}
	n, err := upgradeIndexes(db, ev)
	if err = errors.Join(err, closeState(db, ev)); err != nil {
		return fmt.Errorf("move to data format 4: %w", err)
	}
	if err := writeFormatFile(dir); err != nil {
		return fmt.Errorf("move to data format 4: %w", err)
	}
	log.Info("rewrote the stream, history and type indexes (data format 3 to 4)", "dir", dir, "records", n, "took", time.Since(start))
	return nil
}

// upgradeIndexes rewrites db's legacy index records as format 4 has them, deletes the old
// ones and flushes. Every step is idempotent, and the state DB (no WAL) keeps a prefix of
// its commits after a crash: a start after one that crashed here does the rest.
func upgradeIndexes(db, ev *pebble.DB) (int, error) {
	b := db.NewBatch()
	defer func() { _ = b.Close() }()
	u := indexUpgrade{event: reader{r: db, ev: ev}.event}
	u.emit = func(k, v []byte) error {
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		if b.Len() < 16<<20 {
			return nil
		}
		err := b.Commit(pebble.NoSync)
		_ = b.Close()
		b = db.NewBatch()
		return err
	}
	// The legacy prefixes: h, s and t, with what lies between them (left alone).
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{legacyHistory}, UpperBound: []byte{legacyType + 1}})
	if err != nil {
		return 0, err
	}
	for valid := it.First(); valid && err == nil; valid = it.Next() {
		_, err = u.record(it.Key(), it.Value())
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return u.n, fmt.Errorf("rewrite the indexes: %w", err)
	}
	if err := u.flush(); err != nil {
		return u.n, err
	}
	for _, p := range []byte{legacyHistory, legacyType} {
		if err := b.DeleteRange([]byte{p}, []byte{p + 1}, nil); err != nil {
			return u.n, err
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return u.n, fmt.Errorf("rewrite the indexes: %w", err)
	}
	return u.n, flushState(db)
}
