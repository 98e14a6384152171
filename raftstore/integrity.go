package raftstore

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/metrics"
	"github.com/chronicle-ledger/chronicle/raftlog"
)

// Storage faults: a store that fails to give back what was written (a checksum
// mismatch, an I/O error, a record that no longer decodes) is never believed. At start
// the checks below refuse to open; at run time the first fault is recorded, the node
// stops serving and stops taking part in Raft (so a damaged leader hands over instead of
// holding the cluster up), and /ready says why. The process stays up, so the operator
// sees the reason where they look for it.

const (
	storeStateDB = "state DB"
	storeRaftLog = "Raft log"
)

// recoverAdvice ends every message about damage this node cannot repair by itself.
const recoverAdvice = "restore this node from a backup, or remove its data directory and join it to its cluster again so it copies the ledger from its peers"

// storageFault is the first storage fault this node saw at run time.
type storageFault struct {
	store string // storeStateDB or storeRaftLog
	dir   string
	err   error
	at    time.Time
}

// detail is what /ready and the log say: the store, where it is, the error and the way out.
func (f *storageFault) detail() string {
	advice := "; this node serves no reads or writes until it is repaired: " + recoverAdvice
	if strings.Contains(f.err.Error(), "from a backup") {
		advice = "; this node serves no reads or writes until it is repaired" // the error already says how
	}
	return fmt.Sprintf("storage fault in the %s (%s) at %s: %v%s", f.store, f.dir, f.at.UTC().Format(time.RFC3339), f.err, advice)
}

// apiError is what a request is told: stable code, no file names (those go to /ready and
// the log, for the operator).
func (f *storageFault) apiError() error {
	return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeStorageFault,
		"this node's %s is damaged; it serves no reads or writes until an operator repairs it (see /ready): retry on another node, with the same Idempotency-Key for a command", f.store)
}

// isStorageFault tells a store failing to give back what was written from a refusal or a
// store being closed: Pebble's corruption errors (checksums, bad blocks), the Raft log's
// CorruptionError, and I/O errors from the OS.
func isStorageFault(err error) bool {
	// A permission error is a misconfiguration, not damage.
	if err == nil || errors.Is(err, pebble.ErrClosed) || errors.Is(err, raft.ErrLogNotFound) || errors.Is(err, fs.ErrPermission) {
		return false
	}
	var ce *raftlog.CorruptionError
	var errno syscall.Errno
	var pe *fs.PathError
	return pebble.IsCorruptionError(err) || errors.As(err, &ce) || errors.As(err, &errno) || errors.As(err, &pe)
}

// faultErr is the error every request gets once a storage fault was recorded, nil before.
func (s *Store) faultErr() error {
	if f := s.fault.Load(); f != nil {
		return f.apiError()
	}
	return nil
}

// noteFault records err as a storage fault of store (the first one wins), stops the
// state machine and Raft, and returns what the request that met it is told.
func (s *Store) noteFault(store string, err error) error {
	dir := stateDirs(s.cfg.DataDir)
	if store == storeRaftLog {
		dir = filepath.Join(s.cfg.DataDir, "raft")
	}
	f := &storageFault{store: store, dir: dir, err: err, at: time.Now()}
	if s.fault.CompareAndSwap(nil, f) {
		s.log.Error("storage fault: this node stops serving and leaves Raft until it is repaired",
			"store", store, "dir", dir, "err", err, "advice", recoverAdvice)
		// Nothing after the damage may be applied: the state would silently skip it.
		s.fsm.setFatal(fmt.Errorf("%s: %w", store, err))
		// A damaged leader would hold the cluster up (it can neither answer nor, with a
		// damaged log, replicate), and a damaged voter must not win an election: leave
		// Raft. Asynchronously, because this may run on Raft's own goroutine, which
		// Shutdown waits for.
		if r := s.raft; r != nil {
			go func() {
				if err := r.Shutdown().Error(); err != nil {
					s.log.Warn("raft shutdown after a storage fault", "err", err)
				}
			}()
		}
	}
	return s.fault.Load().apiError()
}

// Fault is the error (503 storage_fault) every request gets once a storage fault was
// recorded, nil before.
func (s *Store) Fault() error { return s.faultErr() }

// StorageFault returns the first storage fault seen at run time, or "".
func (s *Store) StorageFault() string {
	if f := s.fault.Load(); f != nil {
		return f.detail()
	}
	return ""
}

// readFault passes a read's error on, recording it as a storage fault unless it is a
// domain answer (not found, say) or the store closing. Local state has no other way to
// fail a read: anything else is the state DB not giving back what was written (a bad
// block, an I/O error, a record that does not decode or an index entry without its
// record), and the answer must not be guessed around it.
func (s *Store) readFault(err error) error {
	var de *chronicle.Error
	if err == nil || errors.As(err, &de) || errors.Is(err, pebble.ErrClosed) {
		return err
	}
	return s.noteFault(storeStateDB, err)
}

// guardedLogs is the Raft log as Raft sees it: a read that finds damage is a storage
// fault of the node.
type guardedLogs struct {
	raftlog.Store
	onFault func(error)
	metrics *metrics.Raft // nil: not measured
}

// StoreLogs implements raft.LogStore, timing the append and its fsync.
func (g *guardedLogs) StoreLogs(logs []*raft.Log) error {
	if g.metrics == nil {
		return g.Store.StoreLogs(logs)
	}
	start := time.Now()
	err := g.Store.StoreLogs(logs)
	g.metrics.LogStored(time.Since(start))
	return err
}

// StoreLog implements raft.LogStore (Raft calls StoreLogs, but StoreLog must not bypass
// the timing of the embedded store's StoreLogs).
func (g *guardedLogs) StoreLog(l *raft.Log) error { return g.StoreLogs([]*raft.Log{l}) }

// GetLog implements raft.LogStore. hashicorp/raft panics when GetLog fails while it
// applies committed entries (Raft.processLogs), which would take the process down on
// damage a peer can repair; there, once the fault is recorded and the state machine has
// stopped (so nothing from this entry on is applied), the entry is handed over as a
// no-op. Everywhere else (replication to followers above all) the error is returned, so
// damaged bytes never leave this node.
func (g *guardedLogs) GetLog(index uint64, l *raft.Log) error {
	err := g.Store.GetLog(index, l)
	if err == nil || errors.Is(err, raft.ErrLogNotFound) {
		return err
	}
	g.onFault(fmt.Errorf("read entry %d: %w", index, err))
	if calledFromProcessLogs() {
		*l = raft.Log{Index: index, Type: raft.LogNoop}
		return nil
	}
	return err
}

// calledFromProcessLogs reports whether hashicorp/raft's processLogs is on the stack.
func calledFromProcessLogs() bool {
	pcs := make([]uintptr, 16)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "raft.(*Raft).processLogs") {
			return true
		}
		if !more {
			return false
		}
	}
}

// checkAppliedCovered refuses a state DB whose applied index is past everything the
// Raft log and the latest snapshot hold: the log lost entries the state already applied
// (a damaged or replaced raft/ directory, or a final record damaged so that it looked
// torn). Raft would then hand out those indexes again to new entries, and the state
// machine would skip them as already applied: acknowledged writes lost, and replicas
// diverging.
func (s *Store) checkAppliedCovered(snapIndex uint64) error {
	applied := s.fsm.mem.applied
	last, err := s.logs.LastIndex()
	if err != nil {
		return fmt.Errorf("read the Raft log's last index in %s: %w", filepath.Join(s.cfg.DataDir, "raft"), err)
	}
	if applied <= max(last, snapIndex) {
		return nil
	}
	return fmt.Errorf("the state DB in %s has applied Raft index %d, but the Raft log in %s ends at index %d and the latest snapshot is at index %d: "+
		"the log lost entries the state had applied (damaged or replaced files); this node cannot start from its own files: %s",
		filepath.Join(s.cfg.DataDir, "state"), applied, filepath.Join(s.cfg.DataDir, "raft"), last, snapIndex, recoverAdvice)
}

// checkHead refuses a state DB whose head record does not match the event stored at its
// position: the head must name that event's hash, the event's content must hash to it,
// and the event before it must carry the hash the head event names as previous. It costs
// two point reads; the whole chain is re-read by the scrubber.
func checkHead(rd reader, head chronicle.Head, dir string) error {
	if head.Position == 0 {
		return nil
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("the state DB in %s is damaged: %s; this node cannot start from its own files: %s",
			dir, fmt.Sprintf(format, args...), recoverAdvice)
	}
	e, ok, err := rd.event(head.Position)
	switch {
	case err != nil:
		return refuse("reading the head event at position %d: %v", head.Position, err)
	case !ok:
		return refuse("the head names position %d, which holds no event", head.Position)
	case e.Position != head.Position:
		return refuse("the event stored at position %d says position %d", head.Position, e.Position)
	case e.Hash != head.Hash:
		return refuse("the head names hash %s at position %d, the event there has hash %s", head.Hash, head.Position, e.Hash)
	}
	if got := e.ComputeHash(); got != e.Hash {
		return refuse("the event at position %d has hash %s but its content hashes to %s", e.Position, e.Hash, got)
	}
	prevHash := chronicle.GenesisHash
	if head.Position > 1 {
		prev, ok, err := rd.event(head.Position - 1)
		switch {
		case err != nil:
			return refuse("reading the event at position %d: %v", head.Position-1, err)
		case !ok:
			return refuse("position %d, before the head, holds no event", head.Position-1)
		}
		prevHash = prev.Hash
	}
	if e.PrevHash != prevHash {
		return refuse("the event at position %d names previous hash %s, the event before it has hash %s", e.Position, e.PrevHash, prevHash)
	}
	return nil
}
