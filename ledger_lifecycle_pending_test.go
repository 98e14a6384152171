package chronicle_test

import (
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// TestLifecycleWithHolds: the account lifecycle and two-phase transfers together. A frozen
// account cannot make a hold; a hold made before the freeze still captures (its money was
// promised); a closed credit account refuses the capture; an account with money held
// cannot close until the hold is finished, and a due hold is released by the close itself.
func TestLifecycleWithHolds(t *testing.T) {
	s := holdSetup(t) // A 100.00 (limit 10.00), B 0.00
	hold := mustOK(t, s, t0.Add(time.Second), newHold("A", "B", "30", 60))[0].TransferID
	mustOK(t, s, t0.Add(2*time.Second), newFreeze("A", "fraud review"))

	before := snap(s)
	r := execAt(t, s, t0.Add(3*time.Second), newHold("A", "B", "1", 60))[0]
	wantRefused(t, r, chronicle.KindRejected, chronicle.CodeAccountFrozen, "from_account_id")
	wantUnchanged(t, before, s)
	mustOK(t, s, t0.Add(4*time.Second), newCapture(hold, "10"))
	wantMoney(t, s, "A", 9000, 0)
	wantMoney(t, s, "B", 1000, 0)

	// A hold to B, then B is emptied and closed: the capture is refused, the hold stays.
	mustOK(t, s, t0.Add(5*time.Second), newLifecycle(chronicle.CmdUnfreezeAccount, "A", ""))
	second := mustOK(t, s, t0.Add(6*time.Second), newHold("A", "B", "5", 60))[0].TransferID
	mustOK(t, s, t0.Add(7*time.Second), newTransfer("B", "A", "10"), newClose("B", "customer left"))
	before = snap(s)
	r = execAt(t, s, t0.Add(8*time.Second), newCapture(second, ""))[0]
	wantRefused(t, r, chronicle.KindRejected, chronicle.CodeAccountClosed, "to_account_id")
	wantUnchanged(t, before, s)
	wantMoney(t, s, "A", 10000, 500)

	// A cannot close with 5.00 held even at a zero balance, until the hold is due: then
	// the close itself releases it (TransferExpired, then AccountClosed).
	mustOK(t, s, t0.Add(9*time.Second), newWithdraw("A", "100"))
	r = execAt(t, s, t0.Add(10*time.Second), newClose("A", "done"))[0]
	wantRefused(t, r, chronicle.KindRejected, chronicle.CodeBalanceNotZero, "account_id")
	res := mustOK(t, s, t0.Add(6*time.Second+61*time.Second), newClose("A", "done"))
	if a := account(t, s, "A"); a.Status != chronicle.StatusClosed || a.Held != 0 {
		t.Fatalf("A after the close: %+v", a)
	}
	if p := s.Holds[second]; p.State != chronicle.TransferStateExpired {
		t.Fatalf("the due hold is %s, want expired by the close", p.State)
	}
	if evs := res[0].Events; len(evs) != 1 || evs[0].EventType != chronicle.EventAccountClosed {
		t.Fatalf("the close's own events: %+v", evs)
	}
}
