package sqlstore

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openStore(t testing.TB, url string, mod func(*Config)) *Store {
	t.Helper()
	cfg := Config{URL: url, IdempotencyWindow: time.Hour, Logger: testLogger(t), MaxAttempts: 50}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func create(id, cur, initial string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdCreateAccount, ID: chronicle.NewID(), AccountID: id,
		OwnerName: "Owner " + id, Currency: cur, InitialBalance: chronicle.Decimal(initial)}
}

func deposit(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdDeposit, ID: chronicle.NewID(), AccountID: id, Amount: chronicle.Decimal(amount)}
}

func withdraw(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdWithdraw, ID: chronicle.NewID(), AccountID: id, Amount: chronicle.Decimal(amount)}
}

func transfer(from, to, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdTransfer, ID: chronicle.NewID(), FromAccountID: from, ToAccountID: to, Amount: chronicle.Decimal(amount)}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run executes one command and fails the test on a batch error.
func run(t testing.TB, s *Store, c chronicle.Command) chronicle.Result {
	t.Helper()
	rs, err := s.Execute(ctxT(t), []chronicle.Command{c})
	if err != nil {
		t.Fatalf("execute %s: %v", c.Type, err)
	}
	return rs[0]
}

// ok executes one command that must succeed.
func ok(t testing.TB, s *Store, c chronicle.Command) chronicle.Result {
	t.Helper()
	r := run(t, s, c)
	if r.Err != nil {
		t.Fatalf("%s refused: %v", c.Type, r.Err)
	}
	return r
}

func balance(t testing.TB, s *Store, id string) string {
	t.Helper()
	a, err := s.Account(ctxT(t), id)
	if err != nil {
		t.Fatalf("account %s: %v", id, err)
	}
	cur, _ := chronicle.LookupCurrency(a.Currency)
	return chronicle.FormatMinor(a.Balance, cur)
}

// allEvents pages through the whole log.
func allEvents(t testing.TB, s *Store) []chronicle.Event {
	t.Helper()
	var out []chronicle.Event
	after := uint64(0)
	for {
		page, err := s.Events(ctxT(t), chronicle.EventQuery{After: after, Limit: 500})
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].Position
	}
}

// storedAccounts reads every account row, external ones included.
func storedAccounts(t testing.TB, s *Store) map[string]chronicle.Account {
	t.Helper()
	rows, err := s.pool.Query(ctxT(t), `SELECT `+accountColumns+` FROM chronicle_accounts`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chronicle.Account, error) { return scanAccount(row) })
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]chronicle.Account{}
	for _, a := range out {
		m[a.ID] = a
	}
	return m
}

func sameAccount(a, b chronicle.Account) bool {
	return a.ID == b.ID && a.OwnerName == b.OwnerName && a.Currency == b.Currency && a.Balance == b.Balance &&
		a.OverdraftLimit == b.OverdraftLimit && a.Status == b.Status && a.CreatedAt.Equal(b.CreatedAt) &&
		a.LastUpdated.Equal(b.LastUpdated) && a.Version == b.Version
}

// checkLedger checks everything that must hold of any history: the hash chain, replay
// equal to the stored accounts, every currency summing to zero, no account below its
// limit, one set of events per command id, and balance-at against replay.
func checkLedger(t *testing.T, s *Store, rng *rand.Rand) []chronicle.Event {
	t.Helper()
	events := allEvents(t, s)
	v := chronicle.NewChainVerifier()
	r := chronicle.NewReplayer()
	perCommand := map[string]map[uint64]bool{}
	for _, e := range events {
		if err := v.Check(e); err != nil {
			t.Fatalf("chain: %v", err)
		}
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
		id := e.Metadata["command_id"]
		if perCommand[id] == nil {
			perCommand[id] = map[uint64]bool{}
		}
		perCommand[id][e.Position] = true
	}
	head, err := s.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if pos, hash := v.Head(); head.Position != pos || head.Hash != hash {
		t.Fatalf("head %d %s, chain ends at %d %s", head.Position, head.Hash, pos, hash)
	}
	stored := storedAccounts(t, s)
	if len(stored) != len(r.State.Accounts) {
		t.Fatalf("%d stored accounts, replay has %d", len(stored), len(r.State.Accounts))
	}
	sums := map[string]int64{}
	for id, want := range r.State.Accounts {
		got := stored[id]
		if !sameAccount(got, want) {
			t.Fatalf("account %s: stored %+v, replay %+v", id, got, want)
		}
		sums[got.Currency] += got.Balance
		if !got.External() && got.Balance < -got.OverdraftLimit {
			t.Fatalf("account %s at %d, below its limit %d", id, got.Balance, got.OverdraftLimit)
		}
	}
	for cur, sum := range sums {
		if sum != 0 {
			t.Fatalf("%s sums to %d", cur, sum)
		}
	}
	// Each command's events are consecutive: a command applied twice would show a gap.
	for id, pos := range perCommand {
		lo, hi := uint64(1<<63), uint64(0)
		for p := range pos {
			lo, hi = min(lo, p), max(hi, p)
		}
		if hi-lo+1 != uint64(len(pos)) {
			t.Fatalf("command %s has events at %v: applied more than once", id, pos)
		}
	}
	if len(events) > 1 && rng != nil {
		first, last := events[0].CreatedAt, events[len(events)-1].CreatedAt
		var ids []string
		for id, a := range stored {
			if !a.External() {
				ids = append(ids, id)
			}
		}
		for range 50 {
			id := ids[rng.IntN(len(ids))]
			at := first.Add(time.Duration(rng.Int64N(int64(last.Sub(first)) + 2)))
			if rng.IntN(5) == 0 {
				at = events[rng.IntN(len(events))].CreatedAt // exactly at a commit
			}
			want, exists, _ := chronicle.BalanceAt(events, id, at)
			got, err := s.BalanceAt(ctxT(t), id, at)
			if !exists {
				if chronicle.AsError(err).Kind != chronicle.KindNotFound {
					t.Fatalf("balance of %s at %s: %v, want not found", id, at, err)
				}
				continue
			}
			if err != nil || got.Balance != want {
				t.Fatalf("balance of %s at %s: %+v %v, replay says %d", id, at, got, err, want)
			}
		}
	}
	return events
}

func TestSeedFlow(t *testing.T) {
	s := openStore(t, pgtest.Schema(t), nil)
	ok(t, s, create("A", "USD", ""))
	ok(t, s, create("B", "USD", ""))
	dep := ok(t, s, deposit("A", "1000"))
	tr := ok(t, s, transfer("A", "B", "300"))
	if tr.TransferID == "" || tr.EventCount != 2 || len(tr.Events) != 2 {
		t.Fatalf("transfer result %+v", tr)
	}
	ok(t, s, withdraw("B", "50"))
	if got := balance(t, s, "A"); got != "700.00" {
		t.Fatalf("A = %s, want 700.00", got)
	}
	if got := balance(t, s, "B"); got != "250.00" {
		t.Fatalf("B = %s, want 250.00", got)
	}
	// Between the deposit and the transfer, A held 1000.00 and B nothing yet moved.
	mid := dep.CommitTime.Add(tr.CommitTime.Sub(dep.CommitTime) / 2)
	if p, err := s.BalanceAt(ctxT(t), "A", mid); err != nil || p.Balance != 100000 || p.Position != dep.Position {
		t.Fatalf("A at %s: %+v %v", mid, p, err)
	}
	if p, err := s.BalanceAt(ctxT(t), "B", mid); err != nil || p.Balance != 0 {
		t.Fatalf("B at %s: %+v %v", mid, p, err)
	}
	if p, err := s.BalanceAt(ctxT(t), "A", tr.CommitTime); err != nil || p.Balance != 70000 || !p.Time.Equal(tr.CommitTime) {
		t.Fatalf("A at the transfer: %+v %v", p, err)
	}
	if _, err := s.BalanceAt(ctxT(t), "A", dep.CommitTime.Add(-time.Hour)); chronicle.AsError(err).Code != chronicle.CodeAccountNotFound {
		t.Fatalf("A before it existed: %v", err)
	}
	if _, err := s.Account(ctxT(t), "nobody"); chronicle.AsError(err).Code != chronicle.CodeAccountNotFound {
		t.Fatalf("unknown account: %v", err)
	}
	if _, err := s.Account(ctxT(t), "@world:USD"); chronicle.AsError(err).Code != chronicle.CodeAccountNotFound {
		t.Fatalf("external account: %v", err)
	}
	// Refusals write nothing.
	head, _ := s.Head(ctxT(t))
	if r := run(t, s, withdraw("B", "1000")); r.Err == nil || r.Err.Code != chronicle.CodeInsufficientFunds {
		t.Fatalf("overdraft: %+v", r)
	}
	if r := run(t, s, create("A", "USD", "")); r.Err == nil || r.Err.Code != chronicle.CodeAccountExists {
		t.Fatalf("duplicate account: %+v", r)
	}
	if h, _ := s.Head(ctxT(t)); h != head {
		t.Fatalf("refusals moved the head from %+v to %+v", head, h)
	}

	// Queries: filters, descending, limits.
	evs := checkLedger(t, s, rand.New(rand.NewPCG(1, 2)))
	if len(evs) != 6 {
		t.Fatalf("%d events, want 6", len(evs))
	}
	byAcc, err := s.Events(ctxT(t), chronicle.EventQuery{AggregateID: "A"})
	if err != nil || len(byAcc) != 3 || byAcc[2].EventType != chronicle.EventMoneyWithdrawn {
		t.Fatalf("A's stream: %v %v", byAcc, err)
	}
	desc, err := s.Events(ctxT(t), chronicle.EventQuery{Descending: true, Limit: 2})
	if err != nil || len(desc) != 2 || desc[0].Position != 6 || desc[1].Position != 5 {
		t.Fatalf("descending: %v %v", desc, err)
	}
	below, err := s.Events(ctxT(t), chronicle.EventQuery{Descending: true, After: 3})
	if err != nil || len(below) != 2 || below[0].Position != 2 {
		t.Fatalf("descending below 3: %v %v", below, err)
	}
	deps, err := s.Events(ctxT(t), chronicle.EventQuery{EventType: chronicle.EventMoneyDeposited, After: 3})
	if err != nil || len(deps) != 1 || deps[0].Position != 5 {
		t.Fatalf("deposits after 3: %v %v", deps, err)
	}
	// The seed's columns hold the JSON for people and SQL consumers.
	var amount, cmdID string
	if err := s.pool.QueryRow(ctxT(t), `SELECT event_data->>'amount', command_id FROM events WHERE position = 3`).Scan(&amount, &cmdID); err != nil || amount != "1000.00" || cmdID != dep.Events[0].Metadata["command_id"] {
		t.Fatalf("event_data amount %q, command_id %q: %v", amount, cmdID, err)
	}
}

func TestIdempotencyKeys(t *testing.T) {
	s := openStore(t, pgtest.Schema(t), nil)
	ok(t, s, create("A", "EUR", "100"))
	ok(t, s, create("B", "EUR", ""))
	c := transfer("A", "B", "10")
	c.IdempotencyKey = "key-1"
	first := ok(t, s, c)
	again := c
	again.ID = chronicle.NewID() // a client retry gets a new command id
	second := ok(t, s, again)
	if !second.Replayed || second.Position != first.Position || second.TransferID != first.TransferID ||
		len(second.Events) != 2 || second.Events[1].Hash != first.Events[1].Hash {
		t.Fatalf("replay %+v of %+v", second, first)
	}
	other := transfer("A", "B", "11")
	other.IdempotencyKey = "key-1"
	if r := run(t, s, other); r.Err == nil || r.Err.Code != chronicle.CodeIdempotencyMismatch {
		t.Fatalf("reused key: %+v", r)
	}
	// One key twice in one batch: the second is a replay of the first, in the same transaction.
	d1 := deposit("B", "5")
	d1.IdempotencyKey = "key-2"
	d2 := d1
	d2.ID = chronicle.NewID()
	rs, err := s.Execute(ctxT(t), []chronicle.Command{d1, d2})
	if err != nil || rs[0].Err != nil || !rs[1].Replayed || rs[1].Position != rs[0].Position || len(rs[1].Events) != 1 {
		t.Fatalf("key twice in a batch: %+v %v", rs, err)
	}
	if got := balance(t, s, "B"); got != "15.00" {
		t.Fatalf("B = %s, want 15.00", got)
	}
	checkLedger(t, s, nil)
}

func TestReopen(t *testing.T) {
	url := pgtest.Schema(t)
	s := openStore(t, url, nil)
	ok(t, s, create("A", "JPY", "500"))
	ok(t, s, create("B", "JPY", ""))
	ok(t, s, transfer("A", "B", "200"))
	head, _ := s.Head(ctxT(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Execute(ctxT(t), []chronicle.Command{deposit("A", "1")}); chronicle.AsError(err).Kind != chronicle.KindUnavailable {
		t.Fatalf("execute after close: %v", err)
	}
	s2 := openStore(t, url, nil)
	if h, err := s2.Head(ctxT(t)); err != nil || h.Position != head.Position || h.Hash != head.Hash || !h.CommitTime.Equal(head.CommitTime) {
		t.Fatalf("head after reopen %+v %v, before %+v", h, err, head)
	}
	if got := balance(t, s2, "B"); got != "200" {
		t.Fatalf("B = %s after reopen", got)
	}
	r := ok(t, s2, transfer("B", "A", "50"))
	if r.Position != head.Position+2 || !r.CommitTime.After(head.CommitTime) {
		t.Fatalf("first result after reopen %+v, head was %+v", r, head)
	}
	// Reopening applied nothing twice: one row per embedded migration.
	embedded, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var recorded int
	if err := s2.pool.QueryRow(ctxT(t), `SELECT count(*) FROM chronicle_migrations WHERE version > 0`).Scan(&recorded); err != nil || recorded != len(embedded) {
		t.Fatalf("%d migrations recorded, %d embedded: %v", recorded, len(embedded), err)
	}
	checkLedger(t, s2, rand.New(rand.NewPCG(3, 4)))
}

func TestBatchLimits(t *testing.T) {
	s := openStore(t, pgtest.Schema(t), nil)
	if _, err := s.Execute(ctxT(t), make([]chronicle.Command, chronicle.MaxBatchCommands+1)); chronicle.AsError(err).Kind != chronicle.KindTooLarge {
		t.Fatalf("oversize batch: %v", err)
	}
	// A full batch in one transaction: arrays keep the statements under the parameter limit.
	cmds := []chronicle.Command{create("A", "USD", "1000000")}
	for i := range 2000 {
		cmds = append(cmds, create(fmt.Sprintf("acc-%d", i), "USD", ""))
	}
	for i := range 2000 {
		cmds = append(cmds, transfer("A", fmt.Sprintf("acc-%d", i), "1"))
	}
	rs, err := s.Execute(ctxT(t), cmds)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Err != nil {
			t.Fatalf("command %d: %v", i, r.Err)
		}
	}
	if got := balance(t, s, "A"); got != "998000.00" {
		t.Fatalf("A = %s", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Execute(ctx, []chronicle.Command{deposit("A", "1")}); chronicle.AsError(err).Kind != chronicle.KindTimeout {
		t.Fatalf("canceled context: %v", err)
	}
	if _, err := s.Account(ctx, "A"); chronicle.AsError(err).Kind != chronicle.KindTimeout {
		t.Fatalf("read with canceled context: %v", err)
	}
	checkLedger(t, s, nil)
}
