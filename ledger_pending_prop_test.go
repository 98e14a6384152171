package chronicle_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/chronicle-ledger/chronicle"
)

// TestPendingTransferProperties mixes holds, captures, voids and expiry (lazy and by
// expire-transfers, with commit time advancing) with deposits, withdrawals and transfers,
// and checks after every batch: balances sum to zero per currency, no account's
// available balance is below its overdraft limit, each account's held total is the sum of
// its open holds, a hold is finished at most once and never expires before its deadline;
// at the end the log replays to the same state, and running the same batches again gives
// the same log.
func TestPendingTransferProperties(t *testing.T) {
	accounts := []string{"p0", "p1", "p2", "p3", "p4"}
	rapid.Check(t, func(rt *rapid.T) {
		s := chronicle.NewMemState()
		var batches []chronicle.Batch
		run := func(b chronicle.Batch) []chronicle.Result {
			batches = append(batches, b)
			return execBatch(rt, s, b)
		}
		var setup []chronicle.Command
		for i, id := range accounts {
			setup = append(setup, newCreate(id, "USD", fmt.Sprint(rapid.IntRange(0, 500).Draw(rt, "open")), []string{"", "25"}[i%2]))
		}
		setup = append(setup, newCreate("j0", "JPY", "1000", ""))
		run(chronicle.Batch{Time: t0, Commands: setup})

		var transfers []string // ids of holds (and a few posted transfers)
		wall := t0
		nBatches := rapid.IntRange(1, 20).Draw(rt, "batches")
		for bi := 0; bi < nBatches; bi++ {
			wall = wall.Add(time.Duration(rapid.IntRange(0, 90).Draw(rt, "advance")) * time.Second)
			at := wall.Add(-time.Duration(rapid.IntRange(0, 3).Draw(rt, "step_back")) * time.Second)
			var cmds []chronicle.Command
			for range rapid.IntRange(0, 8).Draw(rt, "commands") {
				acc := rapid.SampledFrom(append(accounts, "j0")).Draw(rt, "account")
				other := rapid.SampledFrom(accounts).Draw(rt, "other")
				amount := fmt.Sprint(rapid.IntRange(1, 300).Draw(rt, "amount"))
				var c chronicle.Command
				switch rapid.IntRange(0, 12).Draw(rt, "type") {
				case 0:
					c = newDeposit(acc, amount)
				case 1:
					c = newWithdraw(acc, amount)
				case 2:
					c = newTransfer(acc, other, amount)
				case 3, 4, 5:
					c = newHold(acc, other, amount, int64(rapid.IntRange(0, 120).Draw(rt, "timeout")))
				case 6, 7:
					id := "unknown"
					if len(transfers) > 0 {
						id = rapid.SampledFrom(transfers).Draw(rt, "capture_of")
					}
					c = newCapture(id, rapid.SampledFrom([]string{"", "", "1", "50", "150", "300"}).Draw(rt, "capture_amount"))
				case 8:
					id := "unknown"
					if len(transfers) > 0 {
						id = rapid.SampledFrom(transfers).Draw(rt, "void_of")
					}
					c = newVoid(id, "")
				case 9:
					c = newExpire()
				// The account lifecycle, mixed in: a freeze must stop new debits and holds
				// but not the capture of a hold made before it; a close needs nothing held.
				case 10:
					c = newFreeze(acc, "review")
				case 11:
					c = newLifecycle(chronicle.CmdUnfreezeAccount, acc, "")
				default:
					c = newClose(acc, "done")
				}
				cmds = append(cmds, withKey(c, rapid.SampledFrom([]string{"", "", "", "k0", "k1"}).Draw(rt, "key")))
			}
			before := cloneState(s)
			res := run(chronicle.Batch{Time: at, IdempotencyWindow: time.Minute, Commands: cmds})
			for i, r := range res {
				c := cmds[i]
				if r.Err != nil {
					if r.Err.Kind == chronicle.KindInternal {
						rt.Fatalf("batch %d command %d: internal error %v", bi, i, r.Err)
					}
					if c.Type == chronicle.CmdCaptureTransfer || c.Type == chronicle.CmdVoidTransfer {
						checkFinishRefusal(rt, before, c, r)
					}
					continue
				}
				if r.TransferID != "" && !r.Replayed {
					transfers = append(transfers, r.TransferID)
				}
				if !r.Replayed && (c.Type == chronicle.CmdCaptureTransfer || c.Type == chronicle.CmdVoidTransfer) {
					// It succeeded, so the hold was open and not yet due before the batch.
					if p, ok := before.Holds[c.TransferID]; ok && (!p.Open() || !p.ExpiresAt.After(r.CommitTime)) {
						rt.Fatalf("batch %d: %s of %s succeeded on %+v", bi, c.Type, c.TransferID, p)
					}
				}
			}
			checkHoldInvariants(rt, s, bi)
		}
		// Far in the future every hold is due: one sweep (or a few) finishes them all.
		for i := 0; i < 3; i++ {
			run(chronicle.Batch{Time: wall.Add(40 * 24 * time.Hour), Commands: []chronicle.Command{newExpire()}})
		}
		checkHoldInvariants(rt, s, nBatches)
		for _, p := range s.Holds {
			if p.Open() {
				rt.Fatalf("hold %s still open after its deadline and a sweep", p.ID)
			}
		}

		// Replay from events alone.
		r := chronicle.NewReplayer()
		for _, e := range s.Log {
			// The lifecycle rules, as the log shows them: what an account's status was
			// when each of its events came.
			if a, ok := r.State.Accounts[e.AggregateID]; ok {
				switch {
				case a.Status == chronicle.StatusClosed:
					rt.Fatalf("event %d (%s) on closed account %s", e.Position, e.EventType, a.ID)
				case a.Status == chronicle.StatusFrozen && (e.EventType == chronicle.EventMoneyWithdrawn || e.EventType == chronicle.EventTransferPending):
					rt.Fatalf("event %d: %s debits frozen account %s", e.Position, e.EventType, a.ID)
				case e.EventType == chronicle.EventAccountClosed && (a.Balance != 0 || a.Held != 0):
					rt.Fatalf("event %d: account %s closed with balance %d and %d held", e.Position, a.ID, a.Balance, a.Held)
				}
			}
			if err := r.Add(e); err != nil {
				rt.Fatalf("replay: %v", err)
			}
		}
		for id, live := range s.Accounts {
			got := r.State.Accounts[id]
			if got.Balance != live.Balance || got.Held != live.Held || got.Version != live.Version || !got.LastUpdated.Equal(live.LastUpdated) {
				rt.Fatalf("account %s: replayed %+v, live %+v", id, got, live)
			}
		}
		if !reflect.DeepEqual(r.State.Holds, s.Holds) {
			rt.Fatalf("replayed holds differ:\n%+v\n%+v", r.State.Holds, s.Holds)
		}
		// Determinism: the same batches give the same log, byte for byte.
		again := chronicle.NewMemState()
		for _, b := range batches {
			execBatch(rt, again, b)
		}
		if !reflect.DeepEqual(again.Log, s.Log) || !reflect.DeepEqual(again.Holds, s.Holds) || again.Head != s.Head {
			rt.Fatalf("a second run of the same batches differs")
		}
	})
}

// checkFinishRefusal checks the code of a refused capture or void against the hold's
// record before the batch (a hold made or finished earlier in the same batch aside).
func checkFinishRefusal(rt *rapid.T, before *chronicle.MemState, c chronicle.Command, r chronicle.Result) {
	p, ok := before.Holds[c.TransferID]
	if !ok {
		return // made in this batch, or unknown: any of the codes
	}
	switch r.Err.Code {
	case chronicle.CodeTransferNotFound:
		rt.Fatalf("%s of known hold %s: transfer_not_found", c.Type, p.ID)
	case chronicle.CodeTransferNotPending:
		if p.Open() && p.ExpiresAt.After(r.CommitTime) && c.IdempotencyKey == "" {
			// Finished earlier in this batch is the only way.
			return
		}
	}
	if p.State == chronicle.TransferStateExpired && r.Err.Code != chronicle.CodeTransferExpired && r.Err.Code != chronicle.CodeIdempotencyMismatch {
		rt.Fatalf("%s of expired hold %s: %v", c.Type, p.ID, r.Err)
	}
	if (p.State == chronicle.TransferStateCaptured || p.State == chronicle.TransferStateVoided) &&
		r.Err.Code != chronicle.CodeTransferNotPending && r.Err.Code != chronicle.CodeIdempotencyMismatch {
		rt.Fatalf("%s of finished hold %s: %v", c.Type, p.ID, r.Err)
	}
}

func checkHoldInvariants(rt *rapid.T, s *chronicle.MemState, bi int) {
	for cur, total := range s.Totals() {
		if total != 0 {
			rt.Fatalf("batch %d: %s balances sum to %d", bi, cur, total)
		}
	}
	openHeld := map[string]int64{}
	for _, p := range s.Holds {
		if p.Open() {
			openHeld[p.FromAccountID] += p.Amount
		}
	}
	for id, a := range s.Accounts {
		if a.External() {
			if a.Held != 0 {
				rt.Fatalf("batch %d: external account holds %d", bi, a.Held)
			}
			continue
		}
		if a.Held < 0 || a.Available() < -a.OverdraftLimit {
			rt.Fatalf("batch %d: account %s balance %d held %d below its limit %d", bi, id, a.Balance, a.Held, a.OverdraftLimit)
		}
		if a.Held != openHeld[id] {
			rt.Fatalf("batch %d: account %s held %d, open holds sum to %d", bi, id, a.Held, openHeld[id])
		}
	}
	// Each command's events share its commit time; commands commit strictly in order (an
	// expiry step included: it has a command id of its own).
	for i := 1; i < len(s.Log); i++ {
		p, e := s.Log[i-1], s.Log[i]
		same := p.Metadata["command_id"] == e.Metadata["command_id"]
		if e.Metadata["command_id"] == "" || same && !e.CreatedAt.Equal(p.CreatedAt) || !same && !e.CreatedAt.After(p.CreatedAt) {
			rt.Fatalf("batch %d: events %d and %d: created_at %v, %v, metadata %v, %v", bi, p.Position, e.Position, p.CreatedAt, e.CreatedAt, p.Metadata, e.Metadata)
		}
	}
	// Each hold: one TransferPending, at most one finishing event, expiry not early.
	started, finished := map[string]int{}, map[string]int{}
	for _, e := range s.Log {
		d := e.Data
		switch e.EventType {
		case chronicle.EventTransferPending:
			started[d.TransferID]++
		case chronicle.EventTransferVoided, chronicle.EventTransferExpired:
			finished[d.TransferID]++
			if e.EventType == chronicle.EventTransferExpired && e.CreatedAt.Before(d.ExpiresAt) {
				rt.Fatalf("batch %d: hold %s expired at %v, before %v", bi, d.TransferID, e.CreatedAt, d.ExpiresAt)
			}
		case chronicle.EventTransferCaptured:
			if e.AggregateID == d.FromAccountID {
				finished[d.TransferID]++
			}
		}
	}
	for id, n := range started {
		p, ok := s.Holds[id]
		if n != 1 || finished[id] > 1 || !ok || (finished[id] == 1) == p.Open() {
			rt.Fatalf("batch %d: hold %s started %d times, finished %d times, record %+v", bi, id, n, finished[id], p)
		}
	}
	if len(started) != len(s.Holds) {
		rt.Fatalf("batch %d: %d holds in the log, %d records", bi, len(started), len(s.Holds))
	}
}
