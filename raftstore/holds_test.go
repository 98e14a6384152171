package raftstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/holdsweep"
)

// testClock is a clock a test moves forward: the store's commit times and the sweep's
// deadlines both read it.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

func cmdHold(from, to, amount string, timeout int64) chronicle.Command {
	c := cmdTransfer(from, to, amount)
	c.Pending, c.TimeoutSeconds = true, timeout
	return c
}

func cmdCapture(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdCaptureTransfer, TransferID: id, Amount: chronicle.Decimal(amount)}
}

func cmdVoid(id string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdVoidTransfer, TransferID: id}
}

func wantHeld(t *testing.T, s *Store, id string, balance, held int64) {
	t.Helper()
	a, err := s.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != balance || a.Held != held {
		t.Fatalf("account %s: balance %d held %d, want %d and %d", id, a.Balance, a.Held, balance, held)
	}
}

func holdState(t *testing.T, s *Store, id string) chronicle.TransferState {
	t.Helper()
	p, ok, err := s.PendingTransfer(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("PendingTransfer(%s): %v %v", id, ok, err)
	}
	return p.State
}

// Holds, captures and voids survive a restart (working state reloaded from the state DB)
// and a snapshot restored into a fresh state machine; the replay of the events agrees.
func TestStoreHoldsSurviveRestartAndSnapshot(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "100.00", ""), cmdCreate("b", "USD", "", ""))
	h1 := mustOK(t, s, cmdHold("a", "b", "30", 3600))[0].TransferID
	h2 := mustOK(t, s, cmdHold("a", "b", "20", 3600))[0].TransferID
	h3 := mustOK(t, s, cmdHold("a", "b", "10", 7200))[0].TransferID
	mustOK(t, s, cmdCapture(h1, "12.5"), cmdVoid(h2))
	wantHeld(t, s, "a", 8750, 1000)
	verifyAgainstReplay(t, s)
	waitAllApplied(t, s)
	before := dumpState(t, s)
	snap, _, _ := persist(t, s.fsm)
	closeStore(t, s)

	s = env.open()
	waitAllApplied(t, s)
	requireSameState(t, before, dumpState(t, s))
	wantHeld(t, s, "a", 8750, 1000)
	if st := holdState(t, s, h1); st != chronicle.TransferStateCaptured {
		t.Fatalf("h1 %s", st)
	}
	if at, ok, _ := s.NextHoldDeadline(context.Background()); !ok || at.IsZero() {
		t.Fatal("the open hold's deadline was not reloaded")
	}
	// A finished hold is refused from the state DB; the open one still works.
	res := mustExec(t, s, cmdCapture(h2, ""), cmdCapture(h3, ""))
	if res[0].Err == nil || res[0].Err.Code != chronicle.CodeTransferNotPending || res[1].Err != nil {
		t.Fatalf("after restart: %+v", res)
	}
	wantHeld(t, s, "a", 7750, 0)
	verifyAgainstReplay(t, s)

	// The snapshot taken before, restored into a fresh state machine.
	fresh := newBareFSM(t)
	if err := restore(fresh, snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	a, _ := fresh.mem.account("a")
	if a.Held != 1000 || len(fresh.mem.holds.byID) != 1 || fresh.mem.holds.byID[h3].Amount != 1000 || len(fresh.mem.holds.due) != 1 {
		t.Fatalf("restored working state: account %+v, holds %+v", a, fresh.mem.holds)
	}
}

// The sweep expires a due hold with no client command touching it.
func TestStoreSweepExpiresHolds(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	env := newLedgerEnv(t, func(c *Config) { c.Clock = clock.now })
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "100.00", ""), cmdCreate("b", "USD", "", ""))
	id := mustOK(t, s, cmdHold("a", "b", "40", 60))[0].TransferID
	keep := mustOK(t, s, cmdHold("a", "b", "1", 7200))[0].TransferID
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		holdsweep.Run(ctx, holdsweep.Config{Active: s.IsLeader, NextDeadline: s.NextHoldDeadline, Execute: s.Execute,
			Interval: 5 * time.Millisecond, Now: clock.now})
	}()
	t.Cleanup(func() { cancel(); <-done })

	pos := mustHead(t, s).Position
	// Before the deadline nothing happens; the sweep proposes only past it.
	if holdsweep.Once(ctx, holdsweep.Config{Active: s.IsLeader, NextDeadline: s.NextHoldDeadline, Execute: s.Execute, Now: clock.now}) {
		t.Fatal("a sweep expired a hold before its deadline")
	}
	clock.advance(61 * time.Second)
	waitUntil(t, "the sweep to expire the hold", func() bool {
		a, _ := s.Account(context.Background(), "a")
		return a.Held == 100
	})
	if st := holdState(t, s, id); st != chronicle.TransferStateExpired {
		t.Fatalf("hold %s", st)
	}
	if st := holdState(t, s, keep); st != chronicle.TransferStatePending {
		t.Fatalf("the later hold is %s", st)
	}
	evs := allEvents(t, s)
	var expired []chronicle.Event
	for _, e := range evs[pos:] {
		if e.EventType == chronicle.EventTransferExpired {
			expired = append(expired, e)
		}
	}
	if len(expired) != 1 || expired[0].Data.TransferID != id || expired[0].CreatedBy != "hold-sweep" {
		t.Fatalf("expiry events %+v", expired)
	}
	res := mustExec(t, s, cmdCapture(id, ""))
	if res[0].Err == nil || res[0].Err.Code != chronicle.CodeTransferExpired {
		t.Fatalf("capture after expiry: %+v", res[0])
	}
	verifyAgainstReplay(t, s)
}
