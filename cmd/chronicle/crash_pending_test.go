package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
)

// TestCrashRecoveryHolds SIGKILLs the real binary while workers put holds and capture or
// void them (every request with an idempotency key), restarts it on the same data
// directory and checks: every acknowledged hold and finish is in the log exactly once,
// requests with an unknown outcome committed at most once, every account's held total
// is the sum of its holds the log leaves open, and a hold acknowledged before the crash
// can still be captured after it.
func TestCrashRecoveryHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the real binary; skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := buildChronicle(t, ctx)
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startChronicle(t, ctx, bin, dataDir, 0)
	c := client.New(p.url, nil)
	ids := make([]string, 8)
	for i := range ids {
		ids[i] = fmt.Sprintf("hold-%d", i)
		if _, err := c.CreateAccount(ctx, client.CreateAccount{AccountID: ids[i], OwnerName: ids[i], Currency: "USD", InitialBalance: "100000.00"}, "create-"+ids[i]); err != nil {
			t.Fatal(err)
		}
	}

	var (
		mu      sync.Mutex
		acked   = map[string]string{} // key -> transfer id (holds and finishes)
		unknown = map[string]bool{}   // keys whose outcome is unknown
		open    []string              // acknowledged holds, for the survivor check
		nAcked  atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	hc := &http.Client{Timeout: 5 * time.Second}
	cl := client.New(p.url, hc)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(11, uint64(w)))
			for seq := 0; !stop.Load(); seq++ {
				from, to := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
				if from == to {
					continue
				}
				key := fmt.Sprintf("h-%d-%d", w, seq)
				res, err := cl.Transfer(ctx, client.Transfer{FromAccountID: from, ToAccountID: to, Amount: "1.25", Pending: true}, key)
				mu.Lock()
				if err != nil {
					unknown[key] = true
					mu.Unlock()
					return // the node is gone
				}
				acked[key] = res.TransferID
				mu.Unlock()
				nAcked.Add(1)
				fkey := key + "-f"
				if rng.IntN(3) == 0 {
					mu.Lock()
					open = append(open, res.TransferID)
					mu.Unlock()
					continue
				}
				if rng.IntN(2) == 0 {
					_, err = cl.CaptureTransfer(ctx, client.CaptureTransfer{TransferID: res.TransferID, Amount: "1.00"}, fkey)
				} else {
					_, err = cl.VoidTransfer(ctx, client.VoidTransfer{TransferID: res.TransferID}, fkey)
				}
				mu.Lock()
				if err != nil {
					unknown[fkey] = true
					mu.Unlock()
					return
				}
				acked[fkey] = res.TransferID
				mu.Unlock()
				nAcked.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for nAcked.Load() < 300 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d acknowledged in 60s; stderr:\n%s", nAcked.Load(), p.stderrTail())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	p.waitKilled(t)
	wg.Wait()

	p = startChronicle(t, ctx, bin, dataDir, 1)
	c = client.New(p.url, nil)
	// Let the node apply its whole log: a refusal is decided after every entry before it.
	if _, err := c.Transfer(ctx, client.Transfer{FromAccountID: ids[0], ToAccountID: ids[1], Amount: "99999999.00", Pending: true}, ""); client.CodeOf(err) != chronicle.CodeInsufficientFunds {
		t.Fatalf("barrier: %v", err)
	}
	events, err := c.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := chronicle.NewReplayer()
	byKey := map[string][]chronicle.Event{}
	for _, e := range events {
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
		if k := e.Metadata["idempotency_key"]; k != "" {
			byKey[k] = append(byKey[k], e)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for key, id := range acked {
		evs := byKey[key]
		if len(evs) == 0 || evs[0].Data.TransferID != id {
			t.Fatalf("acknowledged %s (transfer %s) is not in the log after the crash: %+v", key, id, evs)
		}
	}
	for key := range unknown {
		if evs := byKey[key]; len(evs) > 2 {
			t.Fatalf("request %s with an unknown outcome committed %d events", key, len(evs))
		}
	}
	for key, evs := range byKey {
		if len(evs) > 2 || len(evs) == 2 && evs[0].EventType != chronicle.EventTransferCaptured {
			t.Fatalf("key %s: %d events (%s)", key, len(evs), evs[0].EventType)
		}
	}
	openHeld := map[string]int64{}
	for _, h := range r.State.Holds {
		if h.Open() {
			openHeld[h.FromAccountID] += h.Amount
		}
	}
	usd, _ := chronicle.LookupCurrency("USD")
	for _, id := range ids {
		a, err := c.Account(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := chronicle.FormatMinor(openHeld[id], usd); a.Held != want || r.State.Accounts[id].Held != openHeld[id] {
			t.Fatalf("account %s: held %s after the crash, open holds in the log %s", id, a.Held, want)
		}
	}
	if len(open) == 0 {
		t.Fatal("no hold was left open before the crash")
	}
	res, err := c.CaptureTransfer(ctx, client.CaptureTransfer{TransferID: open[0]}, "")
	if err != nil || len(res.Events) != 2 {
		t.Fatalf("capture after the crash of a hold acknowledged before it: %+v, %v", res, err)
	}
	t.Logf("%d acknowledged, %d unknown, %d events; %d holds open", len(acked), len(unknown), len(events), len(open))
}
