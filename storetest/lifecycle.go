package storetest

import (
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

func lifecycle(typ chronicle.CommandType, id, reason string) chronicle.Command {
	return chronicle.Command{Type: typ, ID: chronicle.NewID(), AccountID: id, Reason: reason}
}

// testLifecycle: freeze, unfreeze and close through the store. Statuses are what the
// store serves (and, when the store is a read model too, what its listing and statements
// show), each refusal writes nothing, a frozen account still takes credits, and a
// restart keeps every status.
func testLifecycle(t *testing.T, h Harness) {
	s := h.Open(t)
	execOK(t, s, create("A", "USD", "100.00", ""), create("B", "USD", "", ""), create("Z", "USD", "", ""), create("J", "JPY", "5", ""))
	execOK(t, s,
		keyed(lifecycle(chronicle.CmdFreezeAccount, "A", "court order"), "lc-freeze-A"),
		lifecycle(chronicle.CmdCloseAccount, "Z", "never used"),
		lifecycle(chronicle.CmdFreezeAccount, "B", "kyc review"),
		lifecycle(chronicle.CmdUnfreezeAccount, "B", ""),
		lifecycle(chronicle.CmdFreezeAccount, "J", "dormant"))
	// Credits reach a frozen account; the keyed freeze replays.
	res := execOK(t, s, deposit("A", "1.00"), keyed(lifecycle(chronicle.CmdFreezeAccount, "A", "court order"), "lc-freeze-A"))
	if !res[1].Replayed {
		t.Fatalf("retried freeze: %+v, want a replay", res[1])
	}
	head := mustHead(t, s)
	accounts := map[string]chronicle.Account{}
	for id, want := range map[string]chronicle.AccountStatus{"A": chronicle.StatusFrozen, "B": chronicle.StatusActive,
		"Z": chronicle.StatusClosed, "J": chronicle.StatusFrozen} {
		a := mustAccount(t, s, id)
		if a.Status != want {
			t.Fatalf("account %s: status %s, want %s", id, a.Status, want)
		}
		accounts[id] = a
	}
	if accounts["A"].Balance != 10100 || accounts["A"].Version != 3 {
		t.Fatalf("frozen account A after a deposit: %+v", accounts["A"])
	}
	for _, c := range []struct {
		name        string
		cmd         chronicle.Command
		code, field string
	}{
		{"withdraw from frozen", withdraw("A", "1.00"), chronicle.CodeAccountFrozen, "account_id"},
		{"transfer from frozen", transfer("A", "B", "1.00"), chronicle.CodeAccountFrozen, "from_account_id"},
		{"freeze frozen", lifecycle(chronicle.CmdFreezeAccount, "A", "again"), chronicle.CodeAccountFrozen, "account_id"},
		{"unfreeze active", lifecycle(chronicle.CmdUnfreezeAccount, "B", ""), chronicle.CodeAccountNotFrozen, "account_id"},
		{"close with balance", lifecycle(chronicle.CmdCloseAccount, "A", "x"), chronicle.CodeBalanceNotZero, "account_id"},
		{"deposit to closed", deposit("Z", "1.00"), chronicle.CodeAccountClosed, "account_id"},
		{"transfer to closed", transfer("B", "Z", "1.00"), chronicle.CodeAccountClosed, "to_account_id"},
		{"freeze closed", lifecycle(chronicle.CmdFreezeAccount, "Z", "x"), chronicle.CodeAccountClosed, "account_id"},
		{"close closed", lifecycle(chronicle.CmdCloseAccount, "Z", "x"), chronicle.CodeAccountClosed, "account_id"},
	} {
		wantRefused(t, c.name, exec(t, s, c.cmd)[0], chronicle.KindRejected, c.code, c.field)
		if got := mustHead(t, s); !sameHead(got, head) {
			t.Fatalf("%s: head moved from %+v to %+v", c.name, head, got)
		}
		for id, want := range accounts {
			if d := accountDiff(want, mustAccount(t, s, id)); d != "" {
				t.Fatalf("%s: account %s changed: %s", c.name, id, d)
			}
		}
	}
	evs := mustEvents(t, s, chronicle.EventQuery{EventType: chronicle.EventAccountFrozen})
	if len(evs) != 3 || evs[0].AggregateID != "A" || evs[0].Data.Reason != "court order" || evs[0].Data.BalanceAfter != 10000 || evs[0].Data.Amount != 0 {
		t.Fatalf("AccountFrozen events: %+v", evs)
	}
	check := func(what string) {
		t.Helper()
		_, log := verify(t, s)
		if rm, ok := s.(chronicle.ReadModel); ok {
			waitHead(t, s, head.Position)
			CheckReadModel(t, what, rm, log, nil)
		}
	}
	check("lifecycle")
	if h.Reopen == nil {
		return
	}
	s = h.Reopen(t, s)
	for id, want := range accounts {
		if d := accountDiff(want, mustAccount(t, s, id)); d != "" {
			t.Fatalf("after a restart, account %s: %s", id, d)
		}
	}
	check("lifecycle after a restart")
	// And the rules still hold on the reopened store.
	wantRefused(t, "deposit to closed after a restart", exec(t, s, deposit("Z", "1.00"))[0], chronicle.KindRejected, chronicle.CodeAccountClosed, "account_id")
	execOK(t, s, lifecycle(chronicle.CmdUnfreezeAccount, "A", "order lifted"), withdraw("A", "101.00"), lifecycle(chronicle.CmdCloseAccount, "A", "emptied"))
	if a := mustAccount(t, s, "A"); a.Status != chronicle.StatusClosed || a.Balance != 0 {
		t.Fatalf("account A: %+v", a)
	}
	check("lifecycle after more commands")
}
