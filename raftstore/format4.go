package raftstore

import (
	"bytes"
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
//     checkpoint (v | id | commit time -> version, of every 256th entry; one per
//     instant) before the instant.
//   - The type index has one record per type and block of positions (y | type | block
//     -> bitmap) instead of one per event (t | type | position).
//
// Per transfer the state DB took six index records, 216 bytes; it now takes two stream
// entries and a share of a type block and a checkpoint. Compaction, which rewrites them
// again and again, was a third of the node's CPU in batch mode. indexUpgrade rewrites
// the records of an older format as they stream by: when a node opens a format-3
// directory (upgradeIndexes), and when a snapshot or backup written by an older build is
// loaded (stateLoad).

// indexUpgrade turns a key-ordered stream of state records of data format 3 or before
// into format 4's.
type indexUpgrade struct {
	// event reads the event at a position (legacy stream values hold only it).
	event func(pos uint64) (chronicle.Event, bool, error)
	// history, when set, finds an entry's commit time and balance in the legacy history
	// index instead (historyCursor), falling back to event when that does not say.
	history *historyCursor
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
		id, version, ok := splitIDKey(k)
		if !ok {
			return true, fmt.Errorf("stream entry %x: damaged", k)
		}
		pos := binary.BigEndian.Uint64(v)
		at, balance, err := u.entry(id, pos)
		if err != nil {
			return true, fmt.Errorf("stream entry %x: %w", k, err)
		}
		if version%checkpointEvery == 0 {
			// Before the entry: a run cut short after rewriting the entry (which a
			// later run then skips) has written its checkpoint too.
			ck := appendCheckpointKey(nil, string(id), at)
			if err := u.emit(ck, binary.BigEndian.AppendUint64(nil, version)); err != nil {
				return true, err
			}
		}
		return true, u.emit(k, appendStreamValue(nil, pos, at, balance))
	case k[0] == legacyType:
		u.n++
		typ, pos, ok := splitIDKey(k)
		if !ok {
			return true, fmt.Errorf("type index record %x: damaged", k)
		}
		block, i, bit := typeBlockOf(pos)
		if u.open && (string(typ) != u.typ || block != u.block) {
			if err := u.flush(); err != nil {
				return true, err
			}
		}
		if !u.open {
			u.typ, u.block, u.bits, u.open = string(typ), block, [typeBlockBytes]byte{}, true
		}
		u.bits[i] |= bit
		return true, nil
	}
	return false, nil
}

// entry is the commit time of the event at pos, in account id's stream, and the
// account's balance after it.
func (u *indexUpgrade) entry(id []byte, pos uint64) (time.Time, int64, error) {
	if u.history != nil {
		t, balance, exact, err := u.history.at(id, pos)
		if err != nil || exact {
			return t, balance, err
		}
	}
	e, ok, err := u.event(pos)
	switch {
	case err != nil:
		return time.Time{}, 0, fmt.Errorf("read event %d: %w", pos, err)
	case !ok:
		return time.Time{}, 0, fmt.Errorf("event %d is missing", pos)
	case e.AggregateID != string(id):
		return time.Time{}, 0, fmt.Errorf("event %d belongs to %q", pos, e.AggregateID)
	}
	// The event's own time: where the history lacks a record (damage), the one found
	// is a later instant's.
	return e.CreatedAt, e.Data.BalanceAfter, nil
}

// historyCursor walks the legacy history index (h | id 0 | commit time -> balance,
// position) alongside the stream entries, which come by account and then position: the
// history holds one record per account and commit instant, for the last event of that
// instant. So the first record of the account at or after an entry's position names
// the entry's commit time, and its balance when it is that entry; only an account's
// earlier events of one instant (a rare thing) need their event read. A walk of two
// ordered ranges instead of a random read and a decode per event.
type historyCursor struct {
	it *pebble.Iterator
	id []byte // the account the iterator is in; nil before the first
}

// at finds the history record for the entry at pos of account id. exact reports that
// the record is the entry's own, so that balance is its balance after.
func (c *historyCursor) at(id []byte, pos uint64) (t time.Time, balance int64, exact bool, err error) {
	prefix := appendIDPrefix(nil, legacyHistory, string(id))
	valid := c.it.Valid()
	if !bytes.Equal(c.id, id) {
		c.id = append(c.id[:0], id...)
		valid = c.it.SeekGE(prefix)
	}
	for ; valid; valid = c.it.Next() {
		k, v := c.it.Key(), c.it.Value()
		if !bytes.HasPrefix(k, prefix) {
			break
		}
		if len(k) != len(prefix)+8 || len(v) != 16 {
			return t, 0, false, fmt.Errorf("history record %x: damaged", k)
		}
		if p := binary.BigEndian.Uint64(v[8:]); p >= pos {
			return keyTime(k[len(prefix):]), int64(binary.BigEndian.Uint64(v[:8])), p == pos, nil
		}
	}
	// None (damage, or a history that never had one): the event says.
	return t, 0, false, c.it.Error()
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
	log.Info("rewrote the stream, history and type indexes (data format 3 to 4)", "dir", dir,
		"stream_and_type_records", n, "took", time.Since(start))
	return nil
}

// upgradeIndexes rewrites db's legacy index records as format 4 has them, deletes the old
// ones and flushes. Every step is idempotent, and the state DB (no WAL) keeps a prefix of
// its commits after a crash: a start after one that crashed here does the rest.
func upgradeIndexes(db, ev *pebble.DB) (int, error) {
	b := db.NewBatch()
	defer func() { _ = b.Close() }()
	hist, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{legacyHistory}, UpperBound: []byte{legacyHistory + 1}})
	if err != nil {
		return 0, err
	}
	defer func() { _ = hist.Close() }()
	u := indexUpgrade{event: reader{r: db, ev: ev}.event, history: &historyCursor{it: hist}}
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
	// The stream and the legacy type index (nothing sorts between them). The history is
	// read by the cursor alone, and deleted below as a range.
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStream}, UpperBound: []byte{legacyType + 1}})
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
