package raftstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/storetest"
)

// The state DB is the embedded read model: for a random concurrent workload its account
// listing and statements (lines, balance_after, paging by version) equal a replay of the
// log, and stay equal after a restart that replays the log, after a snapshot and a
// restart from it, and as more commands arrive.
func TestReadModelMatchesReplay(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	env := newLedgerEnv(t, func(c *Config) { c.SnapshotThreshold = 64; c.TrailingLogs = 16 })
	s := env.open()
	runWorkload(t, s, 6, 30, seed)
	waitAllApplied(t, s)
	storetest.CheckReadModel(t, "after the workload", s, allEvents(t, s), rng)

	closeStore(t, s)
	s = env.open()
	waitAllApplied(t, s)
	storetest.CheckReadModel(t, "after a restart", s, allEvents(t, s), rng)

	runWorkload(t, s, 3, 20, seed+1)
	if err := s.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	runWorkload(t, s, 2, 10, seed+2)
	closeStore(t, s)
	s = env.open()
	waitAllApplied(t, s)
	storetest.CheckReadModel(t, "after a snapshot and a restart", s, allEvents(t, s), rng)
}

// Statement paging at the edges: before beyond the newest version, before 1 (nothing
// older), limits larger than the statement, and ids that are prefixes of one another.
func TestReadModelStatementPaging(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	ctx := context.Background()
	mustOK(t, s, cmdCreate("p", "USD", "10.00", ""), cmdCreate("p1", "USD", "", ""), cmdCreate("p10", "JPY", "7", ""))
	for i := range 9 {
		mustOK(t, s, cmdTransfer("p", "p1", fmt.Sprintf("0.%02d", i+1)), cmdDeposit("p10", "3"))
	}
	mustOK(t, s, cmdWithdraw("p1", "0.05"))
	waitAllApplied(t, s)
	acc, err := s.Account(ctx, "p")
	if err != nil || acc.Version != 10 {
		t.Fatalf("account p: %+v, %v", acc, err)
	}
	all, err := s.Transactions(ctx, "p", 0, 1000)
	if err != nil || len(all) != 10 {
		t.Fatalf("statement of p: %d lines, %v", len(all), err)
	}
	for i, l := range all {
		if want := uint64(10 - i); l.Version != want || l.AccountID != "p" {
			t.Fatalf("line %d: version %d of %s, want version %d of p", i, l.Version, l.AccountID, want)
		}
	}
	if all[9].Type != chronicle.LineOpening || all[9].Amount != 1000 || all[9].BalanceAfter != 1000 {
		t.Fatalf("opening line %+v", all[9])
	}
	if all[0].Type != chronicle.LineTransferOut || all[0].Counterparty != "p1" || all[0].BalanceAfter != acc.Balance {
		t.Fatalf("newest line %+v, account %+v", all[0], acc)
	}
	for _, c := range []struct {
		before uint64
		limit  int
		first  uint64
		n      int
	}{{0, 3, 10, 3}, {11, 3, 10, 3}, {1 << 40, 100, 10, 10}, {4, 100, 3, 3}, {1, 100, 0, 0}, {2, 1, 1, 1}, {0, 0, 0, 0}} {
		got, err := s.Transactions(ctx, "p", c.before, c.limit)
		if err != nil || len(got) != c.n || c.n > 0 && got[0].Version != c.first {
			t.Fatalf("Transactions(p, before %d, limit %d) = %d lines (%v), want %d from version %d", c.before, c.limit, len(got), err, c.n, c.first)
		}
	}
	if n, err := s.LineCount(ctx, "p1"); err != nil || n != 11 {
		t.Fatalf("LineCount(p1) = %d, %v; want 11", n, err)
	}
	if got, err := s.Accounts(ctx, "p", 10); err != nil || len(got) != 2 || got[0].ID != "p1" || got[1].ID != "p10" {
		t.Fatalf("Accounts(after p) = %+v, %v", got, err)
	}
	storetest.CheckReadModelSemantics(t, "paging", s)
}
