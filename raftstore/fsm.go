package raftlog

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/golang/snappy"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
)

// fsm applies committed command batches to the state DB through the domain's state
// machine. Each raft.BatchingFSM call is one Pebble batch, so many entries share a write.
type fsm struct {
	log *slog.Logger

	// mu guards db against a restore swapping its contents under readers.
	mu sync.RWMutex
	db *pebble.DB

	// fatal is set when the state machine reported a broken invariant; from then on the
	// node refuses to apply anything rather than diverge.
	fatalMu sync.Mutex
	fatal   error

	// onApply is called after each applied batch with the new head, applied index and
	// the events the batch appended (nil after a restore: the log was replaced).
	onApply func(chronicle.Head, uint64, []chronicle.Event)
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

// applyResponse is what a raft.ApplyFuture returns for one command entry.
type applyResponse struct {
	results []chronicle.Result
	err     error
}

func (f *fsm) failed() error {
	f.fatalMu.Lock()
	defer f.fatalMu.Unlock()
	return f.fatal
}

func (f *fsm) setFatal(err error) {
	f.fatalMu.Lock()
	defer f.fatalMu.Unlock()
	if f.fatal == nil {
		f.fatal = err
	}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	resp := make([]any, len(logs))
	if err := f.failed(); err != nil {
		for i := range resp {
			resp[i] = applyResponse{err: err}
		}
		return resp
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	b := f.db.NewIndexedBatch()
	defer b.Close()
	rd := reader{b}
	applied, err := rd.applied()
	if err != nil {
		return f.fail(resp, fmt.Errorf("read applied index: %w", err))
	}
	head, err := rd.head()
	if err != nil {
		return f.fail(resp, fmt.Errorf("read head: %w", err))
	}
	last := applied
	var appended []chronicle.Event
	for i, l := range logs {
		if l.Index <= applied {
			// Already in the state DB: a restart replays the log from the snapshot on.
			resp[i] = applyResponse{err: errors.New("entry already applied before restart")}
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		if len(l.Data) > 0 && l.Data[0] == entryMeta {
			var m NodeMeta
			if err := json.Unmarshal(l.Data[1:], &m); err != nil {
				return f.fail(resp, fmt.Errorf("decode meta entry %d: %w", l.Index, err))
			}
			if err := b.Set(nodeKey(m.ID), l.Data[1:], nil); err != nil {
				return f.fail(resp, err)
			}
			resp[i] = applyResponse{}
			continue
		}
		var batch chronicle.Batch
		if err := json.Unmarshal(l.Data, &batch); err != nil {
			// Only this package proposes entries, so this is a bug or corruption; stop.
			return f.fail(resp, fmt.Errorf("decode entry %d: %w", l.Index, err))
		}
		out, err := chronicle.Apply(rd, head, batch)
		if err != nil {
			return f.fail(resp, fmt.Errorf("apply entry %d: %w", l.Index, err))
		}
		if err := writeOutcome(b, out); err != nil {
			return f.fail(resp, fmt.Errorf("stage entry %d: %w", l.Index, err))
		}
		head = out.Head
		appended = append(appended, out.Events...)
		// Purge per entry, not per apply call, so every replica's state DB holds the same
		// bytes at the same index however Raft grouped the entries.
		if err := purgeExpired(b, head.CommitTime, batch.IdempotencyWindow); err != nil {
			return f.fail(resp, fmt.Errorf("purge idempotency keys: %w", err))
		}
		resp[i] = applyResponse{results: out.Results}
	}
	if last == applied {
		return resp
	}
	if err := b.Set(metaKey(metaApplied), u64(last), nil); err != nil {
		return f.fail(resp, err)
	}
	// NoSync: the Raft log is fsynced before an entry is applied, and a restart replays
	// whatever the state DB lost from it (entries at or below the applied index are
	// skipped). Snapshots sync the state DB before the log behind them is truncated.
	if err := b.Commit(pebble.NoSync); err != nil {
		return f.fail(resp, fmt.Errorf("commit state batch: %w", err))
	}
	if f.onApply != nil {
		f.onApply(head, last, appended)
	}
	return resp
}

func (f *fsm) fail(resp []any, err error) []any {
	f.log.Error("state machine stopped: refusing to apply further entries", "err", err)
	f.setFatal(err)
	for i := range resp {
		resp[i] = applyResponse{err: err}
	}
	return resp
}

// snapshotHeader opens every snapshot stream.
type snapshotHeader struct {
	Format  int            `json:"format"`
	Applied uint64         `json:"applied"`
	Head    chronicle.Head `json:"head"`
}

const snapshotFormat = 1

// Snapshot implements raft.FSM: a Pebble snapshot, streamed out later by Persist.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	// Make the state durable up to here: raft truncates the log behind a snapshot, and
	// what it truncates must not exist only in the OS page cache.
	if err := f.db.LogData(nil, pebble.Sync); err != nil {
		return nil, fmt.Errorf("sync state before snapshot: %w", err)
	}
	snap := f.db.NewSnapshot()
	rd := reader{snap}
	applied, err := rd.applied()
	if err != nil {
		snap.Close()
		return nil, err
	}
	head, err := rd.head()
	if err != nil {
		snap.Close()
		return nil, err
	}
	return &fsmSnapshot{snap: snap, header: snapshotHeader{Format: snapshotFormat, Applied: applied, Head: head}}, nil
}

type fsmSnapshot struct {
	snap   *pebble.Snapshot
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

// write streams the snapshot through snappy's framing format: ledger state is JSON and
// compresses several times over, which is disk and network a joining node saves.
func (s *fsmSnapshot) write(w io.Writer) error {
	sw := snappy.NewBufferedWriter(w)
	bw := bufio.NewWriterSize(sw, 1<<20)
	hb, err := json.Marshal(s.header)
	if err != nil {
		return err
	}
	if err := writeChunk(bw, hb); err != nil {
		return err
	}
	it, err := s.snap.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := writeChunk(bw, it.Key()); err != nil {
			return err
		}
		if err := writeChunk(bw, it.Value()); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
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
func (s *fsmSnapshot) Release() { _ = s.snap.Close() }

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
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<20)
	// A snappy frame stream starts with its 0xff stream identifier; an uncompressed
	// snapshot (format 1 as first written) starts with the header's small length.
	if first, err := br.Peek(1); err == nil && first[0] == 0xff {
		br = bufio.NewReaderSize(snappy.NewReader(br), 1<<20)
	}
	hb, err := readChunk(br)
	if err != nil {
		return fmt.Errorf("read snapshot header: %w", err)
	}
	var h snapshotHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return fmt.Errorf("decode snapshot header: %w", err)
	}
	if h.Format != snapshotFormat {
		return fmt.Errorf("snapshot format %d, this build reads %d", h.Format, snapshotFormat)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rd := reader{f.db}
	applied, err := rd.applied()
	if err != nil {
		return err
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
	// Clear everything, then load. A crash midway leaves no applied index, so the next
	// start restores again.
	b := f.db.NewBatch()
	defer func() { _ = b.Close() }()
	if err := b.DeleteRange([]byte{0}, []byte{0xff, 0xff}, nil); err != nil {
		return err
	}
	n := 0
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
		if string(k) == string(metaKey(metaApplied)) {
			continue // written last, below
		}
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		n++
		if b.Len() > 16<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			_ = b.Close()
			b = f.db.NewBatch()
		}
	}
	if err := b.Set(metaKey(metaApplied), u64(h.Applied), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("commit restored state: %w", err)
	}
	f.log.Info("restored state from snapshot", "keys", n, "position", h.Head.Position)
	if f.onApply != nil {
		f.onApply(h.Head, h.Applied, nil)
	}
	return nil
}
