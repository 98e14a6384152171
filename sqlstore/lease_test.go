package sqlstore

import (
	"sync"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/internal/pgtest"
)

// One holder at a time: a second holder is refused while the lease is live and takes it
// once it has expired; the holder renews its own; many contenders at once get one winner.
func TestLease(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	a, b := openStore(t, url, nil), openStore(t, url, nil)
	ctx := t.Context()
	if ok, err := a.TryLease(ctx, "pub", "a", time.Hour); err != nil || !ok {
		t.Fatalf("a takes a free lease: %t, %v", ok, err)
	}
	if ok, err := b.TryLease(ctx, "pub", "b", time.Hour); err != nil || ok {
		t.Fatalf("b takes a's live lease: %t, %v", ok, err)
	}
	if ok, err := a.TryLease(ctx, "pub", "a", 50*time.Millisecond); err != nil || !ok {
		t.Fatalf("a renews: %t, %v", ok, err)
	}
	// Poll until a's short lease has expired in the database's clock; then b takes it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := b.TryLease(ctx, "pub", "b", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never took the expired lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok, err := a.TryLease(ctx, "pub", "a", time.Hour); err != nil || ok {
		t.Fatalf("a takes back b's live lease: %t, %v", ok, err)
	}
	// Many contenders for a fresh lease: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	winners := 0
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := []*Store{a, b}[i%2]
			ok, err := s.TryLease(ctx, "fresh", string(rune('A'+i)), time.Hour)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d holders of one lease", winners)
	}
}
