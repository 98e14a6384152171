package sqlstore

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
)

// openStores opens n stores on one schema at once, each with its own pool, as n
// processes would; the concurrent opens race their migrations.
func openStores(t *testing.T, url string, n int) []*Store {
	t.Helper()
	stores := make([]*Store, n)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i] = openStore(t, url, nil) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return stores
}

// TestConcurrentLoad runs random commands from many goroutines, first on one store,
// then on three stores sharing the database.
func TestConcurrentLoad(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("stores=%d", n), func(t *testing.T) {
			stores := openStores(t, pgtest.Schema(t), n)
			currencies := []string{"USD", "JPY", "BHD"}
			var setup []chronicle.Command
			for _, cur := range currencies {
				for i := range 4 {
					setup = append(setup, create(fmt.Sprintf("%s-%d", cur, i), cur, "100"))
				}
			}
			rs, err := stores[0].Execute(ctxT(t), setup)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if r.Err != nil {
					t.Fatal(r.Err)
				}
			}
			const workers, perWorker = 24, 30
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					for range perWorker {
						cur := currencies[rng.IntN(len(currencies))]
						a := fmt.Sprintf("%s-%d", cur, rng.IntN(4))
						b := fmt.Sprintf("%s-%d", cur, rng.IntN(4))
						amount := fmt.Sprint(1 + rng.IntN(40))
						var c chronicle.Command
						switch k := rng.IntN(10); {
						case k < 6 && a != b:
							c = transfer(a, b, amount)
						case k < 8:
							c = deposit(a, amount)
						default:
							c = withdraw(a, amount)
						}
						s := stores[rng.IntN(len(stores))]
						rs, err := s.Execute(ctxT(t), []chronicle.Command{c})
						if err != nil {
							errs <- err
							return
						}
						if e := rs[0].Err; e != nil && e.Code != chronicle.CodeInsufficientFunds {
							errs <- e
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			checkLedger(t, stores[0], rand.New(rand.NewPCG(5, 6)))
			var retries uint64
			for _, s := range stores {
				retries += s.Stats().Retries
			}
			t.Logf("%d stores: %d retries", n, retries)
		})
	}
}

// TestOverdraftRace sends many concurrent withdrawals through three stores: exactly as
// many succeed as the balance covers, and it never goes below zero.
func TestOverdraftRace(t *testing.T) {
	stores := openStores(t, pgtest.Schema(t), 3)
	ok(t, stores[0], create("A", "USD", "1000"))
	const tries = 60
	results := make([]chronicle.Result, tries)
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() {
			rs, err := stores[i%3].Execute(ctxT(t), []chronicle.Command{withdraw("A", "30")})
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = rs[0]
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	succeeded := 0
	for _, r := range results {
		switch {
		case r.Err == nil:
			succeeded++
		case r.Err.Code != chronicle.CodeInsufficientFunds:
			t.Fatalf("unexpected refusal: %v", r.Err)
		}
	}
	if succeeded != 33 {
		t.Fatalf("%d withdrawals of 30.00 from 1000.00 succeeded, want 33", succeeded)
	}
	for _, s := range stores {
		if got := balance(t, s, "A"); got != "10.00" {
			t.Fatalf("A = %s, want 10.00", got)
		}
	}
	checkLedger(t, stores[1], rand.New(rand.NewPCG(8, 9)))
}
