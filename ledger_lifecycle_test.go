package chronicle_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

func newLifecycle(typ chronicle.CommandType, id, reason string) chronicle.Command {
	return chronicle.Command{Type: typ, ID: chronicle.NewID(), AccountID: id, Reason: reason}
}

func newFreeze(id, reason string) chronicle.Command {
	return newLifecycle(chronicle.CmdFreezeAccount, id, reason)
}

func newUnfreeze(id, reason string) chronicle.Command {
	return newLifecycle(chronicle.CmdUnfreezeAccount, id, reason)
}

func newClose(id, reason string) chronicle.Command {
	return newLifecycle(chronicle.CmdCloseAccount, id, reason)
}

// lifecycleSetup opens a (USD 100.00), b (USD 50.00), z (USD 0) and j (JPY 10).
func lifecycleSetup(t *testing.T) *chronicle.MemState {
	t.Helper()
	s := chronicle.NewMemState()
	mustOK(t, s, t0, newCreate("a", "USD", "100.00", ""), newCreate("b", "USD", "50.00", "10"),
		newCreate("z", "USD", "", ""), newCreate("j", "JPY", "10", ""))
	return s
}

func statusOf(t *testing.T, s *chronicle.MemState, id string) chronicle.AccountStatus {
	t.Helper()
	a, ok := s.Accounts[id]
	if !ok {
		t.Fatalf("account %s does not exist", id)
	}
	return a.Status
}

// refusedUnchanged runs c alone at tm and checks that it is refused with code on field
// and that nothing changed.
func refusedUnchanged(t *testing.T, s *chronicle.MemState, tm time.Time, c chronicle.Command, kind chronicle.Kind, code, field string) {
	t.Helper()
	before := snap(s)
	wantRefused(t, execAt(t, s, tm, c)[0], kind, code, field)
	wantUnchanged(t, before, s)
}

func TestFreezeAccount(t *testing.T) {
	s := lifecycleSetup(t)
	tm := t0.Add(time.Minute)
	before := s.Accounts["a"]
	r := mustOK(t, s, tm, withKey(newFreeze("a", "court order 17/2025"), "fz-1"))[0]
	if len(r.Events) != 1 || r.Position != s.Head.Position {
		t.Fatalf("freeze result %+v", r)
	}
	e := r.Events[0]
	if e.EventType != chronicle.EventAccountFrozen || e.AggregateID != "a" || e.AggregateType != chronicle.AggregateAccount ||
		e.EventVersion != before.Version+1 || !e.CreatedAt.Equal(tm) {
		t.Fatalf("event %+v", e)
	}
	a := s.Accounts["a"]
	if a.Status != chronicle.StatusFrozen || a.Balance != before.Balance || a.Version != before.Version+1 || !a.LastUpdated.Equal(tm) {
		t.Fatalf("account after freeze %+v", a)
	}
	// The payload: account, currency, unchanged balance, reason, and no amount.
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Data map[string]any `json:"event_data"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"account_id": "a", "currency": "USD", "balance_after": "100.00", "reason": "court order 17/2025"}
	if len(v.Data) != len(want) {
		t.Fatalf("event_data %v, want %v", v.Data, want)
	}
	for k, w := range want {
		if v.Data[k] != w {
			t.Fatalf("event_data[%s] = %v, want %v (all: %v)", k, v.Data[k], w, v.Data)
		}
	}
	// The JSON reads back to the same event (the hash checks the payload).
	var back chronicle.Event
	if err := json.Unmarshal(b, &back); err != nil || back.ComputeHash() != e.Hash {
		t.Fatalf("event JSON does not read back: %v", err)
	}
	// The sum per currency is untouched.
	for cur, total := range s.Totals() {
		if total != 0 {
			t.Fatalf("%s sums to %d", cur, total)
		}
	}
	// A retry with the same key is a replay and writes nothing.
	pos := s.Head.Position
	rr := execAt(t, s, tm.Add(time.Second), retry(withKey(newFreeze("a", "court order 17/2025"), "fz-1")))[0]
	if rr.Err != nil || !rr.Replayed || rr.Position != r.Position || s.Head.Position != pos {
		t.Fatalf("retried freeze %+v, head %d (was %d)", rr, s.Head.Position, pos)
	}
	// The same key for another reason is a different request.
	refusedUnchanged(t, s, tm.Add(2*time.Second), withKey(newFreeze("a", "other"), "fz-1"),
		chronicle.KindRejected, chronicle.CodeIdempotencyMismatch, "Idempotency-Key")
	// Freezing a frozen account is refused.
	refusedUnchanged(t, s, tm.Add(3*time.Second), newFreeze("a", "again"), chronicle.KindRejected, chronicle.CodeAccountFrozen, "account_id")
}

func TestFrozenAccountRefusesDebitsAcceptsCredits(t *testing.T) {
	s := lifecycleSetup(t)
	tm := t0.Add(time.Minute)
	mustOK(t, s, tm, newFreeze("a", "suspected fraud"))
	tm = tm.Add(time.Second)

	// Debits: a withdrawal, the debit side of a transfer.
	refusedUnchanged(t, s, tm, newWithdraw("a", "1.00"), chronicle.KindRejected, chronicle.CodeAccountFrozen, "account_id")
	refusedUnchanged(t, s, tm, newTransfer("a", "b", "1.00"), chronicle.KindRejected, chronicle.CodeAccountFrozen, "from_account_id")
	// Even an amount the account could not cover is refused for the freeze first.
	refusedUnchanged(t, s, tm, newWithdraw("a", "1000000.00"), chronicle.KindRejected, chronicle.CodeAccountFrozen, "account_id")

	// Credits are accepted: a deposit and an incoming transfer.
	mustOK(t, s, tm, newDeposit("a", "5.00"), newTransfer("b", "a", "20.00"))
	if got := balanceOf(t, s, "a"); got != 12500 {
		t.Fatalf("frozen account's balance %d after credits, want 12500", got)
	}
	if statusOf(t, s, "a") != chronicle.StatusFrozen {
		t.Fatalf("credits changed the status")
	}

	// Unfreeze: debits work again.
	r := mustOK(t, s, tm.Add(time.Second), newUnfreeze("a", ""))[0]
	if r.Events[0].EventType != chronicle.EventAccountUnfrozen || statusOf(t, s, "a") != chronicle.StatusActive {
		t.Fatalf("unfreeze %+v, status %s", r.Events[0], statusOf(t, s, "a"))
	}
	mustOK(t, s, tm.Add(2*time.Second), newWithdraw("a", "25.00"), newTransfer("a", "b", "100.00"))
	if got := balanceOf(t, s, "a"); got != 0 {
		t.Fatalf("balance %d, want 0", got)
	}
	// Unfreezing an active account is refused with its own code.
	refusedUnchanged(t, s, tm.Add(3*time.Second), newUnfreeze("a", "why not"), chronicle.KindRejected, chronicle.CodeAccountNotFrozen, "account_id")
}

func TestCloseAccount(t *testing.T) {
	s := lifecycleSetup(t)
	tm := t0.Add(time.Minute)
	// A balance, positive or negative, blocks the close.
	refusedUnchanged(t, s, tm, newClose("a", "customer left"), chronicle.KindRejected, chronicle.CodeBalanceNotZero, "account_id")
	mustOK(t, s, tm, newWithdraw("b", "55.00"))
	refusedUnchanged(t, s, tm, newClose("b", "customer left"), chronicle.KindRejected, chronicle.CodeBalanceNotZero, "account_id")

	// A zero balance closes, active or frozen.
	r := mustOK(t, s, tm.Add(time.Second), newClose("z", "customer left"))[0]
	if len(r.Events) != 1 || r.Events[0].EventType != chronicle.EventAccountClosed || statusOf(t, s, "z") != chronicle.StatusClosed {
		t.Fatalf("close %+v, status %s", r, statusOf(t, s, "z"))
	}
	if d := eventData(t, r.Events[0]); d.Amount != "" || d.BalanceAfter != "0.00" {
		t.Fatalf("AccountClosed payload %+v", d)
	}
	mustOK(t, s, tm.Add(2*time.Second), newWithdraw("j", "10"), newFreeze("j", "dormant"), newClose("j", "dormant, emptied"))
	if statusOf(t, s, "j") != chronicle.StatusClosed {
		t.Fatalf("frozen account with a zero balance did not close")
	}

	// A closed account refuses everything, credits included.
	tm = tm.Add(3 * time.Second)
	for _, c := range []struct {
		cmd   chronicle.Command
		field string
	}{
		{newDeposit("z", "1.00"), "account_id"},
		{newWithdraw("z", "1.00"), "account_id"},
		{newTransfer("z", "a", "1.00"), "from_account_id"},
		{newTransfer("a", "z", "1.00"), "to_account_id"},
		{newFreeze("z", "x"), "account_id"},
		{newUnfreeze("z", ""), "account_id"},
		{newClose("z", "again"), "account_id"},
		{newDeposit("j", "1"), "account_id"},
		{newUnfreeze("j", "reopen"), "account_id"},
	} {
		refusedUnchanged(t, s, tm, c.cmd, chronicle.KindRejected, chronicle.CodeAccountClosed, c.field)
	}
	// A closed account's id stays taken.
	refusedUnchanged(t, s, tm, newCreate("z", "USD", "", ""), chronicle.KindConflict, chronicle.CodeAccountExists, "account_id")
}

func TestLifecycleValidation(t *testing.T) {
	s := lifecycleSetup(t)
	tm := t0.Add(time.Minute)
	for _, c := range []struct {
		cmd         chronicle.Command
		kind        chronicle.Kind
		code, field string
	}{
		{newFreeze("nobody", "x"), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "account_id"},
		{newUnfreeze("nobody", ""), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "account_id"},
		{newClose("nobody", "x"), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "account_id"},
		{newFreeze("@world:USD", "x"), chronicle.KindMalformed, chronicle.CodeInvalidAccountID, "account_id"},
		{newClose("@world:USD", "x"), chronicle.KindMalformed, chronicle.CodeInvalidAccountID, "account_id"},
		{newFreeze("", "x"), chronicle.KindMalformed, chronicle.CodeMissingField, "account_id"},
		{newFreeze("a", ""), chronicle.KindMalformed, chronicle.CodeMissingField, "reason"},
		{newClose("z", ""), chronicle.KindMalformed, chronicle.CodeMissingField, "reason"},
		{newFreeze("a", "   "), chronicle.KindMalformed, chronicle.CodeInvalidField, "reason"},
		{newFreeze("a", "line\nbreak"), chronicle.KindMalformed, chronicle.CodeInvalidField, "reason"},
		{newFreeze("a", "bad \xff utf-8"), chronicle.KindMalformed, chronicle.CodeInvalidField, "reason"},
		{newFreeze("a", strings.Repeat("é", chronicle.MaxReasonLen+1)), chronicle.KindMalformed, chronicle.CodeInvalidField, "reason"},
		{newUnfreeze("a", "tab\there"), chronicle.KindMalformed, chronicle.CodeInvalidField, "reason"},
	} {
		refusedUnchanged(t, s, tm, c.cmd, c.kind, c.code, c.field)
	}
	// The longest reason is accepted; unfreeze needs none.
	mustOK(t, s, tm, newFreeze("a", strings.Repeat("é", chronicle.MaxReasonLen)), newUnfreeze("a", ""))
}

// TestLifecycleInOneBatch: a freeze takes effect for the commands after it in the same
// batch, and a refused command between them changes nothing.
func TestLifecycleInOneBatch(t *testing.T) {
	s := lifecycleSetup(t)
	res := execAt(t, s, t0.Add(time.Minute),
		newWithdraw("a", "1.00"),      // ok
		newFreeze("a", "hold"),        // ok
		newWithdraw("a", "1.00"),      // frozen
		newDeposit("a", "2.00"),       // ok
		newUnfreeze("a", ""),          // ok
		newWithdraw("a", "101.00"),    // ok: 101.00 -> 0
		newClose("a", "done"),         // ok
		newDeposit("a", "1.00"),       // closed
		newTransfer("b", "a", "1.00")) // closed
	codes := []string{"", "", chronicle.CodeAccountFrozen, "", "", "", "", chronicle.CodeAccountClosed, chronicle.CodeAccountClosed}
	for i, r := range res {
		got := ""
		if r.Err != nil {
			got = r.Err.Code
		}
		if got != codes[i] {
			t.Fatalf("command %d: %q, want %q", i, got, codes[i])
		}
	}
	a := s.Accounts["a"]
	if a.Status != chronicle.StatusClosed || a.Balance != 0 || a.Version != 7 {
		t.Fatalf("account %+v", a)
	}
	checkLifecycleReplay(t, s)
}

// checkLifecycleReplay replays s's log and compares status, balance and version.
func checkLifecycleReplay(t *testing.T, s *chronicle.MemState) {
	t.Helper()
	r := chronicle.NewReplayer()
	for _, e := range s.Log {
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
	for id, live := range s.Accounts {
		got := r.State.Accounts[id]
		if got.Status != live.Status || got.Balance != live.Balance || got.Version != live.Version || !got.LastUpdated.Equal(live.LastUpdated) {
			t.Fatalf("account %s: replayed %+v, live %+v", id, got, live)
		}
	}
}

// TestReplayRefusesImpossibleLifecycle: the replayer is an independent check, so a log
// (correctly chained) with a posting the status forbids must not replay.
func TestReplayRefusesImpossibleLifecycle(t *testing.T) {
	cases := []struct {
		name  string
		setup []chronicle.Command
		fake  chronicle.Event
	}{
		{"deposit to closed", []chronicle.Command{newClose("z", "x")},
			chronicle.Event{EventType: chronicle.EventMoneyDeposited, Data: chronicle.EventData{Amount: 1, BalanceAfter: 1, Counterparty: "@world:USD"}}},
		{"withdrawal from frozen", []chronicle.Command{newFreeze("a", "x")},
			chronicle.Event{EventType: chronicle.EventMoneyWithdrawn, Data: chronicle.EventData{Amount: 1, BalanceAfter: 9999, Counterparty: "@world:USD"}}},
		{"unfreeze active", nil,
			chronicle.Event{EventType: chronicle.EventAccountUnfrozen, Data: chronicle.EventData{BalanceAfter: 10000}}},
		{"freeze frozen", []chronicle.Command{newFreeze("a", "x")},
			chronicle.Event{EventType: chronicle.EventAccountFrozen, Data: chronicle.EventData{BalanceAfter: 10000, Reason: "y"}}},
		{"close with a balance", nil,
			chronicle.Event{EventType: chronicle.EventAccountClosed, Data: chronicle.EventData{BalanceAfter: 10000, Reason: "y"}}},
		// With pending transfers: a close while money is held, a hold from a frozen account.
		{"close with money held", []chronicle.Command{newCreate("o", "USD", "", "50"), newHold("o", "a", "10", 60)},
			chronicle.Event{EventType: chronicle.EventAccountClosed, Data: chronicle.EventData{Reason: "y", HeldAfter: 1000}}},
		{"hold from frozen", []chronicle.Command{newFreeze("a", "x")},
			chronicle.Event{EventType: chronicle.EventTransferPending, Data: chronicle.EventData{Amount: 1, BalanceAfter: 10000, HeldAfter: 1,
				TransferID: "t-frozen", FromAccountID: "a", ToAccountID: "z", Counterparty: "z", ExpiresAt: t0.Add(2 * time.Hour)}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := lifecycleSetup(t)
			mustOK(t, s, t0.Add(time.Minute), tc.setup...)
			id := "a"
			switch {
			case strings.Contains(tc.name, "closed"):
				id = "z"
			case strings.Contains(tc.name, "held"):
				id = "o"
			}
			e := tc.fake
			e.Position, e.EventID, e.AggregateID, e.AggregateType = s.Head.Position+1, chronicle.NewID(), id, chronicle.AggregateAccount
			e.EventVersion, e.CreatedAt, e.PrevHash = s.Accounts[id].Version+1, t0.Add(time.Hour), s.Head.Hash
			e.Data.AccountID, e.Data.Currency = id, "USD"
			e.Hash = e.ComputeHash()
			r := chronicle.NewReplayer()
			for _, good := range s.Log {
				if err := r.Add(good); err != nil {
					t.Fatalf("replay of the good log: %v", err)
				}
			}
			if err := r.Add(e); err == nil {
				t.Fatalf("replayer accepted %s on %s account %s", e.EventType, s.Accounts[id].Status, id)
			}
		})
	}
}

func TestProjectLifecycleLines(t *testing.T) {
	s := lifecycleSetup(t)
	mustOK(t, s, t0.Add(time.Minute), newFreeze("z", "kyc review"), newUnfreeze("z", ""), newClose("z", "customer left"))
	var acc chronicle.Account
	var types, descs []string
	for _, e := range s.Log {
		if e.AggregateID != "z" {
			continue
		}
		var line chronicle.StatementLine
		var err error
		acc, line, err = chronicle.Project(acc, e)
		if err != nil {
			t.Fatal(err)
		}
		if line.Amount != 0 || line.BalanceAfter != 0 {
			t.Fatalf("line %+v moves money", line)
		}
		types, descs = append(types, line.Type), append(descs, line.Description)
	}
	wantTypes := []string{chronicle.LineOpening, chronicle.LineFrozen, chronicle.LineUnfrozen, chronicle.LineClosed}
	wantDescs := []string{"", "kyc review", "", "customer left"}
	if strings.Join(types, ",") != strings.Join(wantTypes, ",") || strings.Join(descs, ",") != strings.Join(wantDescs, ",") {
		t.Fatalf("lines %v %v, want %v %v", types, descs, wantTypes, wantDescs)
	}
	if acc != s.Accounts["z"] {
		t.Fatalf("projected %+v, live %+v", acc, s.Accounts["z"])
	}
}
