package storetest

import (
	"math/big"
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

// ExpectedOverview is what an overview of log must say, from a replay: the customer
// accounts, and per currency minus the external account's balance, which the replay
// also checks equals the sum of the customer balances (double entry).
func ExpectedOverview(t testing.TB, log []chronicle.Event) chronicle.Overview {
	t.Helper()
	r := chronicle.NewReplayer()
	for _, e := range log {
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
	x := chronicle.Overview{}
	if len(log) > 0 {
		x.Position = log[len(log)-1].Position
	}
	sums := map[string]*big.Int{}
	for _, a := range r.State.SortedAccounts() {
		if a.External() {
			continue
		}
		x.Accounts++
		if sums[a.Currency] == nil {
			sums[a.Currency] = new(big.Int)
		}
		sums[a.Currency].Add(sums[a.Currency], big.NewInt(a.Balance))
	}
	for _, cur := range chronicle.Currencies() {
		w, ok := r.State.Accounts[chronicle.ExternalAccountID(cur.Code)]
		held := new(big.Int)
		if ok {
			held.Neg(big.NewInt(w.Balance))
		}
		if sum := sums[cur.Code]; (sum == nil && held.Sign() != 0) || (sum != nil && sum.Cmp(held) != 0) {
			t.Fatalf("replay: %s accounts sum to %v, the external account says %v", cur.Code, sum, held)
		}
		if held.Sign() != 0 {
			x.Held = append(x.Held, chronicle.CurrencyHeld{Currency: cur.Code, Held: held})
		}
	}
	return x
}

// CheckOverview fails the test unless rm, when it keeps an overview, says what a replay
// of log gives (Scanned aside, which is the read model's own business).
func CheckOverview(t testing.TB, what string, rm chronicle.ReadModel, log []chronicle.Event) {
	t.Helper()
	or, ok := rm.(chronicle.OverviewReader)
	if !ok {
		return
	}
	ctx, cancel := callCtx(t)
	defer cancel()
	got, err := or.Overview(ctx)
	if err != nil {
		t.Fatalf("%s: overview: %v", what, err)
	}
	SameOverview(t, what, ExpectedOverview(t, log), got)
}

// SameOverview fails the test unless got and want name the same totals.
func SameOverview(t testing.TB, what string, want, got chronicle.Overview) {
	t.Helper()
	if got.Position != want.Position || got.Accounts != want.Accounts || len(got.Held) != len(want.Held) {
		t.Fatalf("%s: overview at %d: %d accounts, %d currencies; want at %d: %d accounts, %d currencies (%v)",
			what, got.Position, got.Accounts, len(got.Held), want.Position, want.Accounts, len(want.Held), want.Held)
	}
	for i, w := range want.Held {
		if g := got.Held[i]; g.Currency != w.Currency || g.Held.Cmp(w.Held) != 0 {
			t.Fatalf("%s: overview: currency %d is %s %v, want %s %v", what, i, g.Currency, g.Held, w.Currency, w.Held)
		}
	}
}
