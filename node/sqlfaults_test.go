package node_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
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
	"github.com/chronicle-ledger/chronicle/sqlstore"
)

// launchSQL starts a SQL-mode process on the event store at es without waiting for it to
// be ready, logging through logs when given.
func launchSQL(t *testing.T, es, role string, logs *logCapture, opts ...nodetest.Option) *nodetest.Node {
	t.Helper()
	cfg := node.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", NodeID: "s1",
		Store: node.StoreSQL, EventStoreURL: es, Role: role}
	if logs != nil {
		cfg.Logger = logs.logger()
	}
	for _, o := range opts {
		o(&cfg)
	}
	return nodetest.Launch(t, cfg)
}

// requireUnavailable fails unless err is the API's 503 with the stable code unavailable.
func requireUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != chronicle.CodeUnavailable {
		t.Fatalf("%s: %v; want 503 %s", what, err, chronicle.CodeUnavailable)
	}
}

// TestSQLDatabaseUnreachableAtStart: a command process whose database refuses
// connections starts anyway, says why in its log and in /ready (503), refuses commands
// with 503 unavailable, and becomes ready by itself once the database answers.
func TestSQLDatabaseUnreachableAtStart(t *testing.T) {
	t.Parallel()
	es := pgtest.Schema(t)
	p, viaProxy := proxyTo(t, es)
	p.Down()
	logs := &logCapture{}
	n := launchSQL(t, viaProxy, httpapi.RoleCommand, logs)
	ctx := ctxT(t)

	eventually(t, 30*time.Second, "the log says the event store is unreachable", func() error {
		if logs.find("ERROR", "event store unreachable", "err=") == "" {
			return fmt.Errorf("log so far: %q", logs.all())
		}
		return nil
	})
	st := waitReadyStatus(t, n.URL(), http.StatusServiceUnavailable, 30*time.Second)
	if msg, _ := st.body["error"].(string); !strings.Contains(msg, "event store") {
		t.Fatalf("/ready gives no reason: %v", st.body)
	}
	_, err := n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "A", OwnerName: "A", Currency: "USD", InitialBalance: "5"}, "")
	requireUnavailable(t, "a command while the database is unreachable", err)

	p.Up()
	waitReadyStatus(t, n.URL(), http.StatusOK, 60*time.Second)
	if logs.find("event store open") == "" {
		t.Fatalf("the log does not say the event store opened: %q", logs.all())
	}
	if _, err := n.Client.CreateAccount(ctx, client.CreateAccount{AccountID: "A", OwnerName: "A", Currency: "USD", InitialBalance: "5"}, "k-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Client.Deposit(ctx, client.Money{AccountID: "A", Amount: "1"}, ""); err != nil {
		t.Fatal(err)
	}
}

// loadOutcome is what one keyed transfer of the load got.
type loadOutcome struct {
	key        string
	req        client.Transfer
	acked      bool
	status     int
	code       string
	transferID string
	position   uint64
	took       time.Duration
}

// sqlLoad sends keyed transfers through one command process from several workers.
type sqlLoad struct {
	cl       *client.Client
	accounts []string
	stop     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	outcomes []loadOutcome
}

func (l *sqlLoad) start(workers int) {
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				from := l.accounts[(w+i)%len(l.accounts)]
				to := l.accounts[(w+i+1+i%3)%len(l.accounts)]
				if from == to {
					continue
				}
				o := loadOutcome{key: fmt.Sprintf("w%d-%d", w, i),
					req: client.Transfer{FromAccountID: from, ToAccountID: to, Amount: fmt.Sprintf("%d.%02d", 1+i%5, w)}}
				// The client's own deadline is well beyond the API's request timeout (15s):
				// hitting it would be a hang.
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				t0 := time.Now()
				res, err := l.cl.Transfer(ctx, o.req, o.key)
				o.took = time.Since(t0)
				cancel()
				var ae *client.APIError
				switch {
				case err == nil:
					o.acked, o.status, o.transferID, o.position = true, res.Status, res.TransferID, res.Position
				case errors.As(err, &ae):
					o.status, o.code = ae.Status, ae.Code
				default:
					o.code = "no_answer: " + err.Error()
				}
				l.mu.Lock()
				l.outcomes = append(l.outcomes, o)
				l.mu.Unlock()
				if !o.acked {
					time.Sleep(20 * time.Millisecond) // as a client would back off
				}
			}
		}()
	}
}

func (l *sqlLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// counts returns how many transfers were acknowledged and how many failed so far.
func (l *sqlLoad) counts() (acked, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.outcomes {
		if o.acked {
			acked++
		} else {
			failed++
		}
	}
	return acked, failed
}

// readLog reads the whole log straight from the database.
func readLog(t *testing.T, ctx context.Context, st *sqlstore.Store) []chronicle.Event {
	t.Helper()
	var all []chronicle.Event
	for {
		var after uint64
		if len(all) > 0 {
			after = all[len(all)-1].Position
		}
		page, err := st.Events(ctx, chronicle.EventQuery{After: after, Limit: chronicle.MaxEventsPage})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
	}
}

// checkSQLLog verifies the chain of the whole log, replays it and compares every account
// with the store's, and returns the command ids stored under each idempotency key with
// their events.
func checkSQLLog(t *testing.T, ctx context.Context, st *sqlstore.Store) map[string]map[string][]chronicle.Event {
	t.Helper()
	events := readLog(t, ctx, st)
	v := chronicle.NewChainVerifier()
	r := chronicle.NewReplayer()
	byKey := map[string]map[string][]chronicle.Event{}
	for _, e := range events {
		if err := v.Check(e); err != nil {
			t.Fatalf("chain: %v", err)
		}
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
		if k := e.Metadata["idempotency_key"]; k != "" {
			if byKey[k] == nil {
				byKey[k] = map[string][]chronicle.Event{}
			}
			id := e.Metadata["command_id"]
			byKey[k][id] = append(byKey[k][id], e)
		}
	}
	for id, want := range r.State.Accounts {
		if chronicle.IsExternal(id) {
			continue
		}
		got, err := st.Account(ctx, id)
		if err != nil || got.Balance != want.Balance || got.Version != want.Version {
			t.Fatalf("account %s: store %+v (%v), replay %+v", id, got, err, want)
		}
	}
	for cur, total := range r.State.Totals() {
		if total != 0 {
			t.Fatalf("%s sums to %d", cur, total)
		}
	}
	return byKey
}

// TestSQLDatabaseGoneUnderLoad: under concurrent keyed transfers through a command
// process, the database goes away (every connection reset, new ones refused) and comes
// back. Meanwhile commands fail with 503 unavailable (never 500, never a hang) and /ready
// says 503; afterwards the process serves again by itself. Every acknowledged transfer is
// in the log exactly once, the chain verifies, a replay matches the accounts, and retrying
// every transfer whose outcome was unknown, with its key, applies it at most once.
func TestSQLDatabaseGoneUnderLoad(t *testing.T) {
	t.Parallel()
	es := pgtest.Schema(t)
	p, viaProxy := proxyTo(t, es)
	n := launchSQL(t, viaProxy, httpapi.RoleCommand, nil)
	ctx := ctxT(t)
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	accounts := []string{"a0", "a1", "a2", "a3", "a4", "a5"}
	for _, id := range accounts {
		mustCreate(t, n.Client, id, "USD", "100000")
	}
	load := &sqlLoad{cl: n.Client, accounts: accounts, stop: make(chan struct{})}
	load.start(6)
	eventually(t, 60*time.Second, "transfers before the outage", func() error {
		if a, _ := load.counts(); a < 40 {
			return fmt.Errorf("%d acknowledged", a)
		}
		return nil
	})

	// The database goes away at a COMMIT that succeeded: that batch's outcome is unknown
	// to the process, the hardest case for "nothing acknowledged lost, nothing twice".
	_, failedBefore := load.counts()
	p.DownAtNextCommit()
	select {
	case <-p.CommitDropped():
	case <-ctx.Done():
		t.Fatal("no COMMIT went through the proxy")
	}
	waitReadyStatus(t, n.URL(), http.StatusServiceUnavailable, 30*time.Second)
	eventually(t, 60*time.Second, "transfers fail during the outage", func() error {
		if _, f := load.counts(); f < failedBefore+12 {
			return fmt.Errorf("%d failed since the outage began", f-failedBefore)
		}
		return nil
	})

	p.Up()
	ackedAtUp, _ := load.counts()
	eventually(t, 60*time.Second, "transfers succeed again", func() error {
		if a, _ := load.counts(); a < ackedAtUp+40 {
			return fmt.Errorf("%d acknowledged since the database came back", a-ackedAtUp)
		}
		return nil
	})
	waitReadyStatus(t, n.URL(), http.StatusOK, 30*time.Second)
	load.finish()

	// Failures: 503 unavailable only, each answered within the request timeout.
	unknown := map[string]loadOutcome{}
	acked := map[string]loadOutcome{}
	for _, o := range load.outcomes {
		if o.took > 20*time.Second {
			t.Errorf("transfer %s took %s", o.key, o.took)
		}
		if o.acked {
			if o.status != http.StatusCreated || o.transferID == "" || o.position == 0 {
				t.Errorf("new key %s answered %d %+v", o.key, o.status, o)
			}
			acked[o.key] = o
			continue
		}
		if o.status != http.StatusServiceUnavailable || o.code != chronicle.CodeUnavailable {
			t.Errorf("transfer %s failed with %d %q; want 503 %s", o.key, o.status, o.code, chronicle.CodeUnavailable)
		}
		unknown[o.key] = o
	}
	if len(unknown) == 0 {
		t.Fatal("no transfer failed: the outage was not observed")
	}
	t.Logf("%d acknowledged, %d failed during the outage", len(acked), len(unknown))

	st, err := sqlstore.Open(ctx, sqlstore.Config{URL: es, Logger: nodetest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	byKey := checkSQLLog(t, ctx, st)
	for k, o := range acked {
		cmds := byKey[k]
		if len(cmds) != 1 {
			t.Errorf("acknowledged key %s is in the log under %d commands", k, len(cmds))
			continue
		}
		for _, evs := range cmds {
			if len(evs) != 2 || evs[1].Position != o.position || evs[0].Data.TransferID != o.transferID {
				t.Errorf("acknowledged key %s (position %d, transfer %s) is in the log as %+v", k, o.position, o.transferID, evs)
			}
		}
	}
	for k := range byKey {
		if _, ok := acked[k]; !ok {
			if _, ok := unknown[k]; !ok {
				t.Errorf("key %s in the log was never sent", k)
			}
		}
	}

	// Retry every unknown outcome with its key: a committed one replays, the others
	// apply now; either way once.
	replayed := 0
	for k, o := range unknown {
		res, err := n.Client.Transfer(ctx, o.req, k)
		if err != nil {
			t.Fatalf("retry of %s: %v", k, err)
		}
		committed := len(byKey[k]) == 1
		switch {
		case committed && (res.Status != http.StatusOK || !res.Replayed):
			t.Errorf("retry of %s, committed before, answered %d (replayed %t)", k, res.Status, res.Replayed)
		case !committed && res.Status != http.StatusCreated:
			t.Errorf("retry of %s, never committed, answered %d", k, res.Status)
		}
		if committed {
			replayed++
		}
	}
	t.Logf("retries: %d had committed, %d applied now", replayed, len(unknown)-replayed)
	if replayed == 0 {
		t.Error("no transfer of the batch whose COMMIT answer was lost was found committed")
	}
	byKey = checkSQLLog(t, ctx, st)
	for k := range unknown {
		if cmds := byKey[k]; len(cmds) != 1 {
			t.Errorf("retried key %s is in the log under %d commands", k, len(cmds))
		} else {
			for _, evs := range cmds {
				if len(evs) != 2 {
					t.Errorf("retried key %s has %d events", k, len(evs))
				}
			}
		}
	}
}

// TestSQLNATSGone: the NATS server of a command process goes away. Commands keep
// committing and /ready stays 200, its status saying NATS is disconnected; once a NATS
// server is back on the same port and store, the stream catches up with every position
// exactly once, in order.
func TestSQLNATSGone(t *testing.T) {
	t.Parallel()
	storeDir := t.TempDir()
	startNATS := func(port int) *server.Server {
		ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoSigs: true})
		if err != nil {
			t.Fatal(err)
		}
		ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats server not ready")
		}
		return ns
	}
	ns := startNATS(-1)
	natsURL := ns.ClientURL()
	es := pgtest.Schema(t)
	n := nodetest.Start(t, func(c *node.Config) {
		c.Store, c.EventStoreURL, c.Role, c.NATSURL = node.StoreSQL, es, httpapi.RoleCommand, natsURL
	})
	ctx := ctxT(t)
	mustCreate(t, n.Client, "a", "USD", "1000")
	mustCreate(t, n.Client, "b", "USD", "0")
	var head uint64
	move := func(k int) {
		t.Helper()
		for range k {
			res, err := n.Client.Transfer(ctx, client.Transfer{FromAccountID: "a", ToAccountID: "b", Amount: "1"}, "")
			if err != nil {
				t.Fatal(err)
			}
			head = max(head, res.Position)
		}
	}
	move(5)
	requireStreamExactly(t, natsURL, head)

	natsPort := ns.Addr().(*net.TCPAddr).Port
	ns.Shutdown()
	ns.WaitForShutdown()
	eventually(t, 30*time.Second, "/ready shows NATS disconnected", func() error {
		st, err := getReady(ctx, n.URL())
		if err != nil {
			return err
		}
		nats, _ := st.body["node"].(map[string]any)["nats"].(map[string]any)
		if st.status != http.StatusOK || nats["connected"] != false {
			return fmt.Errorf("/ready %d, nats %v", st.status, nats)
		}
		return nil
	})
	move(20) // every one commits
	if st, err := getReady(ctx, n.URL()); err != nil || st.status != http.StatusOK {
		t.Fatalf("/ready without NATS: %+v, %v", st, err)
	}

	startNATS(natsPort)
	requireStreamExactly(t, natsURL, head)
	move(3)
	requireStreamExactly(t, natsURL, head)
}

// TestSQLQueryProcessEventStoreGone: a query process whose event store goes away keeps
// serving accounts from its read model, answers /events with 503 unavailable, and serves
// everything again, caught up, once the store is back.
func TestSQLQueryProcessEventStoreGone(t *testing.T) {
	t.Parallel()
	es := pgtest.Schema(t)
	c := sqlNode(t, es, httpapi.RoleCommand, "")
	p, viaProxy := proxyTo(t, es)
	q := launchSQL(t, viaProxy, httpapi.RoleQuery, nil)
	ctx := ctxT(t)
	if err := q.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, c.Client, "A", "USD", "100")
	res, err := c.Client.Deposit(ctx, client.Money{AccountID: "A", Amount: "5"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := q.Client.Account(ctx, "A", res.Position); err != nil || a.Balance != "105.00" {
		t.Fatalf("account before the outage: %+v, %v", a, err)
	}

	p.Down()
	waitReadyStatus(t, q.URL(), http.StatusServiceUnavailable, 30*time.Second)
	for range 3 {
		a, err := q.Client.Account(ctx, "A", 0)
		if err != nil || a.Balance != "105.00" {
			t.Fatalf("account from the read model during the outage: %+v, %v", a, err)
		}
		if accts, err := q.Client.Accounts(ctx, "", 10); err != nil || len(accts) != 1 {
			t.Fatalf("accounts from the read model during the outage: %+v, %v", accts, err)
		}
		_, err = q.Client.Events(ctx, client.EventsQuery{})
		requireUnavailable(t, "/events during the outage", err)
	}
	// The log moves on meanwhile, through the command process.
	res, err = c.Client.Deposit(ctx, client.Money{AccountID: "A", Amount: "7"}, "")
	if err != nil {
		t.Fatal(err)
	}

	p.Up()
	waitReadyStatus(t, q.URL(), http.StatusOK, 60*time.Second)
	if a, err := q.Client.Account(ctx, "A", res.Position); err != nil || a.Balance != "112.00" {
		t.Fatalf("account after the outage: %+v, %v", a, err)
	}
	evs, err := q.Client.Events(ctx, client.EventsQuery{})
	if err != nil || len(evs) == 0 || evs[0].Position != res.Position {
		t.Fatalf("/events after the outage: %d events, %v", len(evs), err)
	}
}

// TestSQLDatabaseBlackholed: the network to the database drops everything silently (no
// reset, no refusal: connections just stop answering). A command process and a query
// process must notice (/ready 503) rather than wait on a dead connection, answer commands
// and /events with 503 unavailable within the request timeout, keep serving accounts from
// the read model, and recover once the network does.
func TestSQLDatabaseBlackholed(t *testing.T) {
	t.Parallel()
	es := pgtest.Schema(t)
	pc, cURL := proxyTo(t, es)
	pq, qURL := proxyTo(t, es)
	c := launchSQL(t, cURL, httpapi.RoleCommand, nil)
	q := launchSQL(t, qURL, httpapi.RoleQuery, nil)
	ctx := ctxT(t)
	for _, n := range []*nodetest.Node{c, q} {
		if err := n.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, c.Client, "A", "USD", "100")
	res, err := c.Client.Deposit(ctx, client.Money{AccountID: "A", Amount: "5"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := q.Client.Account(ctx, "A", res.Position); err != nil || a.Balance != "105.00" {
		t.Fatalf("account before the outage: %+v, %v", a, err)
	}

	pc.Blackhole()
	pq.Blackhole()
	waitReadyStatus(t, c.URL(), http.StatusServiceUnavailable, 60*time.Second)
	waitReadyStatus(t, q.URL(), http.StatusServiceUnavailable, 60*time.Second)
	// Bounded by a client deadline beyond the API's request timeout (15s): reaching it is
	// a hang.
	bounded := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 20*time.Second) }
	cctx, cancel := bounded()
	_, err = c.Client.Deposit(cctx, client.Money{AccountID: "A", Amount: "1"}, "k-blackholed")
	cancel()
	requireUnavailable(t, "a command with the database blackholed", err)
	cctx, cancel = bounded()
	a, err := q.Client.Account(cctx, "A", 0)
	cancel()
	if err != nil || a.Balance != "105.00" {
		t.Fatalf("account from the read model with the database blackholed: %+v, %v", a, err)
	}
	cctx, cancel = bounded()
	_, err = q.Client.Events(cctx, client.EventsQuery{})
	cancel()
	requireUnavailable(t, "/events with the database blackholed", err)

	pc.Up()
	pq.Up()
	waitReadyStatus(t, c.URL(), http.StatusOK, 60*time.Second)
	waitReadyStatus(t, q.URL(), http.StatusOK, 60*time.Second)
	res, err = c.Client.Deposit(ctx, client.Money{AccountID: "A", Amount: "1"}, "k-blackholed")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := q.Client.Account(ctx, "A", res.Position); err != nil || a.Balance != "106.00" {
		t.Fatalf("account after the outage: %+v, %v", a, err)
	}
}
