package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestClusterHoldsAcrossFailover: workers put holds and then capture (in full or in
// part) or void them through every node of a three-node cluster, each request retried
// with its idempotency key until it has an answer, while the leader is stopped and
// restarted. Every acknowledged hold and finish is in the log exactly once, every node
// holds the same log and the same held totals, and each account's held total is the sum
// of its holds the log leaves open.
func TestClusterHoldsAcrossFailover(t *testing.T) {
	c := nodetest.StartCluster(t, 3)
	ctx := cfCtx(t, 120*time.Second)
	accounts := cfFund(t, ctx, c.Nodes[c.Leader(t)].Client, "h", 6, "100000")

	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		acked   = map[string]string{} // idempotency key -> transfer id
		finishd = map[string]string{} // transfer id -> captured / voided
		nOps    atomic.Int64
	)
	// The nodes' URLs, read once: Restart replaces c.Nodes[i] (on the same addresses)
	// while the workers run, so they must not read c.Nodes.
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	// send retries one command (same key) until a node answers it for good.
	send := func(via int, do func(cl *client.Client, ctx context.Context) (client.CommandResult, error)) (client.CommandResult, error) {
		for attempt := 0; ; attempt++ {
			cl := client.New(urls[(via+attempt)%3], &http.Client{Timeout: 10 * time.Second})
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			res, err := do(cl, rctx)
			cancel()
			if err == nil || !cfTransient(err) || ctx.Err() != nil {
				return res, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(7, uint64(w)))
			for seq := 0; !stop.Load(); seq++ {
				from := accounts[rng.IntN(len(accounts))]
				to := accounts[rng.IntN(len(accounts))]
				if from == to {
					continue
				}
				key := fmt.Sprintf("hold-%d-%d", w, seq)
				req := client.Transfer{FromAccountID: from, ToAccountID: to, Amount: fmt.Sprintf("%d.%02d", 1+rng.IntN(9), rng.IntN(100)), Pending: true}
				res, err := send(w, func(cl *client.Client, ctx context.Context) (client.CommandResult, error) {
					return cl.Transfer(ctx, req, key)
				})
				if err != nil {
					t.Errorf("hold %s: %v", key, err)
					return
				}
				mu.Lock()
				acked[key] = res.TransferID
				mu.Unlock()
				nOps.Add(1)
				if rng.IntN(4) == 0 {
					continue // left open
				}
				fkey := key + "-finish"
				var how string
				switch rng.IntN(3) {
				case 0:
					how = "voided"
					_, err = send(w+1, func(cl *client.Client, ctx context.Context) (client.CommandResult, error) {
						return cl.VoidTransfer(ctx, client.VoidTransfer{TransferID: res.TransferID}, fkey)
					})
				default:
					how = "captured"
					amount := ""
					if rng.IntN(2) == 0 {
						amount = "0.50"
					}
					_, err = send(w+2, func(cl *client.Client, ctx context.Context) (client.CommandResult, error) {
						return cl.CaptureTransfer(ctx, client.CaptureTransfer{TransferID: res.TransferID, Amount: amount}, fkey)
					})
				}
				if err != nil {
					t.Errorf("%s of %s: %v", how, res.TransferID, err)
					return
				}
				mu.Lock()
				finishd[res.TransferID] = how
				mu.Unlock()
				nOps.Add(1)
			}
		}()
	}
	cfEventually(t, 20*time.Second, "holds running", func() error {
		if n := nOps.Load(); n < 60 {
			return fmt.Errorf("%d operations", n)
		}
		return nil
	})
	L := c.Leader(t)
	c.Stop(t, L)
	before := nOps.Load()
	cfEventually(t, 30*time.Second, "holds resume after the leader stopped", func() error {
		if n := nOps.Load(); n < before+40 {
			return fmt.Errorf("%d operations since", n-before)
		}
		return nil
	})
	n := c.Restart(t, L)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := n.WaitReady(wctx); err != nil {
		t.Fatalf("restarted node not ready: %v", err)
	}
	wcancel()
	stop.Store(true)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	events, r := cfVerify(t, ctx, c.Nodes)
	byKey := cfByKey(events)
	mu.Lock()
	defer mu.Unlock()
	for key, id := range acked {
		evs := byKey[key]
		if len(evs) != 1 || evs[0].EventType != chronicle.EventTransferPending || evs[0].Data.TransferID != id {
			t.Fatalf("hold %s: %d events in the log (%+v)", key, len(evs), evs)
		}
		if how, ok := finishd[id]; ok {
			fe := byKey[key+"-finish"]
			want := chronicle.EventTransferVoided
			if how == "captured" {
				want = chronicle.EventTransferCaptured
			}
			if len(fe) == 0 || fe[0].EventType != want || fe[0].Data.TransferID != id || (how == "captured") != (len(fe) == 2) {
				t.Fatalf("%s of %s: events %+v", how, id, fe)
			}
		}
	}
	open := map[string]int64{}
	for id, p := range r.State.Holds {
		if _, finished := finishd[id]; finished == p.Open() {
			t.Fatalf("hold %s is %s in the log, the client saw %q", id, p.State, finishd[id])
		}
		if p.Open() {
			open[p.FromAccountID] += p.Amount
		}
	}
	for _, nd := range c.Nodes {
		accts, err := cfLocalAccounts(ctx, nd, uint64(len(events)))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range accts {
			cur, _ := chronicle.LookupCurrency(a.Currency)
			if want := chronicle.FormatMinor(open[a.AccountID], cur); a.Held != want || r.State.Accounts[a.AccountID].Held != open[a.AccountID] {
				t.Fatalf("%s: account %s held %s, open holds %s", nd.Config.NodeID, a.AccountID, a.Held, want)
			}
		}
	}
	t.Logf("%d holds acknowledged, %d finished, %d events", len(acked), len(finishd), len(events))
}
