package storetest

import (
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// Two-phase transfers in every store: holds, captures, voids and expiry (lazy and by
// expire-transfers), refusals that write nothing, and (when the harness can) a restart.

func hold(from, to, amount string, timeout int64) chronicle.Command {
	c := transfer(from, to, amount)
	c.Pending, c.TimeoutSeconds = true, timeout
	return c
}

func capture(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdCaptureTransfer, TransferID: id, Amount: chronicle.Decimal(amount)}
}

func void(id, reason string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdVoidTransfer, TransferID: id, Reason: reason}
}

func wantHeld(t testing.TB, s chronicle.EventStore, id string, balance, held int64) {
	t.Helper()
	a := mustAccount(t, s, id)
	if a.Balance != balance || a.Held != held {
		t.Fatalf("account %s: balance %d held %d, want %d and %d", id, a.Balance, a.Held, balance, held)
	}
}

func testPendingTransfers(t *testing.T, h Harness) {
	s := h.Open(t)
	execOK(t, s, create("pa", "USD", "100.00", "10.00"), create("pb", "USD", "", ""), create("pe", "EUR", "1.00", ""))
	h1 := execOK(t, s, hold("pa", "pb", "60.00", 3600))[0]
	if len(h1.Events) != 1 || h1.Events[0].EventType != chronicle.EventTransferPending || h1.Events[0].Data.HeldAfter != 6000 {
		t.Fatalf("hold: %+v", h1)
	}
	h2 := execOK(t, s, hold("pa", "pb", "50.00", 3600))[0] // available 40.00 + 10.00 overdraft
	wantHeld(t, s, "pa", 10000, 11000)
	posted := execOK(t, s, deposit("pa", "5.00"), transfer("pa", "pb", "1.00"))[1]

	head := mustHead(t, s)
	refusals := []struct {
		cmd         chronicle.Command
		kind        chronicle.Kind
		code, field string
	}{
		{withdraw("pa", "4.01"), chronicle.KindRejected, chronicle.CodeInsufficientFunds, "amount"},
		{hold("pa", "pb", "4.01", 60), chronicle.KindRejected, chronicle.CodeInsufficientFunds, "from_account_id"},
		{hold("pa", "pe", "1.00", 60), chronicle.KindRejected, chronicle.CodeCurrencyMismatch, "to_account_id"},
		{capture("no-such-hold", ""), chronicle.KindNotFound, chronicle.CodeTransferNotFound, "transfer_id"},
		{capture(posted.TransferID, ""), chronicle.KindNotFound, chronicle.CodeTransferNotFound, "transfer_id"},
		{capture(h1.TransferID, "60.01"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{void("", ""), chronicle.KindMalformed, chronicle.CodeMissingField, "transfer_id"},
		{chronicle.Command{Type: chronicle.CmdExpireTransfers}, chronicle.KindRejected, chronicle.CodeNoTransferDue, ""},
	}
	for i, r := range exec(t, s, func() []chronicle.Command {
		var cmds []chronicle.Command
		for _, c := range refusals {
			cmds = append(cmds, c.cmd)
		}
		return cmds
	}()...) {
		wantRefused(t, "refusal "+string(refusals[i].cmd.Type), r, refusals[i].kind, refusals[i].code, refusals[i].field)
	}
	if got := mustHead(t, s); !sameHead(got, head) {
		t.Fatalf("refusals wrote: head %+v, was %+v", got, head)
	}

	// Capture part of one hold, void the other; neither can be finished again.
	res := execOK(t, s, capture(h1.TransferID, "25.00"), void(h2.TransferID, "cancelled"))
	if c := res[0]; len(c.Events) != 2 || c.Events[0].EventType != chronicle.EventTransferCaptured || c.Events[0].AggregateID != "pa" ||
		c.Events[1].AggregateID != "pb" || c.TransferID != h1.TransferID {
		t.Fatalf("capture: %+v", c)
	}
	wantHeld(t, s, "pa", 7900, 0)
	wantHeld(t, s, "pb", 2600, 0)
	head = mustHead(t, s)
	for _, r := range exec(t, s, capture(h1.TransferID, ""), void(h1.TransferID, ""), capture(h2.TransferID, "1.00")) {
		wantRefused(t, "finish a finished hold", r, chronicle.KindRejected, chronicle.CodeTransferNotPending, "transfer_id")
	}
	if got := mustHead(t, s); !sameHead(got, head) {
		t.Fatalf("refusals wrote: head %+v, was %+v", got, head)
	}

	// Expiry: a one-second hold. expire-transfers is refused until the store's commit
	// time reaches the deadline (polled, not slept), then expires it; a later capture is
	// transfer_expired and writes nothing.
	h3 := execOK(t, s, hold("pa", "pb", "3.00", 1))[0]
	open := execOK(t, s, hold("pa", "pb", "2.00", 3600))[0]
	wantHeld(t, s, "pa", 7900, 500)
	var swept chronicle.Result
	waitFor(t, "expire-transfers to find the hold due", func() bool {
		swept = exec(t, s, chronicle.Command{Type: chronicle.CmdExpireTransfers})[0]
		if swept.Err != nil && swept.Err.Code != chronicle.CodeNoTransferDue {
			t.Fatalf("expire-transfers: %v", swept.Err)
		}
		return swept.Err == nil
	})
	if len(swept.Events) != 1 || swept.Events[0].EventType != chronicle.EventTransferExpired || swept.Events[0].Data.TransferID != h3.TransferID {
		t.Fatalf("sweep: %+v", swept)
	}
	wantHeld(t, s, "pa", 7900, 200)
	head = mustHead(t, s)
	wantRefused(t, "capture an expired hold", exec(t, s, capture(h3.TransferID, ""))[0], chronicle.KindRejected, chronicle.CodeTransferExpired, "transfer_id")
	if got := mustHead(t, s); !sameHead(got, head) {
		t.Fatalf("refusal wrote: head %+v, was %+v", got, head)
	}
	verify(t, s)

	if h.Reopen != nil {
		s = h.Reopen(t, s)
		wantHeld(t, s, "pa", 7900, 200)
		r := execOK(t, s, capture(open.TransferID, ""))[0]
		if r.Events[0].Data.HeldAfter != 0 || r.Events[0].Data.BalanceAfter != 7700 {
			t.Fatalf("capture after restart: %+v", r.Events[0])
		}
		wantRefused(t, "finished before the restart", exec(t, s, void(h2.TransferID, ""))[0], chronicle.KindRejected, chronicle.CodeTransferNotPending, "transfer_id")
		verify(t, s)
	}
}

// waitFor polls cond (every 20ms, each poll a store call) until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(callTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
