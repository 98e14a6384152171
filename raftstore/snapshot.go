package raftstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/golang/snappy"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// Snapshot forces a Raft snapshot (and the log truncation behind it).
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raftstore: snapshot: %w", err)
	}
	return nil
}

// snapshotHeader opens every snapshot stream.
type snapshotHeader struct {
	Format  uint8
	Applied uint64
	Head    chronicle.Head
}

// snapshotFormat 3: binary header and binary records, with data format 4's indexes.
// Format 2 had the same header and records with the older indexes; loading one upgrades
// them (indexUpgrade), and a build that reads only format 2 refuses format 3 rather than
// misread its indexes. Format 1 (release 0.1) had a JSON header and JSON records; it is
// refused, by name.
const snapshotFormat = 3

// marshal encodes the header: format u8 | applied index u64 | head (chronicle.Head binary).
func (h snapshotHeader) marshal() ([]byte, error) {
	hb, err := h.Head.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b := append([]byte{h.Format}, pebbleutil.U64(h.Applied)...)
	return append(b, hb...), nil
}

func (h *snapshotHeader) unmarshal(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		return fmt.Errorf("snapshot format 1 (JSON, release 0.1), this build reads formats 2 and %d", snapshotFormat)
	}
	if len(b) < 9 {
		return fmt.Errorf("snapshot header of %d bytes", len(b))
	}
	if b[0] != snapshotFormat && b[0] != 2 {
		return fmt.Errorf("snapshot format %d, this build reads formats 2 and %d", b[0], snapshotFormat)
	}
	h.Format, h.Applied = b[0], binary.BigEndian.Uint64(b[1:9])
	return h.Head.UnmarshalBinary(b[9:])
}

// Snapshot implements raft.FSM: a Pebble snapshot, streamed out later by Persist.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	// A stopped state machine is behind Raft's applied index, which the snapshot would be
	// filed under: the log behind it would be truncated while the state never got it.
	if err := f.failed(); err != nil {
		return nil, fmt.Errorf("no snapshot: the state machine stopped: %w", err)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	// Make the state durable up to here (its events first, by the flush hook): raft
	// truncates the log behind a snapshot, and what it truncates must not exist only in
	// a memtable or the OS page cache.
	if err := flushState(f.db); err != nil {
		return nil, fmt.Errorf("before a snapshot: %w", err)
	}
	v := takeViews(f.db, f.ev)
	rd := v.reader()
	applied, err := rd.applied()
	if err != nil {
		_ = v.Close()
		return nil, err
	}
	head, err := rd.head()
	if err != nil {
		_ = v.Close()
		return nil, err
	}
	return &fsmSnapshot{v: v, header: snapshotHeader{Format: snapshotFormat, Applied: applied, Head: head}}, nil
}

type fsmSnapshot struct {
	v      views
	header snapshotHeader
}

// Persist streams the header and then every key and value, length-prefixed.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.write(sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

// write streams the snapshot through snappy's framing format: ids, hashes and keys
// repeat and compress well, which is disk and network a joining node saves.
func (s *fsmSnapshot) write(w io.Writer) error {
	sw := snappy.NewBufferedWriter(w)
	bw := bufio.NewWriterSize(sw, 1<<20)
	hb, err := s.header.marshal()
	if err != nil {
		return err
	}
	if err := writeChunk(bw, hb); err != nil {
		return err
	}
	err = eachRecord(s.v.state, s.v.events, s.header.Head.Position, func(k, v []byte) error {
		if err := writeChunk(bw, k); err != nil {
			return err
		}
		return writeChunk(bw, v)
	})
	if err != nil {
		return err
	}
	// A zero-length key ends the stream; no stored key is empty.
	if err := writeChunk(bw, nil); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return sw.Close() // flushes; does not close w
}

// Release implements raft.FSMSnapshot.
func (s *fsmSnapshot) Release() { _ = s.v.Close() }

func writeChunk(w *bufio.Writer, b []byte) error {
	var n [binary.MaxVarintLen64]byte
	if _, err := w.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

const maxChunk = 64 << 20

func readChunk(r *bufio.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > maxChunk {
		return nil, fmt.Errorf("snapshot chunk of %d bytes exceeds %d", n, maxChunk)
	}
	b := make([]byte, n)
	_, err = io.ReadFull(r, b)
	return b, err
}

// Restore implements raft.FSM. At start-up raft offers the latest snapshot; when the state
// DB already holds everything up to it (the usual restart) it is skipped, so a restart
// costs nothing and re-applies nothing. Otherwise (a new or lagging node) the state DB is
// replaced with the snapshot's contents.
func (f *fsm) Restore(rc io.ReadCloser) (err error) {
	defer rc.Close()
	h, br, err := readFullHeader(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rd := reader{f.db, f.ev}
	applied, err := rd.applied()
	if err != nil {
		return err
	}
	if applied >= h.Applied && h.Applied > 0 && f.running.Load() {
		// A leader sent a snapshot this node has already applied past: a replication
		// goroutine of a removed incarnation of this node, flushing its last send, does
		// that. hashicorp/raft would install it anyway, drop the log, move its applied
		// index back and then panic looking for the entries it dropped ("log not found"
		// in processLogs). Refusing fails only that send.
		return fmt.Errorf("refusing a snapshot at applied index %d: this node has applied up to %d", h.Applied, applied)
	}
	if applied >= h.Applied {
		local, ok, err := rd.event(h.Head.Position)
		if err != nil {
			return err
		}
		if h.Head.Position == 0 || ok && local.Hash == h.Head.Hash {
			f.log.Info("state already covers snapshot; skipping restore", "snapshot_index", h.Applied, "applied", applied)
			return nil
		}
		return fmt.Errorf("state DB diverges from snapshot at position %d", h.Head.Position)
	}
	f.log.Info("restoring state from snapshot", "snapshot_index", h.Applied, "applied", applied)
	return f.load(h, br, h.Applied)
}

// load replaces the state DB's contents with the records of a snapshot stream (br,
// positioned after its header h) and files them under applied index applied. f.mu must
// be held. (A restored backup writes its state DB through stateLoad too, see backup.go.)
func (f *fsm) load(h snapshotHeader, br *bufio.Reader, applied uint64) (err error) {
	// Memory must mirror the state DB whatever happens below, even a failure midway
	// (Raft tries the install again later): load it again from what was written, and
	// move the readers' head to it, so that none reads the old head's events from a
	// state the load has half replaced.
	reloaded := false
	defer func() {
		if !reloaded {
			if rerr := f.reloadAndNotify(); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	// Clear everything, then load. A crash midway leaves no applied index, so the next
	// start restores again.
	l, err := newStateLoad(f.db, f.ev, nil, h.Format < snapshotFormat)
	if err != nil {
		return err
	}
	defer l.close()
	if f.loadBatchBytes > 0 {
		l.batchBytes = f.loadBatchBytes
	}
	for {
		k, err := readChunk(br)
		if err != nil {
			return fmt.Errorf("read snapshot key: %w", err)
		}
		if len(k) == 0 {
			break
		}
		v, err := readChunk(br)
		if err != nil {
			return fmt.Errorf("read snapshot value: %w", err)
		}
		if err := l.set(k, v); err != nil {
			return err
		}
	}
	if err := l.commit(applied); err != nil {
		return err
	}
	n := l.n
	f.log.Info("restored state from snapshot", "keys", n, "position", h.Head.Position)
	reloaded = true
	return f.reloadAndNotify()
}

// reloadAndNotify reloads memory from the state DB and tells the readers its head and
// applied index (after a whole load, the snapshot's; after a failed one, what it wrote).
func (f *fsm) reloadAndNotify() error {
	if err := f.reloadWorking(); err != nil {
		return err
	}
	if f.onApply != nil {
		f.mem.mu.RLock()
		head, applied := f.mem.head, f.mem.applied
		f.mem.mu.RUnlock()
		f.onApply(head, applied, nil)
	}
	return nil
}

// stateLoad writes the records of a snapshot stream into a state DB and its events DB,
// both cleared first, in batches; the applied index goes in last, once everything else
// is durable, so a state DB that has one holds the whole stream.
type stateLoad struct {
	db, ev *pebble.DB
	b, eb  *pebble.Batch // state records, events
	skip   func(key []byte) bool
	n      int // records written
	// upgrade rewrites the indexes of a stream from an older build (format4.go);
	// eventsIn is set once the staged events are committed for it to read.
	upgrade  *indexUpgrade // nil for a stream of this build's format
	eventsIn bool
	// batchBytes is the size at which a staged batch is committed (tests make it small).
	batchBytes int
}

func newStateLoad(db, ev *pebble.DB, skip func(key []byte) bool, legacy bool) (*stateLoad, error) {
	// The state DB is cleared durably before the events DB is touched: a crash while
	// loading then leaves a state DB with no applied index (the next start loads again),
	// never the old head over cleared events.
	b := db.NewBatch()
	err := b.DeleteRange([]byte{0}, []byte{0xff, 0xff}, nil)
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	_ = b.Close()
	if err == nil {
		err = flushState(db)
	}
	if err != nil {
		return nil, fmt.Errorf("clear the state DB: %w", err)
	}
	l := &stateLoad{db: db, ev: ev, b: db.NewBatch(), eb: ev.NewBatch(), skip: skip, batchBytes: 16 << 20}
	if legacy {
		l.upgrade = &indexUpgrade{event: l.event, emit: l.put}
	}
	if err := l.eb.DeleteRange([]byte{prefixEvent}, []byte{prefixEvent + 1}, nil); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

// set stages one record of the stream (all but the applied index and what skip names).
func (l *stateLoad) set(k, v []byte) error {
	if string(k) == string(metaKey(metaApplied)) || l.skip != nil && l.skip(k) {
		return nil // the applied index is written last, by commit
	}
	if l.upgrade != nil {
		if legacy, err := l.upgrade.record(k, v); legacy || err != nil {
			return err
		}
	}
	return l.put(k, v)
}

// event reads a loaded event for the index upgrade. Events sort before every index
// record, so by the first legacy stream entry all of them are staged: they are committed
// once, to be read.
func (l *stateLoad) event(pos uint64) (chronicle.Event, bool, error) {
	if !l.eventsIn {
		if err := l.commitEvents(); err != nil {
			return chronicle.Event{}, false, err
		}
		l.eventsIn = true
	}
	return reader{r: l.db, ev: l.ev}.event(pos)
}

// put stages one record as it is.
func (l *stateLoad) put(k, v []byte) error {
	b := l.b
	if k[0] == prefixEvent {
		b = l.eb
	}
	if err := b.Set(k, v, nil); err != nil {
		return err
	}
	l.n++
	switch {
	case l.eb.Len() > l.batchBytes:
		return l.commitEvents()
	case l.b.Len() > l.batchBytes:
		// The events staged so far go first: this batch may hold the head (its key sorts
		// after every event), and once flushed it must not name an event the events DB
		// lacks (the flush syncs what the events DB has committed).
		if err := l.commitEvents(); err != nil {
			return err
		}
		if err := l.b.Commit(pebble.NoSync); err != nil {
			return err
		}
		_ = l.b.Close()
		l.b = l.db.NewBatch()
	}
	return nil
}

func (l *stateLoad) commitEvents() error {
	if err := l.eb.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit restored events: %w", err)
	}
	_ = l.eb.Close()
	l.eb = l.ev.NewBatch()
	return nil
}

// commit files what was staged under the applied index and makes it durable: the
// events, then the state with its applied index.
func (l *stateLoad) commit(applied uint64) error {
	if l.upgrade != nil {
		if err := l.upgrade.flush(); err != nil {
			return err
		}
	}
	if err := l.commitEvents(); err != nil {
		return err
	}
	if err := syncEvents(l.ev); err != nil {
		return err
	}
	if err := l.b.Set(metaKey(metaApplied), pebbleutil.U64(applied), nil); err != nil {
		return err
	}
	if err := l.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("commit restored state: %w", err)
	}
	return flushState(l.db)
}

func (l *stateLoad) close() {
	_ = l.b.Close()
	_ = l.eb.Close()
}

// readFullHeader reads the header of a full snapshot stream and returns the reader
// positioned at its first record.
func readFullHeader(r io.Reader) (snapshotHeader, *bufio.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	// A snappy frame stream starts with its 0xff stream identifier; an uncompressed
	// snapshot (format 1 as first written) starts with the header's small length.
	if first, err := br.Peek(1); err == nil && first[0] == 0xff {
		br = bufio.NewReaderSize(snappy.NewReader(br), 1<<20)
	}
	var h snapshotHeader
	hb, err := readChunk(br)
	if err != nil {
		return h, nil, fmt.Errorf("read snapshot header: %w", err)
	}
	if err := h.unmarshal(hb); err != nil {
		return h, nil, fmt.Errorf("decode snapshot header: %w", err)
	}
	return h, br, nil
}

// reloadWorking loads the working state again from the state DB, after a restore replaced
// it. A node whose memory cannot mirror its state DB must not apply anything: it stops.
func (f *fsm) reloadWorking() error {
	start := time.Now()
	mem, err := loadWorking(f.db)
	if err != nil {
		err = fmt.Errorf("reload working state after restore: %w", err)
		f.log.Error("state machine stopped: refusing to apply further entries", "err", err)
		f.setFatal(err)
		return err
	}
	f.mem.replace(mem)
	f.log.Info("loaded working state from the restored state DB", "accounts", mem.accounts.len(),
		"idempotency_keys", len(mem.keys), "position", mem.head.Position, "took", time.Since(start))
	return nil
}
