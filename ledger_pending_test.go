package chronicle_test

import (
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

func newHold(from, to, amount string, timeout int64) chronicle.Command {
	c := newTransfer(from, to, amount)
	c.Pending, c.TimeoutSeconds = true, timeout
	return c
}

func newCapture(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdCaptureTransfer, ID: chronicle.NewID(), TransferID: id, Amount: chronicle.Decimal(amount)}
}

func newVoid(id, reason string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdVoidTransfer, ID: chronicle.NewID(), TransferID: id, Reason: reason}
}

func newExpire() chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdExpireTransfers, ID: chronicle.NewID()}
}

// holdSetup: A holds 100.00 USD with a 10.00 overdraft limit, B 0.00 USD, J 500 JPY.
func holdSetup(t *testing.T) *chronicle.MemState {
	t.Helper()
	s := chronicle.NewMemState()
	mustOK(t, s, t0, newCreate("A", "USD", "100", "10"), newCreate("B", "USD", "", ""), newCreate("J", "JPY", "500", ""))
	return s
}

func account(t *testing.T, s *chronicle.MemState, id string) chronicle.Account {
	t.Helper()
	a, ok := s.Accounts[id]
	if !ok {
		t.Fatalf("no account %s", id)
	}
	return a
}

func wantMoney(t *testing.T, s *chronicle.MemState, id string, balance, held int64) {
	t.Helper()
	a := account(t, s, id)
	if a.Balance != balance || a.Held != held || a.Available() != balance-held {
		t.Fatalf("account %s: balance %d held %d available %d, want balance %d held %d", id, a.Balance, a.Held, a.Available(), balance, held)
	}
}

func TestHoldReservesAvailableNotBalance(t *testing.T) {
	s := holdSetup(t)
	r := mustOK(t, s, t0.Add(time.Second), newHold("A", "B", "60", 0))[0]
	if r.TransferID == "" || len(r.Events) != 1 {
		t.Fatalf("hold result %+v", r)
	}
	e := r.Events[0]
	if e.EventType != chronicle.EventTransferPending || e.AggregateID != "A" || e.Data.Amount != 6000 ||
		e.Data.BalanceAfter != 10000 || e.Data.HeldAfter != 6000 || e.Data.TransferID != r.TransferID ||
		!e.Data.ExpiresAt.Equal(r.CommitTime.Add(86400*time.Second)) {
		t.Fatalf("TransferPending %+v", e)
	}
	wantMoney(t, s, "A", 10000, 6000)
	wantMoney(t, s, "B", 0, 0)
	if s.Totals()["USD"] != 0 {
		t.Fatal("a hold moved money")
	}
	p := s.Holds[r.TransferID]
	if p.State != chronicle.TransferStatePending || p.Amount != 6000 || p.FromAccountID != "A" || p.ToAccountID != "B" {
		t.Fatalf("hold record %+v", p)
	}

	// Available is 40.00 + 10.00 overdraft: every debit checks it, not the balance.
	before := snap(s)
	res := execAt(t, s, t0.Add(2*time.Second), newWithdraw("A", "50.01"), newTransfer("A", "B", "50.01"), newHold("A", "B", "50.01", 60))
	for _, r := range res {
		wantRefused(t, r, chronicle.KindRejected, chronicle.CodeInsufficientFunds, r.Err.Field)
	}
	wantUnchanged(t, before, s)
	mustOK(t, s, t0.Add(3*time.Second), newWithdraw("A", "50"))
	wantMoney(t, s, "A", 5000, 6000) // available -10.00: at the limit
	wantRefused(t, execAt(t, s, t0.Add(4*time.Second), newHold("A", "B", "0.01", 60))[0],
		chronicle.KindRejected, chronicle.CodeInsufficientFunds, "from_account_id")
}

func TestCaptureFullAndPartial(t *testing.T) {
	s := holdSetup(t)
	full := mustOK(t, s, t0.Add(time.Second), newHold("A", "B", "30", 60))[0].TransferID
	part := mustOK(t, s, t0.Add(2*time.Second), newHold("A", "B", "20", 60))[0].TransferID
	wantMoney(t, s, "A", 10000, 5000)

	r := mustOK(t, s, t0.Add(3*time.Second), newCapture(full, ""))[0]
	if r.TransferID != full || len(r.Events) != 2 {
		t.Fatalf("capture result %+v", r)
	}
	d, c := r.Events[0], r.Events[1]
	if d.EventType != chronicle.EventTransferCaptured || d.AggregateID != "A" || d.Data.Amount != 3000 ||
		d.Data.BalanceAfter != 7000 || d.Data.HeldAfter != 2000 || d.Data.FromAccountID != "A" {
		t.Fatalf("debit leg %+v", d)
	}
	if c.EventType != chronicle.EventTransferCaptured || c.AggregateID != "B" || c.Data.Amount != 3000 || c.Data.BalanceAfter != 3000 {
		t.Fatalf("credit leg %+v", c)
	}
	wantMoney(t, s, "A", 7000, 2000)
	wantMoney(t, s, "B", 3000, 0)

	// Part of a hold: the rest is released by the same event.
	r = mustOK(t, s, t0.Add(4*time.Second), newCapture(part, "5.5"))[0]
	if r.Events[0].Data.Amount != 550 || r.Events[0].Data.HeldAfter != 0 {
		t.Fatalf("partial capture %+v", r.Events[0])
	}
	wantMoney(t, s, "A", 6450, 0)
	wantMoney(t, s, "B", 3550, 0)
	if p := s.Holds[part]; p.State != chronicle.TransferStateCaptured || p.CapturedAmount != 550 {
		t.Fatalf("record %+v", p)
	}
	if s.Totals()["USD"] != 0 {
		t.Fatal("unbalanced")
	}

	// Captured once.
	before := snap(s)
	for _, c := range []chronicle.Command{newCapture(part, ""), newVoid(part, ""), newCapture(full, "1")} {
		wantRefused(t, execAt(t, s, t0.Add(5*time.Second), c)[0], chronicle.KindRejected, chronicle.CodeTransferNotPending, "transfer_id")
	}
	wantUnchanged(t, before, s)
}

func TestCaptureAndVoidErrors(t *testing.T) {
	s := holdSetup(t)
	id := mustOK(t, s, t0.Add(time.Second), newHold("A", "B", "30", 60))[0].TransferID
	posted := mustOK(t, s, t0.Add(2*time.Second), newTransfer("A", "B", "1"))[0].TransferID
	before := snap(s)
	cases := []struct {
		cmd         chronicle.Command
		kind        chronicle.Kind
		code, field string
	}{
		{newCapture("no-such-transfer", ""), chronicle.KindNotFound, chronicle.CodeTransferNotFound, "transfer_id"},
		{newVoid("no-such-transfer", ""), chronicle.KindNotFound, chronicle.CodeTransferNotFound, "transfer_id"},
		// A posted transfer is not a hold: the state machine keeps records of holds only.
		{newCapture(posted, ""), chronicle.KindNotFound, chronicle.CodeTransferNotFound, "transfer_id"},
		{newCapture("", ""), chronicle.KindMalformed, chronicle.CodeMissingField, "transfer_id"},
		{newVoid("", ""), chronicle.KindMalformed, chronicle.CodeMissingField, "transfer_id"},
		{newCapture(id, "30.01"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{newCapture(id, "0"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{newCapture(id, "-1"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{newCapture(id, "0.001"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{newCapture(id, "abc"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{newVoid(id, "bad\x01reason"), chronicle.KindMalformed, chronicle.CodeInvalidField, "reason"},
		{newHold("A", "B", "1", -1), chronicle.KindMalformed, chronicle.CodeInvalidField, "timeout_seconds"},
		{newHold("A", "B", "1", chronicle.MaxHoldTimeoutSeconds+1), chronicle.KindMalformed, chronicle.CodeInvalidField, "timeout_seconds"},
		{func() chronicle.Command { c := newTransfer("A", "B", "1"); c.TimeoutSeconds = 5; return c }(), chronicle.KindMalformed, chronicle.CodeInvalidField, "timeout_seconds"},
		{newHold("A", "J", "1", 60), chronicle.KindRejected, chronicle.CodeCurrencyMismatch, "to_account_id"},
		{newHold("A", "nobody", "1", 60), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "to_account_id"},
		{newHold("A", "A", "1", 60), chronicle.KindRejected, chronicle.CodeSameAccount, "to_account_id"},
		{newExpire(), chronicle.KindRejected, chronicle.CodeNoTransferDue, ""},
	}
	for i, c := range cases {
		r := execAt(t, s, t0.Add(time.Duration(3+i)*time.Second), c.cmd)[0]
		if r.Err == nil {
			t.Fatalf("case %d: succeeded", i)
		}
		wantRefused(t, r, c.kind, c.code, c.field)
	}
	wantUnchanged(t, before, s)
}

func TestVoidReleases(t *testing.T) {
	s := holdSetup(t)
	id := mustOK(t, s, t0.Add(time.Second), newHold("A", "B", "30", 60))[0].TransferID
	r := mustOK(t, s, t0.Add(2*time.Second), newVoid(id, "customer cancelled"))[0]
	e := r.Events[0]
	if len(r.Events) != 1 || e.EventType != chronicle.EventTransferVoided || e.Data.Reason != "customer cancelled" ||
		e.Data.HeldAfter != 0 || e.Data.BalanceAfter != 10000 || e.Data.Amount != 3000 || r.TransferID != id {
		t.Fatalf("void %+v", r)
	}
	wantMoney(t, s, "A", 10000, 0)
	wantRefused(t, execAt(t, s, t0.Add(3*time.Second), newCapture(id, ""))[0], chronicle.KindRejected, chronicle.CodeTransferNotPending, "transfer_id")
}

func TestLateCaptureExpiresTheHold(t *testing.T) {
	s := holdSetup(t)
	id := mustOK(t, s, t0, newHold("A", "B", "30", 60))[0].TransferID
	deadline := s.Holds[id].ExpiresAt
	// Just before the deadline the capture works on a twin hold.
	twin := mustOK(t, s, t0.Add(time.Second), newHold("A", "B", "1", 60))[0].TransferID
	mustOK(t, s, s.Holds[twin].ExpiresAt.Add(-time.Nanosecond), newCapture(twin, ""))

	// At the deadline: refused, yet the hold is released by that same command.
	pos := s.Head.Position
	r := execAt(t, s, deadline, newCapture(id, ""))[0]
	wantRefused(t, r, chronicle.KindRejected, chronicle.CodeTransferExpired, "transfer_id")
	if s.Head.Position != pos+1 || s.Log[pos].EventType != chronicle.EventTransferExpired || s.Log[pos].Data.HeldAfter != 0 {
		t.Fatalf("no TransferExpired written: head %d, last %+v", s.Head.Position, s.Log[len(s.Log)-1])
	}
	wantMoney(t, s, "A", 9900, 0)
	if p := s.Holds[id]; p.State != chronicle.TransferStateExpired {
		t.Fatalf("record %+v", p)
	}
	// Retried: the same code, nothing more written.
	r = execAt(t, s, deadline.Add(time.Second), newVoid(id, ""))[0]
	wantRefused(t, r, chronicle.KindRejected, chronicle.CodeTransferExpired, "transfer_id")
	if s.Head.Position != pos+1 {
		t.Fatal("a second expiry was written")
	}
}

func TestDebitOfAccountExpiresItsDueHolds(t *testing.T) {
	s := holdSetup(t)
	mustOK(t, s, t0, newHold("A", "B", "100", 60), newHold("A", "B", "10", 3600))
	// A withdrawal of 50 needs the first hold gone: touching A after its deadline expires it.
	r := mustOK(t, s, t0.Add(61*time.Second), newWithdraw("A", "50"))[0]
	if len(r.Events) != 1 || r.Events[0].EventType != chronicle.EventMoneyWithdrawn {
		t.Fatalf("withdraw result %+v", r)
	}
	last := s.Log[len(s.Log)-2]
	if last.EventType != chronicle.EventTransferExpired || last.Data.HeldAfter != 1000 || last.Position != r.Position-1 {
		t.Fatalf("event before the withdrawal %+v", last)
	}
	wantMoney(t, s, "A", 5000, 1000)
}

func TestExpireTransfersSweep(t *testing.T) {
	s := holdSetup(t)
	mustOK(t, s, t0, newCreate("K", "JPY", "", ""))
	mustOK(t, s, t0, newHold("A", "B", "10", 10), newHold("A", "B", "20", 5), newHold("J", "K", "1", 5), newHold("A", "B", "1", 100))
	wantRefused(t, execAt(t, s, t0.Add(4*time.Second), newExpire())[0], chronicle.KindRejected, chronicle.CodeNoTransferDue, "")
	r := mustOK(t, s, t0.Add(11*time.Second), newExpire())[0]
	if len(r.Events) != 3 {
		t.Fatalf("sweep expired %d holds, want 3", len(r.Events))
	}
	// In deadline order, then id; the last is the 10.00 hold due at 10s (and 1ns: a commit time after the K account's).
	if r.Events[2].Data.Amount != 1000 || !r.Events[0].Data.ExpiresAt.Before(r.Events[2].Data.ExpiresAt) {
		t.Fatalf("order %+v", r.Events)
	}
	for _, e := range r.Events {
		if e.EventType != chronicle.EventTransferExpired || s.Holds[e.Data.TransferID].State != chronicle.TransferStateExpired {
			t.Fatalf("event %+v", e)
		}
	}
	wantMoney(t, s, "A", 10000, 100)
	wantMoney(t, s, "J", 500, 0)
}

func TestHoldsSurviveReplayAndStatements(t *testing.T) {
	s := holdSetup(t)
	a := mustOK(t, s, t0.Add(time.Second), newHold("A", "B", "30", 60))[0].TransferID
	b := mustOK(t, s, t0.Add(2*time.Second), newHold("A", "B", "20", 60))[0].TransferID
	mustOK(t, s, t0.Add(3*time.Second), newCapture(a, "10"), newVoid(b, "x"))
	mustOK(t, s, t0.Add(4*time.Second), newHold("A", "B", "5", 1))
	mustOK(t, s, t0.Add(6*time.Second), newExpire())

	r := chronicle.NewReplayer()
	for _, e := range s.Log {
		if err := r.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	for id, live := range s.Accounts {
		got := r.State.Accounts[id]
		if got.Balance != live.Balance || got.Held != live.Held || got.Version != live.Version {
			t.Fatalf("replayed %+v, live %+v", got, live)
		}
	}
	for id, live := range s.Holds {
		if got := r.State.Holds[id]; got != live {
			t.Fatalf("replayed hold %+v, live %+v", got, live)
		}
	}

	// Statement lines: Project gives the same account and the right line types.
	var acc chronicle.Account
	var types []string
	for _, e := range s.Log {
		if e.AggregateID != "A" {
			continue
		}
		var line chronicle.StatementLine
		var err error
		if acc, line, err = chronicle.Project(acc, e); err != nil {
			t.Fatal(err)
		}
		types = append(types, line.Type)
	}
	want := []string{"opening_balance", "hold", "hold", "transfer_out", "hold_voided", "hold", "hold_expired"}
	if len(types) != len(want) {
		t.Fatalf("lines %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("lines %v, want %v", types, want)
		}
	}
	if live := s.Accounts["A"]; acc.Balance != live.Balance || acc.Held != live.Held || acc.Held != 0 || acc.Balance != 9000 {
		t.Fatalf("projected %+v, live %+v", acc, live)
	}
	// balance-at: a hold does not change the balance, a capture does.
	bal, _, _ := chronicle.BalanceAt(s.Log, "A", t0.Add(2*time.Second))
	if bal != 10000 {
		t.Fatalf("balance at a hold %d", bal)
	}
	bal, _, _ = chronicle.BalanceAt(s.Log, "A", t0.Add(3*time.Second))
	if bal != 9000 {
		t.Fatalf("balance after the capture %d", bal)
	}
}

func TestAccountRecordHeld(t *testing.T) {
	a := chronicle.Account{ID: "A", Currency: "USD", Balance: 5, Status: chronicle.StatusActive, CreatedAt: t0, LastUpdated: t0, Version: 3}
	v1, _ := a.MarshalBinary()
	if v1[0] != 1 {
		t.Fatalf("an account without holds is written as version %d", v1[0])
	}
	a.Held = 7
	v2, _ := a.MarshalBinary()
	var got chronicle.Account
	if err := got.UnmarshalBinary(v2); err != nil || got != a || v2[0] != 2 {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if err := got.UnmarshalBinary(v1); err != nil || got.Held != 0 || got.Balance != 5 {
		t.Fatalf("old record decoded %+v, %v", got, err)
	}
	p := chronicle.PendingTransfer{ID: "x", FromAccountID: "A", ToAccountID: "B", Currency: "USD", Amount: 3,
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), State: chronicle.TransferStateCaptured, CapturedAmount: 2, FinishedAt: t0.Add(time.Minute)}
	b, _ := p.MarshalBinary()
	var q chronicle.PendingTransfer
	if err := q.UnmarshalBinary(b); err != nil || q != p {
		t.Fatalf("hold record %+v, %v", q, err)
	}
	if err := q.UnmarshalBinary(b[:len(b)-1]); err == nil {
		t.Fatal("a truncated record decoded")
	}
}
