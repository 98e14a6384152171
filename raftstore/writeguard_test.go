package raftstore_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/raftstore"
)

// While the write guard refuses (a disk below its reserve), commands, token writes and
// node metadata get its error and nothing is proposed to Raft; reads still work; once
// it lets writes through again they commit.
func TestWriteGuardRefusesBeforeProposing(t *testing.T) {
	var refuse atomic.Bool
	guardErr := chronicle.Errorf(chronicle.KindInsufficientStorage, chronicle.CodeInsufficientStorage, "disk below the reserve")
	s := openLeader(t, raftstore.Config{DataDir: t.TempDir(), NodeID: "n1", RaftAddr: freeAddr(t), Bootstrap: true,
		IdempotencyWindow: time.Hour, ApplyTimeout: 5 * time.Second,
		WriteGuard: func() error {
			if refuse.Load() {
				return guardErr
			}
			return nil
		}})
	ctx := t.Context()
	create := chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: "a", OwnerName: "A", Currency: "USD", InitialBalance: "10.00"}
	if _, err := s.Execute(ctx, []chronicle.Command{create}); err != nil {
		t.Fatalf("create: %v", err)
	}
	before := s.Status()
	refuse.Store(true)
	deposit := chronicle.Command{Type: chronicle.CmdDeposit, AccountID: "a", Amount: "1.00"}
	for range 3 {
		if _, err := s.Execute(ctx, []chronicle.Command{deposit}); !errors.Is(err, guardErr) {
			t.Fatalf("deposit while refused: %v, want the guard's error", err)
		}
	}
	if _, err := s.ApplyToken(ctx, chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: "w", Role: chronicle.RoleWriter,
		Hash: chronicle.HashToken("w"), At: time.Now(), By: "test"}); !errors.Is(err, guardErr) {
		t.Fatalf("token while refused: %v, want the guard's error", err)
	}
	if err := s.Register(ctx, raftstore.NodeMeta{ID: "n1", APIURL: "http://127.0.0.1:1"}); !errors.Is(err, guardErr) {
		t.Fatalf("register while refused: %v, want the guard's error", err)
	}
	after := s.Status()
	if after.ProposedEntries != before.ProposedEntries || after.CommitIndex != before.CommitIndex {
		t.Fatalf("refused writes reached Raft: proposed %d -> %d, commit index %d -> %d",
			before.ProposedEntries, after.ProposedEntries, before.CommitIndex, after.CommitIndex)
	}
	if a, err := s.Account(ctx, "a"); err != nil || a.Balance != 1000 {
		t.Fatalf("read while refused: %+v, %v", a, err)
	}
	refuse.Store(false)
	if _, err := s.Execute(ctx, []chronicle.Command{deposit}); err != nil {
		t.Fatalf("deposit after the guard cleared: %v", err)
	}
	if a, err := s.Account(ctx, "a"); err != nil || a.Balance != 1100 {
		t.Fatalf("balance after: %+v, %v, want 11.00", a, err)
	}
}
