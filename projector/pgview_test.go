package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
)

// ---- a realistic event log, made by the state machine itself ----

var genCurrencies = []string{"USD", "JPY", "BHD"}

// Ids mixing case and punctuation: byte order and a linguistic collation disagree on them.
var genIDPrefixes = []string{"acc-", "Acc-", "a.", "a_", "a-", "B:", "b", "Z", "z-", "0x"}

var genOwners = []string{"Ada Lovelace", "Émile Zola", "李小龍", "O'Brien & Sons", "Zoë 🦊", "bob"}

var genDescriptions = []string{"", "", "rent", "café ☕", "salary — march", "100% \"quoted\" 'text'", "back\\slash"}

// genLedger runs random commands in USD, JPY and BHD through a MemState until its log
// holds at least minEvents events. Refused commands (insufficient funds, currency
// mismatch) are part of a realistic mix; they write nothing.
func genLedger(t testing.TB, seed uint64, minEvents int) *chronicle.MemState {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	st := chronicle.NewMemState()
	var ids []string
	// A commit time with nanoseconds; some batches reuse it, so the state machine adds
	// single nanoseconds to keep commit times strictly increasing.
	now := time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)
	for len(st.Log) < minEvents {
		if rng.IntN(4) > 0 {
			now = now.Add(time.Duration(rng.Int64N(int64(3 * time.Millisecond))))
		}
		if rng.IntN(25) == 0 {
			now = now.Add(2 * time.Second) // pending transfers come due
		}
		cmds := make([]chronicle.Command, 1+rng.IntN(40))
		for i := range cmds {
			cmds[i] = genCommand(rng, st, &ids)
		}
		if _, err := st.Execute(chronicle.Batch{Time: now, Commands: cmds}); err != nil {
			t.Fatalf("execute: %v", err)
		}
	}
	return st
}

func genAmount(rng *rand.Rand, cur string, max int64) chronicle.Decimal {
	c, _ := chronicle.LookupCurrency(cur)
	return chronicle.Decimal(chronicle.FormatMinor(1+rng.Int64N(max), c))
}

func genCommand(rng *rand.Rand, st *chronicle.MemState, ids *[]string) chronicle.Command {
	c := chronicle.Command{ID: chronicle.NewID(), Description: genDescriptions[rng.IntN(len(genDescriptions))]}
	r := rng.IntN(100)
	if len(*ids) < 4 || r < 12 {
		id := genIDPrefixes[rng.IntN(len(genIDPrefixes))] + strconv.Itoa(len(*ids))
		*ids = append(*ids, id)
		cur := genCurrencies[rng.IntN(len(genCurrencies))]
		c.Type, c.AccountID, c.Currency = chronicle.CmdCreateAccount, id, cur
		c.OwnerName = genOwners[rng.IntN(len(genOwners))]
		switch rng.IntN(4) {
		case 0: // no initial balance
		case 1:
			c.InitialBalance = "0"
		default:
			c.InitialBalance = genAmount(rng, cur, 1_000_000)
		}
		if rng.IntN(5) == 0 {
			c.OverdraftLimit = genAmount(rng, cur, 50_000)
		}
		return c
	}
	acc := st.Accounts[(*ids)[rng.IntN(len(*ids))]]
	if acc.ID == "" { // created in this batch, or refused: a command that fails
		acc.ID, acc.Currency = (*ids)[0], "USD"
	}
	cur := acc.Currency
	avail := max(acc.Balance+acc.OverdraftLimit, 1)
	// Two-phase transfers: holds (short timeouts, so that later commands find some
	// due), captures, voids and the node's expire-transfers.
	if r >= 90 {
		var open []string
		for id, p := range st.Holds {
			if p.Open() {
				open = append(open, id)
			}
		}
		slices.Sort(open)
		switch {
		case len(open) > 0 && r < 94:
			c.Type, c.TransferID = chronicle.CmdCaptureTransfer, open[rng.IntN(len(open))]
			if rng.IntN(2) == 0 {
				c.Amount = genAmount(rng, st.Holds[c.TransferID].Currency, st.Holds[c.TransferID].Amount)
			}
			return c
		case len(open) > 0 && r < 97:
			c.Type, c.TransferID, c.Reason = chronicle.CmdVoidTransfer, open[rng.IntN(len(open))], "changed my mind"
			return c
		case r == 99:
			c.Type = chronicle.CmdExpireTransfers
			return c
		}
		c.Type, c.FromAccountID, c.Amount = chronicle.CmdTransfer, acc.ID, genAmount(rng, cur, avail)
		c.ToAccountID = (*ids)[rng.IntN(len(*ids))]
		c.Pending, c.TimeoutSeconds = true, 1+rng.Int64N(3)
		return c
	}
	switch {
	case r < 45:
		c.Type, c.AccountID, c.Amount = chronicle.CmdDeposit, acc.ID, genAmount(rng, cur, 500_000)
	case r < 65:
		c.Type, c.AccountID, c.Amount = chronicle.CmdWithdraw, acc.ID, genAmount(rng, cur, avail)
	default:
		c.Type, c.FromAccountID, c.Amount = chronicle.CmdTransfer, acc.ID, genAmount(rng, cur, avail)
		c.ToAccountID = (*ids)[rng.IntN(len(*ids))]
		for try := 0; try < 8 && (c.ToAccountID == acc.ID || st.Accounts[c.ToAccountID].Currency != cur); try++ {
			c.ToAccountID = (*ids)[rng.IntN(len(*ids))]
		}
	}
	if rng.IntN(3) == 0 {
		c.Currency = cur
	}
	return c
}

// expected is what every view must hold after the whole log: the customer accounts of
// the state machine, and the statement lines of each, newest first.
type expected struct {
	head     uint64
	accounts []chronicle.Account
	lines    map[string][]chronicle.StatementLine
}

func expect(t testing.TB, st *chronicle.MemState) expected {
	t.Helper()
	x := expected{head: st.Head.Position, lines: map[string][]chronicle.StatementLine{}}
	for _, a := range st.SortedAccounts() {
		if !a.External() {
			x.accounts = append(x.accounts, a)
		}
	}
	for _, e := range st.Log {
		// A line depends on its event alone.
		_, l, err := chronicle.Project(chronicle.Account{ID: e.AggregateID}, e)
		if err != nil {
			t.Fatal(err)
		}
		x.lines[e.AggregateID] = append([]chronicle.StatementLine{l}, x.lines[e.AggregateID]...)
	}
	return x
}

// ---- reading a whole view through the ReadModel interface ----

type viewDump struct {
	position uint64
	accounts []chronicle.Account
	lines    map[string][]chronicle.StatementLine
	counts   map[string]int
}

func normAccount(a chronicle.Account) chronicle.Account {
	a.CreatedAt, a.LastUpdated = a.CreatedAt.UTC(), a.LastUpdated.UTC()
	return a
}

func normLine(l chronicle.StatementLine) chronicle.StatementLine {
	l.Timestamp = l.Timestamp.UTC()
	return l
}

// dumpView reads everything, following the pagination with the page sizes rng picks
// (nil: fixed sizes).
func dumpView(t testing.TB, v View, rng *rand.Rand) viewDump {
	t.Helper()
	ctx := context.Background()
	size := func(n int) int {
		if rng == nil {
			return n
		}
		return 1 + rng.IntN(n)
	}
	d := viewDump{lines: map[string][]chronicle.StatementLine{}, counts: map[string]int{}}
	var err error
	if d.position, err = v.Position(ctx); err != nil {
		t.Fatalf("%s: position: %v", v.Name(), err)
	}
	after := ""
	for {
		page, err := v.Accounts(ctx, after, size(37))
		if err != nil {
			t.Fatalf("%s: accounts after %q: %v", v.Name(), after, err)
		}
		if len(page) == 0 {
			break
		}
		for _, a := range page {
			d.accounts = append(d.accounts, normAccount(a))
		}
		after = page[len(page)-1].ID
	}
	for _, a := range d.accounts {
		before := uint64(0)
		for {
			page, err := v.Transactions(ctx, a.ID, before, size(11))
			if err != nil {
				t.Fatalf("%s: transactions of %s before %d: %v", v.Name(), a.ID, before, err)
			}
			if len(page) == 0 {
				break
			}
			for _, l := range page {
				d.lines[a.ID] = append(d.lines[a.ID], normLine(l))
			}
			before = page[len(page)-1].Version
		}
		if d.counts[a.ID], err = v.LineCount(ctx, a.ID); err != nil {
			t.Fatalf("%s: line count of %s: %v", v.Name(), a.ID, err)
		}
	}
	return d
}

// checkView compares a view with what the state machine says, line by line.
func checkView(t testing.TB, v View, x expected, rng *rand.Rand) viewDump {
	t.Helper()
	d := dumpView(t, v, rng)
	if d.position != x.head {
		t.Fatalf("%s: position %d, want %d", v.Name(), d.position, x.head)
	}
	if len(d.accounts) != len(x.accounts) {
		t.Fatalf("%s: %d accounts, want %d", v.Name(), len(d.accounts), len(x.accounts))
	}
	for i, want := range x.accounts {
		if got := d.accounts[i]; got != normAccount(want) {
			t.Fatalf("%s: account %d:\n got %+v\nwant %+v", v.Name(), i, got, want)
		}
		if d.counts[want.ID] != int(want.Version) {
			t.Fatalf("%s: account %s has %d lines, version %d", v.Name(), want.ID, d.counts[want.ID], want.Version)
		}
		got, wantLines := d.lines[want.ID], x.lines[want.ID]
		if len(got) != len(wantLines) {
			t.Fatalf("%s: account %s: %d lines, want %d", v.Name(), want.ID, len(got), len(wantLines))
		}
		for j := range wantLines {
			if got[j] != normLine(wantLines[j]) {
				t.Fatalf("%s: account %s line %d:\n got %+v\nwant %+v", v.Name(), want.ID, j, got[j], wantLines[j])
			}
		}
	}
	return d
}

func sameDump(t testing.TB, what string, a, b viewDump) {
	t.Helper()
	if a.position != b.position || !slices.Equal(a.accounts, b.accounts) || len(a.lines) != len(b.lines) {
		t.Fatalf("%s: views differ (positions %d and %d, %d and %d accounts)", what, a.position, b.position, len(a.accounts), len(b.accounts))
	}
	for id, l := range a.lines {
		if !slices.Equal(l, b.lines[id]) || a.counts[id] != b.counts[id] {
			t.Fatalf("%s: statements of %s differ", what, id)
		}
	}
}

// applyPages applies log in pages of random size, each starting a few events before the
// checkpoint (a replayed overlap must be skipped).
func applyPages(t testing.TB, v View, log []chronicle.Event, rng *rand.Rand, maxPage int) {
	t.Helper()
	ctx := context.Background()
	done, err := v.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pos := int(done)
	for pos < len(log) {
		overlap := rng.IntN(min(pos, 5) + 1)
		end := min(len(log), pos+1+rng.IntN(maxPage))
		if err := v.Apply(ctx, log[pos-overlap:end]); err != nil {
			t.Fatalf("%s: apply %d..%d: %v", v.Name(), pos-overlap+1, end, err)
		}
		pos = end
	}
}

// ---- PostgreSQL helpers ----

var discard = slog.New(slog.DiscardHandler)

func openPG(t testing.TB, url string) *PostgresView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := OpenPostgresView(ctx, url, discard)
	if err != nil {
		t.Fatalf("open postgres view: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func openPebble(t testing.TB) *PebbleView {
	t.Helper()
	v, err := OpenPebbleView(t.TempDir(), discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// pgDigest summarises every row of the view's tables, the checkpoint row included (with
// its last_processed_at when withTime), so that "nothing changed" can be checked exactly.
func pgDigest(t testing.TB, pool *pgxpool.Pool, withTime bool) string {
	t.Helper()
	var parts [5]string
	err := pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*)::text FROM account_balance) || '/' || (SELECT count(*)::text FROM transactions) || '/' || (SELECT count(*)::text FROM transfers),
		(SELECT coalesce(md5(string_agg(a::text, E'\n' ORDER BY a.account_id)), '') FROM account_balance a),
		(SELECT coalesce(md5(string_agg(x::text, E'\n' ORDER BY x.position)), '') FROM transactions x),
		(SELECT coalesce(md5(string_agg(x::text, E'\n' ORDER BY x.position)), '') FROM transfers x),
		(SELECT coalesce(string_agg(processor_name || '=' || last_event_id::text ||
			CASE WHEN $1 THEN '@' || coalesce(last_processed_at::text, '') ELSE '' END, ',' ORDER BY processor_name), '')
			FROM event_position)`, withTime).Scan(&parts[0], &parts[1], &parts[2], &parts[3], &parts[4])
	if err != nil {
		t.Fatalf("digest: %v", err)
	}
	return strings.Join(parts[:], " ")
}

func isNotFound(err error) bool {
	var e *chronicle.Error
	return errors.As(err, &e) && e.Code == chronicle.CodeAccountNotFound
}

// checkSemantics checks the answers for what is not there.
func checkSemantics(t testing.TB, v View) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []string{"no-such-account", "@world:USD", ""} {
		if _, err := v.Account(ctx, id); !isNotFound(err) {
			t.Fatalf("%s: Account(%q) = %v, want account_not_found", v.Name(), id, err)
		}
		if _, err := v.Transactions(ctx, id, 0, 10); !isNotFound(err) {
			t.Fatalf("%s: Transactions(%q) = %v, want account_not_found", v.Name(), id, err)
		}
		if n, err := v.LineCount(ctx, id); n != 0 || err != nil {
			t.Fatalf("%s: LineCount(%q) = %d, %v", v.Name(), id, n, err)
		}
	}
	if got, err := v.Accounts(ctx, "", 0); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("%s: Accounts(limit 0) = %#v, %v; want an empty list", v.Name(), got, err)
	}
	if got, err := v.Accounts(ctx, "\x7f", 10); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("%s: Accounts(after the last) = %#v, %v; want an empty list", v.Name(), got, err)
	}
}

// ---- tests ----

// TestPostgresViewMatchesPebble applies one log, split into random pages, to a
// PebbleView and a PostgresView and checks both against the state machine and each
// other; then replays, gaps, and a reset and rebuild.
func TestPostgresViewMatchesPebble(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	st := genLedger(t, seed, 4000)
	log := st.Log
	x := expect(t, st)
	t.Logf("%d events, %d accounts", len(log), len(x.accounts))

	pg, pb := openPG(t, url), openPebble(t)
	for _, v := range []View{pg, pb} {
		checkSemantics(t, v)
		if pos, err := v.Position(t.Context()); pos != 0 || err != nil {
			t.Fatalf("%s: new view at %d, %v", v.Name(), pos, err)
		}
	}

	// (a) the same log in different random pages into each view.
	applyPages(t, pg, log, rng, 1000)
	applyPages(t, pb, log, rng, 1000)
	dpg := checkView(t, pg, x, rng)
	dpb := checkView(t, pb, x, rng)
	sameDump(t, "postgres and pebble", dpg, dpb)
	checkSemantics(t, pg)
	full := pgDigest(t, pg.Pool(), false)
	withTime := pgDigest(t, pg.Pool(), true)

	// (b) re-applying any applied page changes nothing, not even last_processed_at.
	for i := 0; i < 25; i++ {
		a := rng.IntN(len(log))
		b := a + 1 + rng.IntN(min(1000, len(log)-a))
		for _, v := range []View{pg, pb} {
			if err := v.Apply(t.Context(), log[a:b]); err != nil {
				t.Fatalf("%s: replay of %d..%d: %v", v.Name(), a+1, b, err)
			}
		}
	}
	if err := pg.Apply(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if got := pgDigest(t, pg.Pool(), true); got != withTime {
		t.Fatalf("replays changed the postgres view:\n%s\n%s", got, withTime)
	}
	sameDump(t, "pebble after replays", dumpView(t, pb, nil), dpb)

	// (c) Reset empties the view; half the log again, then gaps.
	for _, v := range []View{pg, pb} {
		if err := v.Reset(t.Context()); err != nil {
			t.Fatalf("%s: reset: %v", v.Name(), err)
		}
		if d := dumpView(t, v, nil); d.position != 0 || len(d.accounts) != 0 {
			t.Fatalf("%s: after reset: position %d, %d accounts", v.Name(), d.position, len(d.accounts))
		}
		checkSemantics(t, v)
	}
	half := len(log) / 2
	applyPages(t, pg, log[:half], rng, 300)
	applyPages(t, pb, log[:half], rng, 300)
	before := pgDigest(t, pg.Pool(), true)
	pbBefore := dumpView(t, pb, nil)
	gaps := map[string][]chronicle.Event{
		"skips cp+1":             log[half+1 : half+10],
		"hole after cp+1":        append(slices.Clone(log[half-3:half+1]), log[half+2:half+5]...),
		"reordered":              {log[half+1], log[half]},
		"far ahead":              log[len(log)-3:],
		"replay then skip ahead": append(slices.Clone(log[half-2:half]), log[half+7]),
	}
	for name, page := range gaps {
		for _, v := range []View{pg, pb} {
			if err := v.Apply(t.Context(), page); !errors.Is(err, ErrGap) {
				t.Fatalf("%s: %s: Apply = %v, want ErrGap", v.Name(), name, err)
			}
		}
	}
	if got := pgDigest(t, pg.Pool(), true); got != before {
		t.Fatalf("a refused page changed the postgres view")
	}
	sameDump(t, "pebble after gaps", dumpView(t, pb, nil), pbBefore)

	// The rest, and the result is identical to the first build.
	applyPages(t, pg, log, rng, 1000)
	applyPages(t, pb, log, rng, 1000)
	if got := pgDigest(t, pg.Pool(), false); got != full {
		t.Fatalf("rebuild differs from the first build:\n%s\n%s", got, full)
	}
	sameDump(t, "postgres rebuilt", checkView(t, pg, x, rng), dpg)
	sameDump(t, "pebble rebuilt", checkView(t, pb, x, rng), dpb)
}

// memSource serves a MemState log as a projector Source; more can be appended.
type memSource struct {
	mu  sync.Mutex
	log []chronicle.Event
}

func (s *memSource) Events(ctx context.Context, q chronicle.EventQuery) ([]chronicle.Event, error) {
	if q.Descending || q.EventType != "" || q.AggregateID != "" {
		return nil, fmt.Errorf("memSource: only ascending unfiltered reads")
	}
	limit := q.Limit
	if limit <= 0 || limit > chronicle.MaxEventsPage {
		limit = chronicle.MaxEventsPage
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Positions are 1, 2, ...: the event at position p is log[p-1].
	from := min(int(q.After), len(s.log))
	return slices.Clone(s.log[from:min(from+limit, len(s.log))]), nil
}

func (s *memSource) Head(ctx context.Context) (chronicle.Head, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) == 0 {
		return chronicle.GenesisHead(), nil
	}
	e := s.log[len(s.log)-1]
	return chronicle.Head{Position: e.Position, Hash: e.Hash, CommitTime: e.CreatedAt}, nil
}

func (s *memSource) set(log []chronicle.Event) {
	s.mu.Lock()
	s.log = log
	s.mu.Unlock()
}

// TestPostgresViewProjector runs the projector over a PostgresView: it catches up with a
// log, then follows it as it grows, driven by wake-ups (the poll is an hour).
func TestPostgresViewProjector(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	st := genLedger(t, 7, 3500)
	x := expect(t, st)
	v := openPG(t, url)
	src := &memSource{}
	src.set(st.Log[:1700])
	p := New(src, v, discard)
	p.SetPoll(time.Hour)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	wake := make(chan struct{}, 1)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx, wake) }()

	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := p.WaitPosition(wctx, 1700); err != nil {
		t.Fatalf("catch up: %v", err)
	}
	for _, end := range []int{1701, 2222, 3000, len(st.Log)} {
		src.set(st.Log[:end])
		select {
		case wake <- struct{}{}:
		default:
		}
		if err := p.WaitPosition(wctx, uint64(end)); err != nil {
			t.Fatalf("follow to %d: %v (status %+v)", end, err, p.Status())
		}
	}
	if s := p.Status(); s.Position != x.head || s.Error != "" {
		t.Fatalf("status %+v", s)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkView(t, v, x, rand.New(rand.NewPCG(7, 7)))
}

// TestPostgresViewConcurrentApply applies every page from two views (two pools, two
// connections) at once: the checkpoint row lock makes each event land exactly once.
func TestPostgresViewConcurrentApply(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	st := genLedger(t, 11, 3000)
	x := expect(t, st)
	v1, v2 := openPG(t, url), openPG(t, url)
	rng := rand.New(rand.NewPCG(11, 11))
	log := st.Log
	for pos := 0; pos < len(log); {
		end := min(len(log), pos+1+rng.IntN(400))
		// The second page reaches back over applied events and further ahead.
		back := rng.IntN(min(pos, 10) + 1)
		end2 := min(len(log), end+rng.IntN(50))
		pages := [2][]chronicle.Event{log[pos:end], log[pos-back : end2]}
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, 2)
		for i, v := range []*PostgresView{v1, v2} {
			wg.Go(func() {
				<-start
				errs[i] = v.Apply(t.Context(), pages[i])
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("view %d: apply: %v", i+1, err)
			}
		}
		pos = end2
	}
	var lines, transfers int
	if err := v1.Pool().QueryRow(t.Context(), `SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM transfers)`).Scan(&lines, &transfers); err != nil {
		t.Fatal(err)
	}
	wantTransfers := 0
	for _, e := range log {
		if e.EventType == chronicle.EventMoneyWithdrawn && e.Data.TransferID != "" {
			wantTransfers++
		}
		// A capture posts like a transfer: its debit leg writes the transfers row.
		if e.EventType == chronicle.EventTransferCaptured && e.AggregateID == e.Data.FromAccountID {
			wantTransfers++
		}
	}
	if lines != len(log) || transfers != wantTransfers {
		t.Fatalf("%d lines and %d transfers, want %d and %d", lines, transfers, len(log), wantTransfers)
	}
	// pending_transfers holds every hold with its final status.
	rows, err := v1.Pool().Query(t.Context(), `SELECT transfer_id::text, status, amount_minor, coalesce(captured_minor, 0) FROM pending_transfers`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]chronicle.PendingTransfer{}
	for rows.Next() {
		var p chronicle.PendingTransfer
		var status string
		if err := rows.Scan(&p.ID, &status, &p.Amount, &p.CapturedAmount); err != nil {
			t.Fatal(err)
		}
		p.State = chronicle.TransferState(status)
		got[p.ID] = p
	}
	rows.Close()
	states := map[chronicle.TransferState]int{}
	for id, want := range st.Holds {
		g := got[id]
		if g.State != want.State || g.Amount != want.Amount || g.CapturedAmount != want.CapturedAmount {
			t.Fatalf("pending transfer %s: view %+v, ledger %+v", id, g, want)
		}
		states[want.State]++
	}
	if len(got) != len(st.Holds) || len(states) != 4 {
		t.Fatalf("%d pending transfers in the view, %d in the ledger; states %v (want all four)", len(got), len(st.Holds), states)
	}
	checkView(t, v1, x, rng)
	checkView(t, v2, x, rng)
}

// TestPostgresViewMoneyExact reads the stored NUMERIC and BIGINT columns directly.
func TestPostgresViewMoneyExact(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	st := chronicle.NewMemState()
	at := time.Date(2025, 6, 1, 12, 0, 0, 123456789, time.UTC)
	cmd := func(c chronicle.Command) chronicle.Command { c.ID = chronicle.NewID(); return c }
	res, err := st.Execute(chronicle.Batch{Time: at, Commands: []chronicle.Command{
		cmd(chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: "bhd-1", OwnerName: "B", Currency: "BHD", InitialBalance: "1.234"}),
		cmd(chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: "bhd-2", OwnerName: "C", Currency: "BHD"}),
		cmd(chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: "bhd-1", ToAccountID: "bhd-2", Amount: "0.001"}),
		cmd(chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: "usd-1", OwnerName: "U", Currency: "USD", OverdraftLimit: "1.00"}),
		cmd(chronicle.Command{Type: chronicle.CmdWithdraw, AccountID: "usd-1", Amount: "0.05"}),
		cmd(chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: "usd-2", OwnerName: "V", Currency: "USD", InitialBalance: "700"}),
		// 2^53 + 1: a float64 cannot hold it.
		cmd(chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: "jpy-1", OwnerName: "J", Currency: "JPY", InitialBalance: "9007199254740993"}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("command %d: %v", i, r.Err)
		}
	}
	v := openPG(t, url)
	if err := v.Apply(t.Context(), st.Log); err != nil {
		t.Fatal(err)
	}
	checkView(t, v, expect(t, st), nil)

	for _, c := range []struct {
		id, balance string
		minor       int64
	}{
		{"bhd-1", "1.233", 1233}, {"bhd-2", "0.001", 1}, {"usd-1", "-0.05", -5},
		{"usd-2", "700.00", 70000}, {"jpy-1", "9007199254740993", 9007199254740993},
	} {
		var text string
		var minor int64
		if err := v.Pool().QueryRow(t.Context(), `SELECT balance::text, balance_minor FROM account_balance WHERE account_id = $1`, c.id).Scan(&text, &minor); err != nil {
			t.Fatal(err)
		}
		if text != c.balance || minor != c.minor {
			t.Errorf("%s: balance %s / %d, want %s / %d", c.id, text, minor, c.balance, c.minor)
		}
		if a, err := v.Account(t.Context(), c.id); err != nil || a.Balance != c.minor {
			t.Errorf("%s: Account = %d, %v", c.id, a.Balance, err)
		}
	}
	var amount, after, typ string
	var amountMinor, afterMinor int64
	if err := v.Pool().QueryRow(t.Context(), `SELECT amount::text, amount_minor, balance_after::text, balance_after_minor, type
		FROM transactions WHERE account_id = 'bhd-1' AND version = 1`).Scan(&amount, &amountMinor, &after, &afterMinor, &typ); err != nil {
		t.Fatal(err)
	}
	if amount != "1.234" || amountMinor != 1234 || after != "1.234" || afterMinor != 1234 || typ != chronicle.LineOpening {
		t.Errorf("opening line: %s/%d %s/%d %s", amount, amountMinor, after, afterMinor, typ)
	}
	var from, to, tamount string
	var tminor int64
	if err := v.Pool().QueryRow(t.Context(), `SELECT from_account_id, to_account_id, amount::text, amount_minor FROM transfers`).Scan(&from, &to, &tamount, &tminor); err != nil {
		t.Fatal(err)
	}
	if from != "bhd-1" || to != "bhd-2" || tamount != "0.001" || tminor != 1 {
		t.Errorf("transfer row: %s -> %s %s/%d", from, to, tamount, tminor)
	}
	// The first command's time: TIMESTAMPTZ holds its microsecond, timestamp_nanos the rest.
	var ts time.Time
	var nanos int32
	if err := v.Pool().QueryRow(t.Context(), `SELECT "timestamp", timestamp_nanos FROM transactions WHERE position = 1`).Scan(&ts, &nanos); err != nil {
		t.Fatal(err)
	}
	if !ts.Equal(at.Truncate(time.Microsecond)) || nanos != 789 {
		t.Errorf("timestamp %s + %dns, want %s", ts.UTC().Format(time.RFC3339Nano), nanos, at.Format(time.RFC3339Nano))
	}
	// The CHECK ties the NUMERIC to the BIGINT.
	if _, err := v.Pool().Exec(t.Context(), `UPDATE account_balance SET balance = '1.235' WHERE account_id = 'bhd-1'`); err == nil {
		t.Error("a balance disagreeing with balance_minor was accepted")
	}
	var floats int
	if err := v.Pool().QueryRow(t.Context(), `SELECT count(*) FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type IN ('real', 'double precision')`).Scan(&floats); err != nil || floats != 0 {
		t.Errorf("%d float columns (%v)", floats, err)
	}
}

// TestPostgresViewMigrations opens concurrently on a fresh schema, then again: every
// migration runs once, and the tables have the seed's columns.
func TestPostgresViewMigrations(t *testing.T) {
	t.Parallel()
	url := pgtest.Schema(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			v, err := OpenPostgresView(t.Context(), url, discard)
			if err == nil {
				v.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent open %d: %v", i, err)
		}
	}
	list, err := migrations()
	if err != nil || len(list) == 0 {
		t.Fatalf("migrations: %v (%d)", err, len(list))
	}
	read := func(v *PostgresView) string {
		var s string
		if err := v.Pool().QueryRow(t.Context(), `SELECT string_agg(version::text || '@' || applied_at::text, ',' ORDER BY version) FROM schema_migrations`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	v := openPG(t, url)
	first := read(v)
	if n := strings.Count(first, ",") + 1; n != len(list) {
		t.Fatalf("schema_migrations: %s; want %d rows", first, len(list))
	}
	if got := read(openPG(t, url)); got != first {
		t.Fatalf("second open changed schema_migrations: %s -> %s", first, got)
	}
	if pos, err := v.Position(t.Context()); pos != 0 || err != nil {
		t.Fatalf("position %d, %v", pos, err)
	}

	want := map[string]string{
		"account_balance": "account_id:character varying balance:numeric balance_minor:bigint created_at:timestamp with time zone " +
			"created_at_nanos:integer currency:character held_minor:bigint last_updated:timestamp with time zone last_updated_nanos:integer " +
			"overdraft_limit_minor:bigint owner_name:text status:character varying version:bigint",
		"transactions": "account_id:character varying amount:numeric amount_minor:bigint balance_after:numeric balance_after_minor:bigint " +
			"counterparty:character varying currency:character description:text event_type:character varying position:bigint " +
			"timestamp:timestamp with time zone timestamp_nanos:integer transaction_id:uuid transfer_id:uuid type:character varying version:bigint",
		"transfers": "amount:numeric amount_minor:bigint currency:character from_account_id:character varying position:bigint " +
			"status:character varying timestamp:timestamp with time zone timestamp_nanos:integer to_account_id:character varying transfer_id:uuid",
		"event_position": "last_event_id:bigint last_processed_at:timestamp with time zone processor_name:character varying",
		"pending_transfers": "amount_minor:bigint captured_minor:bigint currency:character expires_at:timestamp with time zone " +
			"expires_at_nanos:integer finished_position:bigint from_account_id:character varying position:bigint " +
			"status:character varying to_account_id:character varying transfer_id:uuid",
		"schema_migrations": "applied_at:timestamp with time zone version:integer",
	}
	for table, cols := range want {
		var got string
		if err := v.Pool().QueryRow(t.Context(), `SELECT coalesce(string_agg(column_name || ':' || data_type, ' ' ORDER BY column_name), '')
			FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1`, table).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != cols {
			t.Errorf("%s columns:\n got %s\nwant %s", table, got, cols)
		}
	}
	// Account ids sort byte by byte whatever the database's collation (this server's may
	// well be C already, so the ordering test alone would not notice).
	var collations string
	if err := v.Pool().QueryRow(t.Context(), `SELECT string_agg(table_name || '.' || column_name || ':' || coalesce(collation_name, '-'), ' ' ORDER BY table_name, column_name)
		FROM information_schema.columns WHERE table_schema = current_schema()
		AND column_name IN ('account_id', 'from_account_id', 'to_account_id', 'counterparty')`).Scan(&collations); err != nil {
		t.Fatal(err)
	}
	const wantColl = "account_balance.account_id:C pending_transfers.from_account_id:C pending_transfers.to_account_id:C " +
		"transactions.account_id:C transactions.counterparty:C transfers.from_account_id:C transfers.to_account_id:C"
	if collations != wantColl {
		t.Errorf("collations %s, want %s", collations, wantColl)
	}
	var indexes string
	if err := v.Pool().QueryRow(t.Context(), `SELECT string_agg(indexname, ' ' ORDER BY indexname) FROM pg_indexes
		WHERE schemaname = current_schema() AND indexname LIKE 'idx_%'`).Scan(&indexes); err != nil {
		t.Fatal(err)
	}
	const wantIdx = "idx_account_balance_owner_name idx_account_balance_status " +
		"idx_pending_transfers_from_account idx_pending_transfers_open idx_transactions_account_timestamp " +
		"idx_transactions_type idx_transfers_from_account idx_transfers_to_account"
	if indexes != wantIdx {
		t.Errorf("indexes %s, want %s", indexes, wantIdx)
	}
}

// TestPGTestSchema checks the helper every PostgreSQL test relies on: pgx (plain and
// pooled) honours the search_path of the URL, schemas are apart, and cleanup drops them.
func TestPGTestSchema(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("inner", func(t *testing.T) {
		url1, url2 := pgtest.Schema(t), pgtest.Schema(t)
		conn, err := pgx.Connect(t.Context(), url1)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(t.Context(), `SELECT current_schema()`).Scan(&name); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(name, "chronicle_test_") {
			t.Fatalf("current_schema() = %q", name)
		}
		if _, err := conn.Exec(t.Context(), `CREATE TABLE probe (x int)`); err != nil {
			t.Fatal(err)
		}
		pool, err := pgxpool.New(t.Context(), url1)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var where string
		if err := pool.QueryRow(t.Context(), `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE c.oid = 'probe'::regclass`).Scan(&where); err != nil || where != name {
			t.Fatalf("pool sees probe in %q (%v), want %q", where, err, name)
		}
		other, err := pgx.Connect(t.Context(), url2)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close(context.Background())
		var name2 string
		var visible bool
		if err := other.QueryRow(t.Context(), `SELECT current_schema(), to_regclass('probe') IS NOT NULL`).Scan(&name2, &visible); err != nil {
			t.Fatal(err)
		}
		if name2 == name || !strings.HasPrefix(name2, "chronicle_test_") || visible {
			t.Fatalf("second schema %q (first %q), sees probe: %v", name2, name, visible)
		}
	})
	conn, err := pgx.Connect(t.Context(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, name).Scan(&exists); err != nil || exists {
		t.Fatalf("schema %s still exists after its test (%v)", name, err)
	}
}

// ---- throughput ----

var (
	bench50kOnce  sync.Once
	bench50kState *chronicle.MemState
)

func bench50k(b *testing.B) *chronicle.MemState {
	bench50kOnce.Do(func() { bench50kState = genLedger(b, 50, 50_000) })
	return bench50kState
}

// BenchmarkViewApply measures events/s applied into each view from a 50k-event log in
// pages of pageSize events (what the projector does).
func BenchmarkViewApply(b *testing.B) {
	st := bench50k(b)
	log := st.Log[:50_000]
	open := map[string]func(b *testing.B) View{
		"pebble":   func(b *testing.B) View { return openPebble(b) },
		"postgres": func(b *testing.B) View { return openPG(b, pgtest.Schema(b)) },
	}
	for _, name := range []string{"pebble", "postgres"} {
		b.Run(name, func(b *testing.B) {
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				v := open[name](b)
				b.StartTimer()
				start := time.Now()
				for i := 0; i < len(log); i += pageSize {
					if err := v.Apply(context.Background(), log[i:min(i+pageSize, len(log))]); err != nil {
						b.Fatal(err)
					}
				}
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(len(log)*b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
