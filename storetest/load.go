package storetest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

// loadCurrencies are the currencies of a load: exponents 2, 2, 0 and 3.
func loadCurrencies() []string { return []string{"USD", "EUR", "JPY", "BHD"} }

// tally is what a load's commands did, as their results told the client. Additions
// commute, so whatever order the store chose, each account ends at its opening balance
// plus the accepted changes to it: a store that acknowledges a write and loses it (or
// refuses one and keeps it) cannot match.
type tally struct {
	mu       sync.Mutex
	balance  map[string]int64  // per account: expected balance
	version  map[string]uint64 // per account: expected number of events
	inflow   map[string]int64  // per currency: money that came in from outside
	accepted int
	refused  map[string]int // per refusal code
	maxPos   uint64
	// holds are the accepted pending transfers, by transfer id (loadholds.go).
	holds map[string]loadHold
}

// runLoad opens perCur accounts in each load currency, then runs workers goroutines of
// steps random commands each (deposits, withdrawals, transfers, some refused for funds
// or currency, some several to one Execute call), worker i on stores[i%len(stores)].
func runLoad(t *testing.T, stores []chronicle.EventStore, perCur, workers, steps int, seed uint64) *tally {
	t.Helper()
	tl := &tally{balance: map[string]int64{}, version: map[string]uint64{}, inflow: map[string]int64{}, refused: map[string]int{},
		holds: map[string]loadHold{}}
	curOf := map[string]string{}
	var ids [][]string // per currency
	var opens []chronicle.Command
	for _, cur := range loadCurrencies() {
		var these []string
		for i := range perCur {
			id := fmt.Sprintf("%s-%d", strings.ToLower(cur), i)
			opening := 100 * unit(cur)
			opens = append(opens, create(id, cur, money(opening, cur), ""))
			these, curOf[id] = append(these, id), cur
			tl.balance[id], tl.version[id] = opening, 1
			tl.inflow[cur] += opening
		}
		ids = append(ids, these)
	}
	res := execOK(t, stores[0], opens...)
	tl.maxPos = res[len(res)-1].Position

	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			s := stores[w%len(stores)]
			var open []string // this worker's holds not yet captured or voided
			for step := 0; step < steps; {
				n := 1
				if rng.IntN(4) == 0 {
					n = 2 + rng.IntN(3)
				}
				cmds := make([]chronicle.Command, n)
				for i := range cmds {
					cmds[i] = randomCommand(rng, ids)
					// Some commands become two-phase: a hold, or the capture or void of
					// one of this worker's own open holds (no other worker finishes it).
					cmds[i], open = twoPhase(rng, cmds[i], open)
				}
				step += n
				ctx, cancel := callCtx(t)
				res, err := tryExec(ctx, s, cmds...)
				cancel()
				if err != nil {
					t.Errorf("worker %d: Execute: %v", w, err)
					return
				}
				if err := tl.record(cmds, res, curOf); err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				for i, r := range res {
					if r.Err == nil && cmds[i].Pending {
						open = append(open, r.TransferID)
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return tl
}

// randomCommand picks a deposit, withdrawal or transfer among ids (accounts per
// currency). Amounts reach past the opening balances so that some are refused, and one
// transfer in ten crosses currencies, which must be refused.
func randomCommand(rng *rand.Rand, ids [][]string) chronicle.Command {
	ci := rng.IntN(len(ids))
	cur := loadCurrencies()[ci]
	pick := func(c int) string { return ids[c][rng.IntN(len(ids[c]))] }
	amount := money(1+rng.Int64N(60*unit(cur)), cur)
	switch r := rng.IntN(10); {
	case r < 3:
		return deposit(pick(ci), amount)
	case r < 5:
		return withdraw(pick(ci), amount)
	case r < 9:
		from, to := pick(ci), pick(ci)
		for to == from {
			to = pick(ci)
		}
		return transfer(from, to, amount)
	default:
		return transfer(pick(ci), pick((ci+1+rng.IntN(len(ids)-1))%len(ids)), amount)
	}
}

// record adds what the results say happened; a refusal other than for funds or currency
// is an error, as the load sends nothing else wrong.
func (tl *tally) record(cmds []chronicle.Command, res []chronicle.Result, curOf map[string]string) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for i, r := range res {
		c := cmds[i]
		if done, err := tl.recordTwoPhase(c, r, curOf); err != nil {
			return err
		} else if done {
			continue
		}
		if r.Err != nil {
			if r.Err.Code != chronicle.CodeInsufficientFunds && r.Err.Code != chronicle.CodeCurrencyMismatch {
				return fmt.Errorf("%s refused: %v", c.Type, r.Err)
			}
			if r.Err.Code == chronicle.CodeCurrencyMismatch && c.Type == chronicle.CmdTransfer && curOf[c.FromAccountID] == curOf[c.ToAccountID] {
				return fmt.Errorf("transfer within %s refused: %v", curOf[c.FromAccountID], r.Err)
			}
			tl.refused[r.Err.Code]++
			continue
		}
		id := c.AccountID
		if c.Type == chronicle.CmdTransfer {
			id = c.FromAccountID
		}
		cur := curOf[id]
		if c.Type == chronicle.CmdTransfer && curOf[c.ToAccountID] != cur {
			return fmt.Errorf("transfer %s %s -> %s %s accepted", cur, id, curOf[c.ToAccountID], c.ToAccountID)
		}
		amount, err := chronicle.ParseMoney(string(c.Amount), mustCurrency(cur))
		if err != nil {
			return err
		}
		switch c.Type {
		case chronicle.CmdDeposit:
			tl.balance[id] += amount
			tl.inflow[cur] += amount
		case chronicle.CmdWithdraw:
			tl.balance[id] -= amount
			tl.inflow[cur] -= amount
		case chronicle.CmdTransfer:
			tl.balance[id] -= amount
			tl.balance[c.ToAccountID] += amount
			tl.version[c.ToAccountID]++
		}
		tl.version[id]++
		tl.accepted++
		tl.maxPos = max(tl.maxPos, r.Position)
	}
	return nil
}

func mustCurrency(code string) chronicle.Currency {
	c, err := chronicle.LookupCurrency(code)
	if err != nil {
		panic(err) // the suite names only real currencies
	}
	return c
}
