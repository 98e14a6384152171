package raftstore

import (
	"context"
	"math/big"

	"github.com/chronicle-ledger/chronicle"
)

var _ chronicle.OverviewReader = (*Store)(nil)

// Overview implements chronicle.OverviewReader from the working state in memory, which
// mirrors every account: the customer count is the map's size less the external accounts,
// and the money held in each currency is minus its external account's balance. One map
// lookup per known currency, whatever the number of accounts.
func (s *Store) Overview(ctx context.Context) (chronicle.Overview, error) {
	if err := s.faultErr(); err != nil {
		return chronicle.Overview{}, err
	}
	w := s.fsm.mem
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := chronicle.Overview{Position: w.head.Position, Accounts: int64(w.accounts.len())}
	for _, cur := range chronicle.Currencies() {
		x, ok := w.accounts.get(chronicle.ExternalPrefix + cur.Code)
		if !ok {
			continue
		}
		out.Accounts--
		if x.Balance != 0 {
			out.Held = append(out.Held, chronicle.CurrencyHeld{Currency: cur.Code, Held: new(big.Int).Neg(big.NewInt(x.Balance))})
		}
	}
	return out, nil
}
