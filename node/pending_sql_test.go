package node_test

import (
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// TestSQLPendingTransfers: in the SQL topology a hold is captured through one command
// process, another expires by the sweep of whichever command process holds the
// hold-sweep lease, and the query process's PostgreSQL view shows balance, held and
// available and the statement lines.
func TestSQLPendingTransfers(t *testing.T) {
	t.Parallel()
	es, rm := pgtest.Schema(t), pgtest.Schema(t)
	cmd := func() *nodetest.Node {
		return nodetest.Start(t, func(c *node.Config) {
			c.Store, c.EventStoreURL, c.Role, c.HoldSweepInterval = node.StoreSQL, es, httpapi.RoleCommand, 20*time.Millisecond
		})
	}
	c1, c2 := cmd(), cmd()
	q := sqlNode(t, es, httpapi.RoleQuery, rm)
	ctx := ctxT(t)
	for _, id := range []string{"A", "B"} {
		if _, err := c1.Client.CreateAccount(ctx, client.CreateAccount{AccountID: id, OwnerName: id, InitialBalance: "50", Currency: "USD"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	long, err := c1.Client.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "20", Pending: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	short, err := c2.Client.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "5", Pending: true, TimeoutSeconds: int64p(1)}, "")
	if err != nil {
		t.Fatal(err)
	}
	capt, err := c2.Client.CaptureTransfer(ctx, client.CaptureTransfer{TransferID: long.TransferID, Amount: "15"}, "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := q.Client.Account(ctx, "A", capt.Position)
	if err != nil || a.Balance != "35.00" || a.Held != "5.00" || a.Available != "30.00" {
		t.Fatalf("A after the capture: %+v, %v", a, err)
	}
	// No command touches A now: a sweep expires the short hold.
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs, lerr := q.Client.AllEvents(ctx)
		if lerr != nil {
			t.Fatal(lerr)
		}
		last := evs[len(evs)-1]
		if last.EventType == "TransferExpired" {
			if last.Data.TransferID != short.TransferID || last.CreatedBy != "hold-sweep" {
				t.Fatalf("expiry event %+v", last)
			}
			a, err = q.Client.Account(ctx, "A", last.Position)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the short hold did not expire; last event %+v", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || a.Balance != "35.00" || a.Held != "0.00" || a.Available != "35.00" {
		t.Fatalf("A after the expiry: %+v, %v", a, err)
	}
	txs, err := q.Client.Transactions(ctx, "A", 0, 0)
	if err != nil || len(txs) != 5 || txs[0].Type != "hold_expired" || txs[1].Type != "transfer_out" || txs[1].Amount != "15.00" ||
		txs[2].Type != "hold" || txs[3].Type != "hold" || txs[0].BalanceAfter != "35.00" {
		t.Fatalf("statement of A: %+v, %v", txs, err)
	}
}
