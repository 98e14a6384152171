package storetest

import (
	"fmt"
	"math/rand/v2"

	"github.com/chronicle-ledger/chronicle"
)

// Two-phase transfers in the load: holds with a long timeout (a load never waits for
// expiry), and captures (full or partial) and voids of them. A capture posts like a
// transfer, so the tally's additions still commute.

// loadHold is an accepted hold as the tally knows it.
type loadHold struct {
	from, to, cur string
	amount        int64
}

// twoPhase turns about one command in eight into a two-phase one: a transfer becomes a
// hold, or (when the worker has open holds) the command becomes the capture or void of
// one of them, which is then no longer open.
func twoPhase(rng *rand.Rand, c chronicle.Command, open []string) (chronicle.Command, []string) {
	switch r := rng.IntN(16); {
	case r < 2 && c.Type == chronicle.CmdTransfer:
		c.Pending, c.TimeoutSeconds = true, 3600
	case r < 4 && len(open) > 0:
		i := rng.IntN(len(open))
		id := open[i]
		open = append(open[:i:i], open[i+1:]...)
		if r == 2 {
			return chronicle.Command{Type: chronicle.CmdVoidTransfer, TransferID: id, Reason: "load"}, open
		}
		capt := chronicle.Command{Type: chronicle.CmdCaptureTransfer, TransferID: id}
		if rng.IntN(2) == 0 {
			capt.Amount = "0.01" // smaller than any hold of the load (JPY aside: see below)
		}
		return capt, open
	}
	return c, open
}

// recordTwoPhase records a hold, capture or void (done true); other commands are left
// to record.
func (tl *tally) recordTwoPhase(c chronicle.Command, r chronicle.Result, curOf map[string]string) (bool, error) {
	switch {
	case c.Type == chronicle.CmdTransfer && c.Pending:
		if r.Err != nil {
			if r.Err.Code != chronicle.CodeInsufficientFunds && r.Err.Code != chronicle.CodeCurrencyMismatch {
				return true, fmt.Errorf("hold refused: %v", r.Err)
			}
			tl.refused[r.Err.Code]++
			return true, nil
		}
		cur := curOf[c.FromAccountID]
		if curOf[c.ToAccountID] != cur {
			return true, fmt.Errorf("hold %s -> %s across currencies accepted", c.FromAccountID, c.ToAccountID)
		}
		amount, err := chronicle.ParseMoney(string(c.Amount), mustCurrency(cur))
		if err != nil {
			return true, err
		}
		tl.holds[r.TransferID] = loadHold{from: c.FromAccountID, to: c.ToAccountID, cur: cur, amount: amount}
		tl.version[c.FromAccountID]++
	case c.Type == chronicle.CmdCaptureTransfer, c.Type == chronicle.CmdVoidTransfer:
		h, ok := tl.holds[c.TransferID]
		if !ok {
			return true, fmt.Errorf("%s of a hold the tally does not know: %s", c.Type, c.TransferID)
		}
		if r.Err != nil {
			// The 0.01 partial capture is finer than a JPY minor unit.
			if c.Type == chronicle.CmdCaptureTransfer && h.cur == "JPY" && r.Err.Code == chronicle.CodeInvalidAmount {
				tl.refused[r.Err.Code]++
				return true, nil
			}
			return true, fmt.Errorf("%s of an open hold refused: %v", c.Type, r.Err)
		}
		tl.version[h.from]++
		if c.Type == chronicle.CmdCaptureTransfer {
			amount := h.amount
			if c.Amount != "" {
				amount, _ = chronicle.ParseMoney(string(c.Amount), mustCurrency(h.cur))
			}
			tl.balance[h.from] -= amount
			tl.balance[h.to] += amount
			tl.version[h.to]++
		}
	default:
		return false, nil
	}
	tl.accepted++
	tl.maxPos = max(tl.maxPos, r.Position)
	return true, nil
}
