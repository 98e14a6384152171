// Package storetest is the conformance suite of chronicle.EventStore: one set of tests
// that every store (raftstore, the in-memory reference MemStore, and sqlstore) runs
// against its own backing, so that the stores cannot drift apart in what they promise.
//
// A store's test calls Run with a Harness that opens it:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{Open: ..., Reopen: ..., Extra: ...})
//	}
//
// Every subtest opens its own store on a fresh backing and runs in parallel with the
// others. Nothing waits on a clock: where a store may show a write a moment later (one
// process reading what another wrote), the suite polls for it.
package storetest

import (
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

// Harness tells the suite how to open a store.
type Harness struct {
	// Open opens a store on a fresh, empty backing, ready to execute commands, and
	// closes it when t ends (t.Cleanup).
	Open func(t *testing.T) chronicle.EventStore
	// Reopen closes s and opens a new store on the same backing: a restart. Nil skips
	// the restart subtest.
	Reopen func(t *testing.T, s chronicle.EventStore) chronicle.EventStore
	// Extra, when set, opens n more stores on s's backing at once: several processes on
	// one database, all executing commands. Nil for stores that cannot (one Raft node
	// owns its directory).
	Extra func(t *testing.T, s chronicle.EventStore, n int) []chronicle.EventStore
}

// Run runs every conformance subtest against stores opened by h.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is required")
	}
	for _, st := range []struct {
		name string
		run  func(*testing.T, Harness)
	}{
		{"SeedFlow", testSeedFlow},
		{"RefusalsWriteNothing", testRefusals},
		{"ConservationUnderLoad", testConservation},
		{"OverdraftRace", testOverdraftRace},
		{"Idempotency", testIdempotency},
		{"HashChainAndQueries", testHashChain},
		{"BalanceAtRandomInstants", testBalanceAt},
		{"Restart", testRestart},
		{"Tokens", testTokens},
		{"AccountLifecycle", testLifecycle},
		{"PendingTransfers", testPendingTransfers},
	} {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			st.run(t, h)
		})
	}
}

// stores returns s followed by n stores on its backing when the harness can open them,
// or just s: subtests that spread load over processes run on one store otherwise.
func (h Harness) stores(t *testing.T, s chronicle.EventStore, n int) []chronicle.EventStore {
	t.Helper()
	out := []chronicle.EventStore{s}
	if h.Extra == nil {
		return out
	}
	extra := h.Extra(t, s, n)
	if len(extra) != n {
		t.Fatalf("Harness.Extra opened %d stores, want %d", len(extra), n)
	}
	return append(out, extra...)
}
