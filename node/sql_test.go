package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/node"
	"github.com/chronicle-ledger/chronicle/node/nodetest"
)

// sqlNode starts a process of the SQL topology on the event store at es.
func sqlNode(t *testing.T, es, role, readModel string) *nodetest.Node {
	t.Helper()
	return nodetest.Start(t, func(c *node.Config) {
		c.Store, c.EventStoreURL, c.Role, c.ReadModel = node.StoreSQL, es, role, readModel
	})
}

// TestSQLTopology runs the original system's shape as processes of one binary: two
// command processes and a query process (with its PostgreSQL read model) on one SQL
// event store. Commands through either command process land in one chain; the query
// process serves them (read-your-writes through min_position); roles serve only their
// own endpoints.
func TestSQLTopology(t *testing.T) {
	t.Parallel()
	es, rm := pgtest.Schema(t), pgtest.Schema(t)
	c1 := sqlNode(t, es, httpapi.RoleCommand, "")
	c2 := sqlNode(t, es, httpapi.RoleCommand, "")
	q := sqlNode(t, es, httpapi.RoleQuery, rm)
	ctx := ctxT(t)

	// The seed flow, alternating command processes.
	if _, err := c1.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "A", OwnerName: "Alice", InitialBalance: "0", Currency: "USD"}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "B", OwnerName: "Bob", InitialBalance: "0", Currency: "USD"}, ""); err != nil {
		t.Fatal(err)
	}
	dep, err := c1.Client.Deposit(ctx, client.Money{AccountID: "A", Amount: "1000"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Client.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "300"}, ""); err != nil {
		t.Fatal(err)
	}
	last, err := c1.Client.Withdraw(ctx, client.Money{AccountID: "B", Amount: "50"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"A": "700.00", "B": "250.00"} {
		a, err := q.Client.Account(ctx, id, last.Position)
		if err != nil || a.Balance != want {
			t.Fatalf("query process: account %s %+v, %v; want %s", id, a, err, want)
		}
	}
	if bal, err := q.Client.BalanceAt(ctx, "A", dep.CommittedAt); err != nil || bal.Balance != "1000.00" {
		t.Fatalf("balance-at through the query process: %+v, %v", bal, err)
	}

	// Each role serves its own endpoints only.
	if status, _ := q.Client.Do(ctx, http.MethodPost, "/commands/deposit", []byte(`{"account_id":"A","amount":"1"}`), nil, nil); status != http.StatusNotFound {
		t.Fatalf("a query process answered a command with %d", status)
	}
	if status, _ := c1.Client.Do(ctx, http.MethodGet, "/accounts/A", nil, nil, nil); status != http.StatusNotFound {
		t.Fatalf("a command process answered a read with %d", status)
	}

	// Concurrent load through both command processes: one chain, every account as the
	// replay of the log says, every currency summing to zero.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var top uint64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := []*client.Client{c1.Client, c2.Client}[w%2]
			for i := range 15 {
				from, to := "A", "B"
				if i%2 == 1 {
					from, to = to, from
				}
				res, err := cl.Transfer(ctx, client.Transfer{FromAccountID: from, ToAccountID: to, Amount: fmt.Sprintf("1.%02d", w)}, "")
				if err != nil && client.CodeOf(err) != chronicle.CodeInsufficientFunds {
					t.Errorf("transfer: %v", err)
					return
				}
				mu.Lock()
				top = max(top, res.Position)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	// The account lifecycle in SQL mode: a freeze through one command process holds for
	// the other (the status lives in the event store's accounts), credits still land,
	// and the query process's view shows the status.
	fr, err := c2.Client.FreezeAccount(ctx, client.AccountLifecycle{AccountID: "A", Reason: "audit"}, "sql-freeze-A")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Client.Withdraw(ctx, client.Money{AccountID: "A", Amount: "1"}, ""); client.CodeOf(err) != chronicle.CodeAccountFrozen {
		t.Fatalf("withdraw from frozen A through the other process: %v, want %s", err, chronicle.CodeAccountFrozen)
	}
	dep2, err := c1.Client.Deposit(ctx, client.Money{AccountID: "A", Amount: "1"}, "")
	if err != nil {
		t.Fatalf("deposit to frozen A: %v", err)
	}
	top = max(top, fr.Position, dep2.Position)
	if a, err := q.Client.Account(ctx, "A", top); err != nil || a.Status != "frozen" {
		t.Fatalf("query process: A %+v, %v; want frozen", a, err)
	}
	events, err := q.Client.AllEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := chronicle.NewReplayer()
	for _, e := range events {
		if err := r.Add(e); err != nil {
			t.Fatalf("the log read through the query process: %v", err)
		}
	}
	for id, acc := range r.State.Accounts {
		if chronicle.IsExternal(id) {
			continue
		}
		got, err := q.Client.Account(ctx, id, top)
		cur, _ := chronicle.LookupCurrency(acc.Currency)
		if err != nil || got.Balance != chronicle.FormatMinor(acc.Balance, cur) || got.Status != string(acc.Status) {
			t.Fatalf("account %s: read model %+v (%v), replay %d", id, got, err, acc.Balance)
		}
	}
	for cur, total := range r.State.Totals() {
		if total != 0 {
			t.Fatalf("%s sums to %d", cur, total)
		}
	}
}

// TestSQLEventStoreDownAtStart: a process whose event store does not answer starts,
// says why in /ready and stays not ready (no crash loop), refusing commands with a 503.
func TestSQLEventStoreDownAtStart(t *testing.T) {
	t.Parallel()
	dead := "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"
	n := nodetest.Launch(t, node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", NodeID: "s1",
		Store: node.StoreSQL, EventStoreURL: dead, Role: httpapi.RoleCommand})
	ctx := ctxT(t)
	resp, err := http.Get(n.URL() + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || body["error"] == nil {
		t.Fatalf("/ready with the event store down: %d %v (%v)", resp.StatusCode, body, err)
	}
	_, err = n.Client.Deposit(ctx, client.Money{AccountID: "A", Amount: "1"}, "")
	if client.CodeOf(err) != chronicle.CodeUnavailable {
		t.Fatalf("a command with the event store down: %v", err)
	}
}

// TestSQLSharedNATSOnePublisher: two command processes on one SQL event store and one
// NATS: the publisher lease lets one publish at a time, and the stream holds every
// position exactly once, in order, also after the publishing process stops.
func TestSQLSharedNATSOnePublisher(t *testing.T) {
	t.Parallel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	es := pgtest.Schema(t)
	start := func() *nodetest.Node {
		return nodetest.Start(t, func(c *node.Config) {
			c.Store, c.EventStoreURL, c.Role, c.NATSURL = node.StoreSQL, es, httpapi.RoleCommand, ns.ClientURL()
		})
	}
	c1, c2 := start(), start()
	mustCreate(t, c1.Client, "a", "USD", "100")
	mustCreate(t, c2.Client, "b", "USD", "0")
	ctx := ctxT(t)
	var head uint64
	move := func(via *client.Client, k int) {
		for range k {
			res, err := via.Transfer(ctx, client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "1"}, "")
			if err != nil {
				t.Fatal(err)
			}
			head = max(head, res.Position)
		}
	}
	move(c1.Client, 5)
	move(c2.Client, 5)
	requireStreamExactly(t, ns.ClientURL(), head)
	// Whoever published, stop c1: c2 (taking the lease once it expires, if it was c1's)
	// publishes what follows.
	c1.Stop(t)
	move(c2.Client, 5)
	requireStreamExactly(t, ns.ClientURL(), head)
}
