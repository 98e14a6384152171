package main

// End-to-end test of the SQL topology (deploy/compose/sql.yml, make sql-demo) as real
// processes of the binary: two command processes and a query process on one PostgreSQL
// event store, a PostgreSQL read model and a NATS server of the test's own.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/client"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
)

// TestSQLTopologyProcesses starts two command processes and a query process of the real
// binary on a fresh event store and read model, runs the seed flow through them, then
// concurrent keyed transfers through both command processes, SIGKILLs one mid-load and
// keeps loading through the other. Then: verify passes against the query process; every
// acknowledged command's events are in the log exactly once, where its answer said; no
// event is there twice; every in-doubt transfer retried through the survivor is replayed
// (it had committed) or applied once (it had not); acknowledged transfers sent again
// through the other process are replayed, never applied again; and the NATS stream holds
// the log exactly once although its publisher may have been the process killed.
func TestSQLTopologyProcesses(t *testing.T) {
	rsSkipShort(t)
	const (
		numAccounts     = 12
		initial         = "1000.00"
		workers         = 8 // half on each command process until the kill
		ackedBeforeKill = 300
		ackedAfterKill  = 200
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	es, rm := pgtest.Schema(t), pgtest.Schema(t) // first: skips before the build without PostgreSQL
	bin := buildChronicle(t, ctx)
	ns := startNATSServer(t, t.TempDir(), natsserver.RANDOM_PORT)
	natsURL := ns.ClientURL()

	// The first command process's connections carry an application_name of their own,
	// so the test can tell when the server is done with them after the kill.
	var b [6]byte
	_, _ = rand.Read(b[:])
	killedApp := "chronicle_test_cmd1_" + hex.EncodeToString(b[:])
	c1 := startSQLProcess(t, ctx, bin, "command-1", "--role", "command", "--event-store", withApplicationName(t, es, killedApp), "--nats-url", natsURL)
	c2 := startSQLProcess(t, ctx, bin, "command-2", "--role", "command", "--event-store", es, "--nats-url", natsURL)
	q := startSQLProcess(t, ctx, bin, "query", "--role", "query", "--event-store", es, "--read-model", rm, "--nats-url", natsURL)
	cl1, cl2, ql := client.New(c1.url, nil), client.New(c2.url, nil), client.New(q.url, nil)
	t.Logf("command processes at %s and %s, query process at %s, NATS at %s", c1.url, c2.url, q.url, natsURL)

	// Every acknowledged command, to find its events in the log afterwards.
	var ackedMu sync.Mutex
	var acked []client.CommandResult
	ack := func(res client.CommandResult, err error) client.CommandResult {
		t.Helper()
		if err != nil || res.Status != http.StatusCreated {
			t.Fatalf("command: %+v, %v", res, err)
		}
		ackedMu.Lock()
		acked = append(acked, res)
		ackedMu.Unlock()
		return res
	}

	// The seed flow, alternating command processes, read back through the query process.
	ack(cl1.CreateAccount(ctx, client.CreateAccount{AccountID: "A", OwnerName: "Alice", InitialBalance: "0", Currency: "USD"}, ""))
	ack(cl2.CreateAccount(ctx, client.CreateAccount{AccountID: "B", OwnerName: "Bob", InitialBalance: "0", Currency: "USD"}, ""))
	ack(cl1.Deposit(ctx, client.Money{AccountID: "A", Amount: "1000"}, ""))
	ack(cl2.Transfer(ctx, client.Transfer{FromAccountID: "A", ToAccountID: "B", Amount: "300", Description: "rent"}, ""))
	last := ack(cl1.Withdraw(ctx, client.Money{AccountID: "B", Amount: "50.00"}, ""))
	for id, want := range map[string]string{"A": "700.00", "B": "250.00"} {
		a, err := ql.Account(ctx, id, last.Position)
		if err != nil || a.Balance != want {
			t.Fatalf("seed flow: account %s through the query process at min_position %d: %+v, %v; want %s", id, last.Position, a, err, want)
		}
	}
	t.Logf("seed flow: A 700.00, B 250.00 through the query process at min_position %d", last.Position)

	ids := make([]string, numAccounts)
	for i := range ids {
		ids[i] = fmt.Sprintf("load-%02d", i)
		ack([]*client.Client{cl1, cl2}[i%2].CreateAccount(ctx, client.CreateAccount{AccountID: ids[i], OwnerName: "Load " + ids[i],
			Currency: "USD", InitialBalance: initial}, "sqltopo-create-"+ids[i]))
	}

	// Concurrent keyed transfers through both command processes; command-1 is killed once
	// enough are acknowledged, and its workers move to command-2.
	led := &sqlLoad{byKey: map[string]*keyedTransfer{}}
	var killed atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 10 * time.Second}
	via := []*client.Client{client.New(c1.url, hc), client.New(c2.url, hc)}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(7, uint64(w)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				proc := w % 2
				if killed.Load() {
					proc = 1
				}
				from := rng.IntN(len(ids))
				to := (from + 1 + rng.IntN(len(ids)-1)) % len(ids)
				amount := 1 + rng.IntN(500)
				req := client.Transfer{FromAccountID: ids[from], ToAccountID: ids[to],
					Amount: fmt.Sprintf("%d.%02d", amount/100, amount%100), Description: "sql topology load"}
				key := fmt.Sprintf("sqltopo-w%d-%d", w, i)
				res, err := via[proc].Transfer(ctx, req, key)
				led.record(key, req, proc, killed.Load(), res, err)
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	// Both processes take load before the kill.
	led.waitFor(t, ctx, "both command processes acknowledging", func() bool {
		return led.ackedBy[0].Load() >= ackedBeforeKill/3 && led.ackedBy[1].Load() >= ackedBeforeKill/3 &&
			led.ackedBy[0].Load()+led.ackedBy[1].Load() >= ackedBeforeKill
	}, c1, c2)
	killed.Store(true)
	if err := c1.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill command-1: %v", err)
	}
	c1.waitKilled(t)
	atKill := [2]int64{led.ackedBy[0].Load(), led.ackedBy[1].Load()}
	t.Logf("command-1 SIGKILLed under load: %d transfers acknowledged by command-1, %d by command-2", atKill[0], atKill[1])
	led.waitFor(t, ctx, "command-2 carrying the load alone", func() bool {
		return led.ackedAfterKill.Load() >= ackedAfterKill
	}, c2)
	stopLoad()

	// Whatever command-1 had sent before it died is committed or rolled back once the
	// server has no backend left for it; only then is the log final for the checks.
	conn := rsPG(t, ctx, es)
	waitPGBackendsGone(t, ctx, conn, killedApp, 30*time.Second)

	led.mu.Lock()
	nAcked, nUnknown, nRefused := 0, 0, 0
	for _, k := range led.byKey {
		switch {
		case k.acked != nil:
			nAcked++
		case k.refused != "":
			nRefused++
		default:
			nUnknown++
		}
	}
	led.mu.Unlock()
	t.Logf("load: %d keyed transfers acknowledged (%d by command-1, %d by command-2; %d of them after the kill), %d in doubt, %d refused",
		nAcked, led.ackedBy[0].Load(), led.ackedBy[1].Load(), led.ackedAfterKill.Load(), nUnknown, nRefused)
	if nUnknown == 0 {
		t.Log("no request was in flight on command-1 when it died (nothing in doubt to retry)")
	}

	out, code := runVerify(t, ctx, bin, q.url, rm)
	if code != 0 || !strings.Contains(out, "RESULT: OK") {
		t.Fatalf("verify against the query process exited %d, want 0 with RESULT: OK:\n%s", code, out)
	}

	before := checkSQLLog(t, ctx, ql, led, acked, "after the kill")

	// Retry every in-doubt transfer through the survivor with its key and body.
	replayed, applied, refused := 0, 0, 0
	for key, k := range led.byKey {
		if k.acked != nil || k.refused != "" {
			continue
		}
		res, err := cl2.Transfer(ctx, k.req, key)
		inLog := before.keyEvents[key] > 0
		var apiErr *client.APIError
		switch {
		case err == nil && res.Status == http.StatusOK && inLog:
			replayed++
			if want := before.keyTransfer[key]; res.TransferID != want || !res.Replayed {
				t.Errorf("retry of committed %s replayed transfer %s (replayed=%v); the log has %s", key, res.TransferID, res.Replayed, want)
			}
		case err == nil && res.Status == http.StatusCreated && !inLog:
			applied++
		case errors.As(err, &apiErr) && apiErr.Status < 500 && !inLog:
			refused++
			k.refused = apiErr.Code
			continue
		default:
			t.Errorf("retry of in-doubt %s (in the log before: %v): %+v, %v", key, inLog, res, err)
			continue
		}
		k.acked = &res
		acked = append(acked, res)
	}
	t.Logf("retried %d in-doubt transfers through command-2: %d had committed (200 replay), %d had not (201 applied once), %d refused",
		replayed+applied+refused, replayed, applied, refused)

	// Acknowledged transfers sent again through the other command process are replays.
	resent := 0
	for key, k := range led.byKey {
		if k.acked == nil || k.proc != 0 {
			continue
		}
		res, err := cl2.Transfer(ctx, k.req, key)
		if err != nil || res.Status != http.StatusOK || !res.Replayed || res.TransferID != k.acked.TransferID {
			t.Errorf("transfer %s acknowledged by command-1, sent again through command-2: %+v, %v; want a 200 replay of %s", key, res, err, k.acked.TransferID)
		}
		resent++
	}
	t.Logf("sent the %d transfers first sent to command-1 (acknowledged there, or on retry) again through command-2: all replayed", resent)

	events := checkSQLLog(t, ctx, ql, led, acked, "after the retries").events
	out, code = runVerify(t, ctx, bin, q.url, rm)
	if code != 0 || !strings.Contains(out, "RESULT: OK") {
		t.Fatalf("verify after the retries exited %d, want 0 with RESULT: OK:\n%s", code, out)
	}

	// The read model agrees with the replayed log for every account, at the head.
	r := chronicle.NewReplayer()
	for _, e := range events {
		if err := r.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	usd, _ := chronicle.LookupCurrency("USD")
	head := uint64(len(events))
	var loadSum int64
	for _, id := range append([]string{"A", "B"}, ids...) {
		a, err := ql.Account(ctx, id, head)
		if err != nil {
			t.Fatalf("account %s through the query process: %v", id, err)
		}
		want := r.State.Accounts[id]
		if got := chronicle.FormatMinor(want.Balance, usd); a.Balance != got || a.Version != want.Version {
			t.Errorf("account %s: read model %s v%d, replay %s v%d", id, a.Balance, a.Version, got, want.Version)
		}
		if strings.HasPrefix(id, "load-") {
			loadSum += want.Balance
		}
	}
	initialMinor, _ := chronicle.ParseMoney(initial, usd)
	if loadSum != numAccounts*initialMinor {
		t.Errorf("load accounts sum to %s, want %s", chronicle.FormatMinor(loadSum, usd), chronicle.FormatMinor(numAccounts*initialMinor, usd))
	}

	// NATS: the stream holds positions 1..head once each, in order, whichever command
	// process held the publisher lease when command-1 died.
	waitStreamLastSeq(t, ctx, natsURL, head, 30*time.Second)
	checkStream(t, ctx, natsURL, events)
	t.Logf("log of %d events: verify OK twice, read model equal to the replay, NATS stream 1..%d exactly once", head, head)
}

// startSQLProcess starts `chronicle serve --store sql args...` on an OS-chosen port and
// waits until it serves.
func startSQLProcess(t *testing.T, ctx context.Context, bin, name string, args ...string) *chronicleProc {
	t.Helper()
	args = append([]string{"serve", "--store", "sql", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--node-id", name}, args...)
	p, urls := launchChronicle(t, bin, filepath.Join(t.TempDir(), name+".log"), args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, p.stderrTail())
		}
	})
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case p.url = <-urls:
		return p
	case err := <-p.exited:
		p.waited, p.waitErr = true, err
		t.Fatalf("%s exited before serving (%v)", name, err)
	case <-readyCtx.Done():
		t.Fatalf("%s did not print its serving line in time", name)
	}
	return nil
}

// keyedTransfer is one Idempotency-Key of the load and what became of it.
type keyedTransfer struct {
	req     client.Transfer
	proc    int                   // 0: command-1, 1: command-2
	acked   *client.CommandResult // nil: not acknowledged
	refused string                // a definite 4xx refusal's code
}

// sqlLoad is what the load's clients know, by key.
type sqlLoad struct {
	mu             sync.Mutex
	byKey          map[string]*keyedTransfer
	problem        string
	ackedBy        [2]atomic.Int64
	ackedAfterKill atomic.Int64
}

func (l *sqlLoad) record(key string, req client.Transfer, proc int, afterKill bool, res client.CommandResult, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := &keyedTransfer{req: req, proc: proc}
	l.byKey[key] = k
	var apiErr *client.APIError
	switch {
	case err == nil:
		if res.Status != http.StatusCreated || res.TransferID == "" || len(res.Events) != 2 ||
			res.Events[0].Type != chronicle.EventMoneyWithdrawn || res.Events[1].Type != chronicle.EventMoneyDeposited {
			if l.problem == "" {
				l.problem = fmt.Sprintf("transfer %s: unexpected acknowledgement %+v", key, res)
			}
		}
		k.acked = &res
		l.ackedBy[proc].Add(1)
		if afterKill {
			l.ackedAfterKill.Add(1)
		}
	case errors.As(err, &apiErr) && apiErr.Status < 500:
		k.refused = apiErr.Code
	}
}

// waitFor polls cond until it holds, failing on a client-side problem, on the death of
// a process that should be running, or after a minute.
func (l *sqlLoad) waitFor(t *testing.T, ctx context.Context, what string, cond func() bool, alive ...*chronicleProc) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	for !cond() {
		l.mu.Lock()
		problem := l.problem
		l.mu.Unlock()
		if problem != "" {
			t.Fatal(problem)
		}
		for _, p := range alive {
			checkAlive(t, p, "a command process")
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not reached in a minute (acknowledged: %d by command-1, %d by command-2, %d after the kill)",
				what, l.ackedBy[0].Load(), l.ackedBy[1].Load(), l.ackedAfterKill.Load())
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		}
	}
}

// sqlLogView is what one read of the whole log says.
type sqlLogView struct {
	events      []chronicle.Event
	keyEvents   map[string]int    // events carrying each load key
	keyTransfer map[string]string // load key -> transfer_id
}

// checkSQLLog reads the whole log through c and checks it against what the clients
// know: positions 1..N without a gap, the hash chain, every event id once, every
// transfer whole and once, every acknowledged command's events where its answer said,
// every acknowledged load key on exactly its two events, in-doubt keys on none or two,
// and no event of a refused key.
func checkSQLLog(t *testing.T, ctx context.Context, c *client.Client, l *sqlLoad, acked []client.CommandResult, when string) sqlLogView {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	events, err := c.AllEvents(ctx)
	if err != nil {
		t.Fatalf("%s: read the log: %v", when, err)
	}
	v := sqlLogView{events: events, keyEvents: map[string]int{}, keyTransfer: map[string]string{}}
	r := chronicle.NewReplayer()
	ids := map[string]uint64{}
	withdrawn, deposited := map[string]int{}, map[string]int{}
	for i, e := range events {
		if e.Position != uint64(i+1) {
			t.Fatalf("%s: event #%d has position %d (gap or reorder)", when, i+1, e.Position)
		}
		if err := r.Add(e); err != nil {
			t.Fatalf("%s: replay: %v", when, err)
		}
		if p, dup := ids[e.EventID]; dup {
			t.Errorf("%s: event %s at positions %d and %d", when, e.EventID, p, e.Position)
		}
		ids[e.EventID] = e.Position
		switch e.EventType {
		case chronicle.EventMoneyWithdrawn:
			if e.Data.TransferID != "" {
				withdrawn[e.Data.TransferID]++
			}
		case chronicle.EventMoneyDeposited:
			if e.Data.TransferID != "" {
				deposited[e.Data.TransferID]++
			}
		}
		if k := e.Metadata["idempotency_key"]; strings.HasPrefix(k, "sqltopo-w") {
			v.keyEvents[k]++
			if prev, ok := v.keyTransfer[k]; ok && prev != e.Data.TransferID {
				t.Errorf("%s: key %s is on transfers %s and %s", when, k, prev, e.Data.TransferID)
			}
			v.keyTransfer[k] = e.Data.TransferID
		}
	}
	for id, w := range withdrawn {
		if w != 1 || deposited[id] != 1 {
			t.Errorf("%s: transfer %s has %d MoneyWithdrawn and %d MoneyDeposited", when, id, w, deposited[id])
		}
	}
	for id, d := range deposited {
		if d != 1 || withdrawn[id] != 1 {
			t.Errorf("%s: transfer %s has %d MoneyWithdrawn and %d MoneyDeposited", when, id, withdrawn[id], d)
		}
	}
	// Every acknowledged command's events, by event id, at the position its answer gave.
	check := func(res client.CommandResult, what string) {
		for _, ref := range res.Events {
			pos, ok := ids[ref.EventID]
			switch {
			case !ok:
				t.Errorf("%s: %s: event %s (%s on %s, position %d) is not in the log", when, what, ref.EventID, ref.Type, ref.AggregateID, ref.Position)
			case pos != ref.Position:
				t.Errorf("%s: %s: event %s is at position %d, the answer said %d", when, what, ref.EventID, pos, ref.Position)
			case events[pos-1].EventType != ref.Type || events[pos-1].AggregateID != ref.AggregateID:
				t.Errorf("%s: %s: position %d holds %s on %s, the answer said %s on %s", when, what, pos,
					events[pos-1].EventType, events[pos-1].AggregateID, ref.Type, ref.AggregateID)
			}
		}
	}
	for _, res := range acked {
		check(res, "acknowledged command")
	}
	for key, k := range l.byKey {
		n := v.keyEvents[key]
		switch {
		case k.acked != nil:
			check(*k.acked, "acknowledged transfer "+key)
			if n != 2 || v.keyTransfer[key] != k.acked.TransferID {
				t.Errorf("%s: acknowledged key %s: on %d events of transfer %q; want 2 of %s", when, key, n, v.keyTransfer[key], k.acked.TransferID)
			}
		case k.refused != "":
			if n != 0 {
				t.Errorf("%s: key %s was refused (%s) but is on %d events", when, key, k.refused, n)
			}
		default:
			if n != 0 && n != 2 {
				t.Errorf("%s: in-doubt key %s is on %d events; want 0 or 2", when, key, n)
			}
		}
	}
	for key := range v.keyEvents {
		if _, ok := l.byKey[key]; !ok {
			t.Errorf("%s: the log holds key %s, which no client sent", when, key)
		}
	}
	for cur, total := range r.State.Totals() {
		if total != 0 {
			t.Errorf("%s: %s sums to %d, want 0", when, cur, total)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%s: %d events, positions 1..%d, chain intact, %d transfers each whole and once, %d keys in the log",
		when, len(events), len(events), len(withdrawn), len(v.keyEvents))
	return v
}
