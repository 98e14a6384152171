package raftstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// stubMagic opens a stub snapshot. No full snapshot starts with it: those start with
// snappy's stream identifier (0xff) or, in release 0.1, with '{'.
var stubMagic = []byte("chronicle-stub\x00")

// stubSnapshot is what a node's own snapshot holds: the applied index and head of its
// state DB when the snapshot was taken, nothing else.
type stubSnapshot struct{ header snapshotHeader }

// Persist implements raft.FSMSnapshot.
func (s stubSnapshot) Persist(sink raft.SnapshotSink) error {
	hb, err := s.header.marshal()
	if err == nil {
		_, err = sink.Write(append(bytes.Clone(stubMagic), hb...))
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot stub: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (stubSnapshot) Release() {}

// parseStub tells a stub from a full snapshot by its first bytes, which it peeks.
func parseStub(br *bufio.Reader) (snapshotHeader, bool, error) {
	lead, err := br.Peek(len(stubMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return snapshotHeader{}, false, err
	}
	if !bytes.Equal(lead, stubMagic) {
		return snapshotHeader{}, false, nil
	}
	b, err := io.ReadAll(br)
	if err != nil {
		return snapshotHeader{}, true, err
	}
	var h snapshotHeader
	if err := h.unmarshal(b[len(stubMagic):]); err != nil {
		return h, true, fmt.Errorf("snapshot stub: %w", err)
	}
	return h, true, nil
}

// snapStore is raft's snapshot store. hashicorp's FileSnapshotStore keeps every
// snapshot's metadata (index, term, configuration) and bytes, checksummed: for a
// snapshot this node took, a stub; for one a leader sent, the whole state. Open turns a
// stub into the whole state, read from the state DB at that moment, so a follower that
// needs a snapshot gets one; the state it gets is at least as new as the stub's index
// (the FSM skips entries it already holds, as after a restart).
//
// Raft does not restore a snapshot when it starts (NoSnapshotRestoreOnStart): the state
// DB already is the state, and checkSnapshot checks that it covers the latest snapshot.
type snapStore struct {
	files *raft.FileSnapshotStore
	fsm   *fsm
	dir   string
}

var _ raft.SnapshotStore = (*snapStore)(nil)

// Create implements raft.SnapshotStore.
func (s *snapStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	return s.files.Create(version, index, term, configuration, configurationIndex, trans)
}

// List implements raft.SnapshotStore.
func (s *snapStore) List() ([]*raft.SnapshotMeta, error) { return s.files.List() }

// Open implements raft.SnapshotStore. A stub is materialised into a temporary file,
// because raft sends a snapshot's size before its bytes.
func (s *snapStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.files.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(rc, 1<<16)
	stub, isStub, err := parseStub(br)
	if err != nil {
		_ = rc.Close()
		return nil, nil, fmt.Errorf("raftstore: snapshot %s: %w", id, err)
	}
	if !isStub {
		return meta, struct {
			io.Reader
			io.Closer
		}{br, rc}, nil
	}
	_ = rc.Close()
	f, size, err := s.materialize(stub)
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: snapshot %s: %w", id, err)
	}
	m := *meta
	m.Size = size
	return &m, f, nil
}

// materialize writes the whole state DB, as a full snapshot stream, to an unlinked
// temporary file and returns it rewound.
func (s *snapStore) materialize(stub snapshotHeader) (*os.File, int64, error) {
	full, err := s.fsm.fullSnapshot()
	if err != nil {
		return nil, 0, err
	}
	defer full.Release()
	if err := coversStub(full.header, stub, full.snap); err != nil {
		return nil, 0, err
	}
	f, err := os.CreateTemp(s.dir, "materialized-*.tmp")
	if err != nil {
		return nil, 0, fmt.Errorf("materialize snapshot: %w", err)
	}
	// Unlinked at once: the open file keeps the data until raft closes it, and nothing is
	// left behind by a crash.
	_ = os.Remove(f.Name())
	if err := full.write(f); err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("materialize snapshot: %w", err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("materialize snapshot: %w", err)
	}
	return f, size, nil
}

// coversStub checks that a state whose applied index and head are state (read through
// rd) holds everything the stub's snapshot did: Raft truncated the log behind the stub,
// so a state DB that is behind it, or holds a different event at its head position, was
// lost or damaged and cannot be made whole from this node's log.
func coversStub(state, stub snapshotHeader, r pebble.Reader) error {
	if state.Applied < stub.Applied {
		return fmt.Errorf("the state DB has applied index %d, behind the latest snapshot's %d: the state DB was lost or damaged after the snapshot, and the log behind it is gone", state.Applied, stub.Applied)
	}
	if stub.Head.Position == 0 {
		return nil
	}
	e, ok, err := reader{r}.event(stub.Head.Position)
	if err != nil {
		return fmt.Errorf("read the event at the snapshot's head position %d: %w", stub.Head.Position, err)
	}
	if !ok || e.Hash != stub.Head.Hash {
		return fmt.Errorf("the state DB's event at position %d is not the one the latest snapshot recorded (hash %s): the state DB was replaced or damaged", stub.Head.Position, stub.Head.Hash)
	}
	return nil
}

// checkSnapshot runs before Raft starts: the state DB must cover the latest snapshot.
// A full snapshot (received from a leader) whose install a crash interrupted is
// installed now; a stub the state DB does not cover is refused, by name. It returns the
// highest Raft index the snapshot accounts for (0 without one), which the state DB's
// applied index may legitimately reach with no log behind it.
func (s *snapStore) checkSnapshot() (uint64, error) {
	metas, err := s.files.List()
	if err != nil || len(metas) == 0 {
		return 0, err
	}
	meta, rc, err := s.files.Open(metas[0].ID)
	if err != nil {
		return 0, fmt.Errorf("open the latest snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 1<<16)
	stub, isStub, err := parseStub(br)
	if err != nil {
		return 0, fmt.Errorf("snapshot %s: %w", meta.ID, err)
	}
	if !isStub {
		// A full snapshot is the leader's state DB when it was streamed, which may be
		// past the index raft filed it under: its header says how far.
		h, _, err := readFullHeader(br)
		if err != nil {
			return 0, fmt.Errorf("snapshot %s: %w", meta.ID, err)
		}
		_, rc2, err := s.files.Open(meta.ID)
		if err != nil {
			return 0, fmt.Errorf("open the latest snapshot %s: %w", meta.ID, err)
		}
		// Restore skips a snapshot the state DB already covers.
		return max(meta.Index, h.Applied), s.fsm.Restore(rc2)
	}
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	rd := reader{s.fsm.db}
	applied, err := rd.applied()
	if err != nil {
		return 0, err
	}
	head, err := rd.head()
	if err != nil {
		return 0, err
	}
	if err := coversStub(snapshotHeader{Applied: applied, Head: head}, stub, s.fsm.db); err != nil {
		return 0, fmt.Errorf("snapshot %s in %s: %w; this node cannot start from its own files: restore it from a backup, or remove its data directory and join it to its cluster again", meta.ID, s.dir, err)
	}
	s.fsm.log.Info("state DB covers the latest snapshot", "snapshot", meta.ID, "snapshot_index", stub.Applied, "applied", applied)
	return max(meta.Index, stub.Applied), nil
}
