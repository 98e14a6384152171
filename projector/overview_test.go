package projector

import (
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
)

// TestOverviewOfViews: both projected views total a random ledger (overdrafts included,
// so some balances are negative) as the state machine does: the customer accounts, and
// per currency minus the external account's balance, at the view's position; an empty
// view has nothing.
func TestOverviewOfViews(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	st := genLedger(t, seed, 1500)
	want := chronicle.Overview{Position: st.Head.Position}
	for _, cur := range chronicle.Currencies() {
		if w, ok := st.Accounts[chronicle.ExternalAccountID(cur.Code)]; ok && w.Balance != 0 {
			want.Held = append(want.Held, chronicle.CurrencyHeld{Currency: cur.Code, Held: big.NewInt(-w.Balance)})
		}
	}
	negative := false
	for _, a := range st.Accounts {
		if !a.External() {
			want.Accounts++
			negative = negative || a.Balance < 0
		}
	}
	if len(want.Held) < 2 || want.Accounts < 10 {
		t.Fatalf("the generated ledger is too small to test with: %+v", want)
	}
	t.Logf("%d accounts, held %v, some overdrawn: %v", want.Accounts, want.Held, negative)

	for _, v := range []interface {
		View
		chronicle.OverviewReader
	}{openPG(t, url), openPebble(t)} {
		empty, err := v.Overview(t.Context())
		if err != nil || empty.Position != 0 || empty.Accounts != 0 || len(empty.Held) != 0 || !empty.Scanned {
			t.Fatalf("%s: overview of an empty view: %+v, %v", v.Name(), empty, err)
		}
		applyPages(t, v, st.Log, rng, 500)
		got, err := v.Overview(t.Context())
		if err != nil {
			t.Fatalf("%s: overview: %v", v.Name(), err)
		}
		if got.Position != want.Position || got.Accounts != want.Accounts || len(got.Held) != len(want.Held) {
			t.Fatalf("%s: overview %+v, want %+v", v.Name(), got, want)
		}
		for i := range want.Held {
			if got.Held[i].Currency != want.Held[i].Currency || got.Held[i].Held.Cmp(want.Held[i].Held) != 0 {
				t.Fatalf("%s: held %v, want %v", v.Name(), got.Held, want.Held)
			}
		}
	}
}
