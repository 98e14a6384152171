package raftstore

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// A node's own snapshot is a stub of a few bytes however large the ledger, and opening it
// (as the leader does for a follower that needs it) yields the whole state: restored
// into an empty state machine it reproduces the state DB key for key.
func TestSnapshotStubMaterializes(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "1000.00", ""), cmdCreate("b", "USD", "", ""))
	for range 60 {
		mustOK(t, s, cmdTransfer("a", "b", "1.25"))
	}
	if err := s.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	waitAllApplied(t, s)
	metas, err := s.snaps.List()
	if err != nil || len(metas) == 0 {
		t.Fatalf("List: %v, %d snapshots", metas, len(metas))
	}
	stored, err := os.Stat(filepath.Join(env.cfg.DataDir, "snapshots", "snapshots", metas[0].ID, "state.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if stored.Size() > 256 || metas[0].Size != stored.Size() {
		t.Fatalf("stored snapshot holds %d bytes (meta says %d), want a stub of at most 256", stored.Size(), metas[0].Size)
	}
	want := dumpState(t, s)

	meta, rc, err := s.snaps.Open(metas[0].ID)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	data, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != meta.Size || meta.Size <= stored.Size() {
		t.Fatalf("opened snapshot: read %d bytes, meta says %d (stub %d)", len(data), meta.Size, stored.Size())
	}
	if meta.Index != metas[0].Index || meta.Term != metas[0].Term {
		t.Fatalf("opened snapshot's meta %d/%d, listed %d/%d", meta.Index, meta.Term, metas[0].Index, metas[0].Term)
	}
	fresh := newBareFSM(t)
	if err := restore(fresh, data); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	requireSameState(t, want, dumpReader(t, fresh.db))
	if tmp, _ := filepath.Glob(filepath.Join(env.cfg.DataDir, "snapshots", "materialized-*")); len(tmp) != 0 {
		t.Fatalf("materialised snapshot left behind: %v", tmp)
	}
}

// A state DB replaced by another ledger's (applied index as far along, different events)
// is refused at start: its head is not the event the snapshot recorded.
func TestStoreRefusesStateReplacedUnderSnapshot(t *testing.T) {
	t.Parallel()
	mk := func(amount string) *ledgerEnv {
		env := newLedgerEnv(t, nil)
		s := env.open()
		mustOK(t, s, cmdCreate("a", "USD", "1000.00", ""), cmdCreate("b", "USD", "", ""))
		for range 30 {
			mustOK(t, s, cmdTransfer("a", "b", amount))
		}
		if err := s.Snapshot(); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		waitAllApplied(t, s)
		closeStore(t, s)
		return env
	}
	victim, other := mk("1.00"), mk("2.00")
	state := filepath.Join(victim.cfg.DataDir, "state")
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(other.cfg.DataDir, "state"), state); err != nil {
		t.Fatal(err)
	}
	_, err := Open(victim.cfg)
	if err == nil || !strings.Contains(err.Error(), "is not the one the latest snapshot recorded") {
		t.Fatalf("Open with a replaced state DB: %v, want a refusal", err)
	}
}

var _ raft.SnapshotStore = (*snapStore)(nil)
