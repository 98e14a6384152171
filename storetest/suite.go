package storetest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// testSeedFlow: the seed's walk-through, with balances in time.
func testSeedFlow(t *testing.T, h Harness) {
	s := h.Open(t)
	created := execOK(t, s, create("A", "USD", "", ""), create("B", "USD", "", ""))
	dep := execOK(t, s, deposit("A", "1000.00"))[0]
	T := dep.CommitTime // the store's clock, not ours: a database may keep its own
	tr := execOK(t, s, transfer("A", "B", "300.00"))[0]
	wd := execOK(t, s, withdraw("B", "50.00"))[0]

	a, b := mustAccount(t, s, "A"), mustAccount(t, s, "B")
	if a.Balance != 70000 || b.Balance != 25000 {
		t.Fatalf("balances A %d, B %d; want 70000 and 25000", a.Balance, b.Balance)
	}
	if a.Version != 3 || b.Version != 3 || a.Currency != "USD" || a.Status != chronicle.StatusActive || a.OwnerName != "Owner of A" {
		t.Fatalf("accounts A %+v, B %+v", a, b)
	}
	if !a.CreatedAt.Equal(created[0].CommitTime) || !a.LastUpdated.Equal(tr.CommitTime) || !b.LastUpdated.Equal(wd.CommitTime) {
		t.Fatalf("A created %s updated %s, B updated %s; want %s, %s, %s", a.CreatedAt, a.LastUpdated, b.LastUpdated,
			created[0].CommitTime, tr.CommitTime, wd.CommitTime)
	}
	if len(tr.Events) != 2 || tr.Events[0].AggregateID != "A" || tr.Events[0].EventType != chronicle.EventMoneyWithdrawn ||
		tr.Events[1].AggregateID != "B" || tr.Events[1].EventType != chronicle.EventMoneyDeposited {
		t.Fatalf("transfer events %+v: want A's withdrawal then B's deposit", tr.Events)
	}

	ctx, cancel := callCtx(t)
	defer cancel()
	for _, c := range []struct {
		id   string
		at   time.Time
		want int64
		pos  uint64
	}{
		{"A", T, 100000, dep.Position},
		{"A", tr.CommitTime.Add(-time.Nanosecond), 100000, dep.Position},
		{"A", tr.CommitTime, 70000, tr.Position - 1},
		{"A", T.Add(24 * time.Hour), 70000, tr.Position - 1},
		{"A", created[0].CommitTime, 0, created[0].Position},
		{"B", T, 0, created[1].Position},
		{"B", wd.CommitTime.Add(-time.Nanosecond), 30000, tr.Position},
		{"B", wd.CommitTime, 25000, wd.Position},
	} {
		p, err := s.BalanceAt(ctx, c.id, c.at)
		if err != nil {
			t.Fatalf("BalanceAt(%s, %s): %v", c.id, c.at.Format(time.RFC3339Nano), err)
		}
		if p.Balance != c.want || p.Position != c.pos || p.AccountID != c.id {
			t.Fatalf("BalanceAt(%s, %s) = %+v, want balance %d at position %d", c.id, c.at.Format(time.RFC3339Nano), p, c.want, c.pos)
		}
	}
	_, err := s.BalanceAt(ctx, "A", a.CreatedAt.Add(-time.Nanosecond))
	wantNotFound(t, "BalanceAt of A before it existed", err)
	_, err = s.BalanceAt(ctx, "nobody", T)
	wantNotFound(t, "BalanceAt of an unknown account", err)
	_, err = s.BalanceAt(ctx, chronicle.ExternalAccountID("USD"), T)
	wantNotFound(t, "BalanceAt of the external account", err)
	_, err = s.Account(ctx, "nobody")
	wantNotFound(t, "Account of an unknown account", err)

	_, events := verify(t, s)
	if len(events) != 6 || mustHead(t, s).Position != wd.Position {
		t.Fatalf("%d events, head %d; want 6 ending at %d", len(events), mustHead(t, s).Position, wd.Position)
	}
}

// testRefusals: every refusal has the domain's code and writes nothing, alone or in a
// batch beside commands that succeed.
func testRefusals(t *testing.T, h Harness) {
	s := h.Open(t)
	execOK(t, s, create("A", "USD", "100.00", ""), create("B", "USD", "", ""), create("E", "EUR", "10.00", ""), create("J", "JPY", "500", ""))
	world := chronicle.ExternalAccountID("USD")
	cases := []struct {
		name        string
		cmd         chronicle.Command
		kind        chronicle.Kind
		code, field string
	}{
		{"withdraw beyond balance", withdraw("A", "100.01"), chronicle.KindRejected, chronicle.CodeInsufficientFunds, "amount"},
		{"transfer beyond balance", transfer("A", "B", "500.00"), chronicle.KindRejected, chronicle.CodeInsufficientFunds, "from_account_id"},
		{"transfer USD to EUR", transfer("A", "E", "1.00"), chronicle.KindRejected, chronicle.CodeCurrencyMismatch, "to_account_id"},
		{"deposit naming another currency", func() chronicle.Command { c := deposit("A", "1.00"); c.Currency = "EUR"; return c }(),
			chronicle.KindRejected, chronicle.CodeCurrencyMismatch, "currency"},
		{"deposit to unknown account", deposit("ghost", "1.00"), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "account_id"},
		{"transfer to unknown account", transfer("A", "ghost", "1.00"), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "to_account_id"},
		{"transfer from unknown account", transfer("ghost", "A", "1.00"), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "from_account_id"},
		{"withdraw from the external account", withdraw(world, "1.00"), chronicle.KindMalformed, chronicle.CodeInvalidAccountID, "account_id"},
		{"transfer to the external account", transfer("A", world, "1.00"), chronicle.KindMalformed, chronicle.CodeInvalidAccountID, "to_account_id"},
		{"zero amount", deposit("A", "0"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"negative amount", withdraw("A", "-1.00"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"too many decimals for USD", deposit("A", "1.001"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"decimals for JPY", deposit("J", "0.5"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"not a number", transfer("A", "B", "abc"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"amount out of range", deposit("A", "99999999999999999999"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"missing amount", deposit("A", ""), chronicle.KindMalformed, chronicle.CodeMissingField, "amount"},
		{"transfer to itself", transfer("A", "A", "1.00"), chronicle.KindRejected, chronicle.CodeSameAccount, "to_account_id"},
		{"account id taken", create("A", "USD", "", ""), chronicle.KindConflict, chronicle.CodeAccountExists, "account_id"},
		{"unknown currency", create("Z", "ZZZ", "", ""), chronicle.KindRejected, chronicle.CodeUnknownCurrency, "currency"},
		{"negative opening balance", create("N", "USD", "-1.00", ""), chronicle.KindRejected, chronicle.CodeInvalidAmount, "initial_balance"},
	}
	accounts := map[string]chronicle.Account{}
	for _, id := range []string{"A", "B", "E", "J"} {
		accounts[id] = mustAccount(t, s, id)
	}
	head := mustHead(t, s)
	unchanged := func(what string) {
		t.Helper()
		if got := mustHead(t, s); !sameHead(got, head) {
			t.Fatalf("%s: head moved from %+v to %+v", what, head, got)
		}
		if evs := mustEvents(t, s, chronicle.EventQuery{After: head.Position}); len(evs) != 0 {
			t.Fatalf("%s: %d events after the head", what, len(evs))
		}
		for id, want := range accounts {
			if d := accountDiff(want, mustAccount(t, s, id)); d != "" {
				t.Fatalf("%s: account %s changed: %s", what, id, d)
			}
		}
		ctx, cancel := callCtx(t)
		defer cancel()
		for _, id := range []string{"ghost", "Z", "N"} {
			_, err := s.Account(ctx, id)
			wantNotFound(t, what+": Account("+id+")", err)
		}
	}
	var all []chronicle.Command
	for _, c := range cases {
		wantRefused(t, c.name, exec(t, s, c.cmd)[0], c.kind, c.code, c.field)
		unchanged(c.name)
		all = append(all, c.cmd)
	}
	// All of them in one call, then interleaved with commands that succeed: each command
	// stands on its own.
	for i, r := range exec(t, s, all...) {
		wantRefused(t, "in one batch: "+cases[i].name, r, cases[i].kind, cases[i].code, cases[i].field)
	}
	unchanged("all refusals in one batch")
	res := exec(t, s, cases[0].cmd, deposit("B", "1.00"), cases[2].cmd, transfer("A", "B", "2.00"), cases[4].cmd)
	for _, i := range []int{0, 2, 4} {
		wantRefused(t, fmt.Sprintf("mixed batch, command %d", i), res[i], cases[i].kind, cases[i].code, cases[i].field)
	}
	if res[1].Err != nil || res[3].Err != nil || res[1].Position != head.Position+1 || res[3].Position != head.Position+3 {
		t.Fatalf("mixed batch: deposit %+v, transfer %+v; want positions %d and %d", res[1], res[3], head.Position+1, head.Position+3)
	}
	if a, b := mustAccount(t, s, "A"), mustAccount(t, s, "B"); a.Balance != 9800 || b.Balance != 300 {
		t.Fatalf("after the mixed batch A has %d, B %d; want 9800 and 300", a.Balance, b.Balance)
	}
	verify(t, s)
}

// testConservation: many goroutines (and processes, when the harness has them) over
// four currencies; every account ends where the acknowledged commands put it, and each
// currency still sums to zero.
func testConservation(t *testing.T, h Harness) {
	s := h.Open(t)
	stores := h.stores(t, s, 2)
	tl := runLoad(t, stores, 4, 16, 30, 1)
	waitHead(t, s, tl.maxPos)
	rep, _ := verify(t, s)
	if tl.accepted < 100 || tl.refused[chronicle.CodeInsufficientFunds] == 0 || tl.refused[chronicle.CodeCurrencyMismatch] == 0 {
		t.Fatalf("load too tame to prove anything: %d accepted, refused %v", tl.accepted, tl.refused)
	}
	sums := map[string]int64{}
	for id, want := range tl.balance {
		a := mustAccount(t, s, id)
		if a.Balance != want || a.Version != tl.version[id] {
			t.Fatalf("account %s: balance %d version %d; the acknowledged commands give %d and %d", id, a.Balance, a.Version, want, tl.version[id])
		}
		sums[a.Currency] += a.Balance
	}
	for _, cur := range loadCurrencies() {
		world := rep.State.Accounts[chronicle.ExternalAccountID(cur)]
		if sums[cur] != tl.inflow[cur] || world.Balance != -tl.inflow[cur] {
			t.Fatalf("%s: customers hold %s and %s is at %s; deposits less withdrawals were %s", cur,
				money(sums[cur], cur), world.ID, money(world.Balance, cur), money(tl.inflow[cur], cur))
		}
	}
	t.Logf("%d commands accepted, refused %v, over %d store(s)", tl.accepted, tl.refused, len(stores))
}

// testOverdraftRace: concurrent withdrawals and transfers out of one account, with and
// without an overdraft limit, never take it past its limit, and every success is paid
// for exactly once.
func testOverdraftRace(t *testing.T, h Harness) {
	s := h.Open(t)
	stores := h.stores(t, s, 3)
	execOK(t, s, create("hot", "USD", "100.00", ""), create("od", "USD", "100.00", "25.00"), create("sink", "USD", "", ""))
	const attempts, amount = 60, 1000 // per account: 60 × 10.00
	wantOK := map[string]int{"hot": 10, "od": 12}
	var mu sync.Mutex
	ok := map[string]int{}
	transfers, maxPos := 0, uint64(0)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 2 * attempts {
		id := []string{"hot", "od"}[i%2]
		cmd := withdraw(id, money(amount, "USD"))
		if i%4 >= 2 {
			cmd = transfer(id, "sink", money(amount, "USD"))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := callCtx(t)
			defer cancel()
			res, err := tryExec(ctx, stores[i%len(stores)], cmd)
			if err != nil {
				t.Errorf("%s from %s: %v", cmd.Type, id, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch r := res[0]; {
			case r.Err == nil:
				ok[id]++
				maxPos = max(maxPos, r.Position)
				if cmd.Type == chronicle.CmdTransfer {
					transfers++
				}
			case r.Err.Code != chronicle.CodeInsufficientFunds:
				t.Errorf("%s from %s refused with %v", cmd.Type, id, r.Err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	waitHead(t, s, maxPos)
	for id, want := range wantOK {
		a := mustAccount(t, s, id)
		if a.Balance < -a.OverdraftLimit {
			t.Fatalf("%s at %d, below its overdraft limit %d", id, a.Balance, a.OverdraftLimit)
		}
		if left := 10000 - a.Balance; int64(ok[id])*amount != left || a.Version != uint64(1+ok[id]) {
			t.Fatalf("%s: %d of %d debits succeeded (%d paid) but %d left the account, version %d", id, ok[id], attempts, int64(ok[id])*amount, left, a.Version)
		}
		if ok[id] != want {
			t.Fatalf("%s: %d debits of 10.00 succeeded; its funds allow exactly %d", id, ok[id], want)
		}
	}
	if sink := mustAccount(t, s, "sink"); sink.Balance != int64(transfers)*amount {
		t.Fatalf("sink received %d, want %d from %d transfers", sink.Balance, int64(transfers)*amount, transfers)
	}
	verify(t, s)
}

// testIdempotency: a retried key answers with the original result; a reused key is
// refused; a refused keyed command can be retried; concurrent retries commit once.
func testIdempotency(t *testing.T, h Harness) {
	s := h.Open(t)
	execOK(t, s, create("A", "USD", "100.00", ""), create("B", "USD", "", ""))
	cmd := keyed(transfer("A", "B", "2.50"), "key-transfer")
	first := execOK(t, s, cmd)[0]
	if first.Replayed {
		t.Fatalf("first execution reported as replayed")
	}
	sameResult := func(what string, r chronicle.Result, want chronicle.Result) {
		t.Helper()
		if r.Err != nil || !r.Replayed || r.Position != want.Position || r.TransferID != want.TransferID ||
			!r.CommitTime.Equal(want.CommitTime) || r.FirstPosition() != want.FirstPosition() {
			t.Fatalf("%s: %+v, want a replay of %+v", what, r, want)
		}
		if err := sameEvents(want.Events, r.Events); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	head := mustHead(t, s)
	// A retry is a new request (new command id) with the same body.
	sameResult("retry", execOK(t, s, cmd)[0], first)
	res := exec(t, s, cmd, deposit("B", "1.00"), cmd)
	sameResult("retry in a batch", res[0], first)
	sameResult("second retry in the same batch", res[2], first)
	if res[1].Err != nil || res[1].Position != head.Position+1 {
		t.Fatalf("new command beside retries: %+v, want position %d", res[1], head.Position+1)
	}
	head = mustHead(t, s)
	for _, other := range []chronicle.Command{
		keyed(transfer("A", "B", "3.00"), cmd.IdempotencyKey),
		keyed(deposit("A", "2.50"), cmd.IdempotencyKey),
	} {
		wantRefused(t, "key reused for another "+string(other.Type), exec(t, s, other)[0],
			chronicle.KindRejected, chronicle.CodeIdempotencyMismatch, "Idempotency-Key")
	}
	if got := mustHead(t, s); !sameHead(got, head) {
		t.Fatalf("retries and reused keys moved the head from %+v to %+v", head, got)
	}
	if a := mustAccount(t, s, "A"); a.Balance != 9750 || a.Version != 2 {
		t.Fatalf("A balance %d version %d, want 9750 and 2: a retry wrote again", a.Balance, a.Version)
	}

	// A refusal records nothing: the same key and body may succeed later, once.
	wd := keyed(withdraw("B", "10.00"), "key-withdraw")
	wantRefused(t, "keyed withdrawal without funds", exec(t, s, wd)[0], chronicle.KindRejected, chronicle.CodeInsufficientFunds, "amount")
	execOK(t, s, deposit("B", "20.00"))
	later := execOK(t, s, wd)[0]
	if later.Replayed {
		t.Fatalf("retry of a refused keyed command was answered as a replay: %+v", later)
	}
	sameResult("retry of the retried withdrawal", execOK(t, s, wd)[0], later)

	// Many callers at once, over every store the harness can open: one commits.
	stores := h.stores(t, s, 3)
	race := keyed(deposit("A", "1.00"), "key-race")
	before := mustAccount(t, s, "A")
	results := make([]chronicle.Result, 24)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := callCtx(t)
			defer cancel()
			res, err := tryExec(ctx, stores[i%len(stores)], race)
			if err != nil {
				t.Errorf("racing retry %d: %v", i, err)
				return
			}
			results[i] = res[0]
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var original *chronicle.Result
	for i := range results {
		if r := &results[i]; r.Err == nil && !r.Replayed {
			if original != nil {
				t.Fatalf("racing retries committed twice: positions %d and %d", original.Position, r.Position)
			}
			original = r
		}
	}
	if original == nil {
		t.Fatalf("no racing retry committed: %+v", results[0])
	}
	for i, r := range results {
		if &results[i] != original {
			sameResult(fmt.Sprintf("racing retry %d", i), r, *original)
		}
	}
	waitHead(t, s, original.Position)
	if a := mustAccount(t, s, "A"); a.Balance != before.Balance+100 || a.Version != before.Version+1 {
		t.Fatalf("A went from %d to %d (version %d to %d) after %d racing retries of one deposit of 1.00",
			before.Balance, a.Balance, before.Version, a.Version, len(results))
	}
	verify(t, s)
}

// testHashChain: the log read in small pages verifies as one chain, ends at the head,
// and every filter of Events agrees with filtering the whole log.
func testHashChain(t *testing.T, h Harness) {
	s := h.Open(t)
	runLoad(t, []chronicle.EventStore{s}, 3, 4, 25, 2)
	// So that the filters below surely have something to find.
	last := execOK(t, s, deposit("usd-0", "1.00"), withdraw("usd-0", "0.01"))[1]
	all := allEvents(t, s, 7)
	if uint64(len(all)) != last.Position {
		t.Fatalf("log has %d events, the last result was at position %d", len(all), last.Position)
	}
	v := chronicle.NewChainVerifier()
	for _, e := range all {
		if err := v.Check(e); err != nil {
			t.Fatalf("chain: %v", err)
		}
	}
	end := all[len(all)-1]
	if head := mustHead(t, s); head.Position != end.Position || head.Hash != end.Hash || !head.CommitTime.Equal(end.CreatedAt) {
		t.Fatalf("head %+v, last event at %d hash %s committed %s", head, end.Position, end.Hash, end.CreatedAt)
	}
	if err := sameEvents(all, allEvents(t, s, chronicle.MaxEventsPage)); err != nil {
		t.Fatalf("the log read in pages of 7 and of %d differs: %v", chronicle.MaxEventsPage, err)
	}

	n := uint64(len(all))
	types := []string{"", chronicle.EventAccountCreated, chronicle.EventMoneyDeposited, chronicle.EventMoneyWithdrawn, "NoSuchEvent"}
	aggs := []string{"", "usd-0", "jpy-2", "bhd-1", chronicle.ExternalAccountID("USD"), "nobody"}
	afters := []uint64{0, 1, n / 2, n - 1, n, n + 10}
	limits := []int{0, 1, 5, chronicle.MaxEventsPage, chronicle.MaxEventsPage + 1}
	for _, typ := range types {
		for _, agg := range aggs {
			for _, after := range afters {
				for _, desc := range []bool{false, true} {
					for _, limit := range limits {
						q := chronicle.EventQuery{EventType: typ, AggregateID: agg, After: after, Descending: desc, Limit: limit}
						if err := sameEvents(refEvents(all, q), mustEvents(t, s, q)); err != nil {
							t.Fatalf("Events(%+v): %v", q, err)
						}
					}
				}
			}
		}
	}
	// Paging a filtered view, both ways, yields the whole filtered log.
	for _, q := range []chronicle.EventQuery{
		{EventType: chronicle.EventMoneyDeposited}, {AggregateID: "eur-1"}, {},
		{EventType: chronicle.EventMoneyWithdrawn, AggregateID: "jpy-0"},
	} {
		for _, desc := range []bool{false, true} {
			q.Descending, q.Limit, q.After = desc, 5, 0
			var paged []chronicle.Event
			for {
				page := mustEvents(t, s, q)
				if len(page) == 0 {
					break
				}
				paged = append(paged, page...)
				q.After = page[len(page)-1].Position
			}
			q.After, q.Limit = 0, chronicle.MaxEventsPage
			if err := sameEvents(refEvents(all, q), paged); err != nil {
				t.Fatalf("paging %+v: %v", q, err)
			}
		}
	}
}

// testBalanceAt: balances at random instants, at commit times and a nanosecond either
// side, are what replaying the log up to that instant gives.
func testBalanceAt(t *testing.T, h Harness) {
	s := h.Open(t)
	runLoad(t, []chronicle.EventStore{s}, 2, 3, 20, 3)
	// A few more one after another, so that instants fall between commits of one account.
	for range 5 {
		execOK(t, s, deposit("usd-0", "0.01"), deposit("jpy-1", "1"), transfer("jpy-1", "jpy-0", "1"))
	}
	rep, events := verify(t, s)
	var ids []string
	for _, a := range rep.State.SortedAccounts() {
		if !a.External() {
			ids = append(ids, a.ID)
		}
	}
	first, last := events[0].CreatedAt, events[len(events)-1].CreatedAt
	rng := rand.New(rand.NewPCG(4, 4))
	instants := []time.Time{{}, time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), first.Add(-time.Hour), first.Add(-time.Nanosecond),
		first, last, last.Add(time.Nanosecond), last.Add(24 * time.Hour), time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC)}
	for range 150 {
		instants = append(instants, first.Add(time.Duration(rng.Int64N(int64(last.Sub(first))+1))))
	}
	for range 40 {
		e := events[rng.IntN(len(events))]
		instants = append(instants, e.CreatedAt.Add(-time.Nanosecond), e.CreatedAt, e.CreatedAt.Add(time.Nanosecond))
	}
	ctx, cancel := callCtx(t)
	defer cancel()
	found, notFound := 0, 0
	for _, at := range instants {
		for _, id := range ids {
			want, ok, err := chronicle.BalanceAt(events, id, at)
			if err != nil {
				t.Fatalf("replay BalanceAt: %v", err)
			}
			got, err := s.BalanceAt(ctx, id, at)
			if !ok {
				wantNotFound(t, fmt.Sprintf("BalanceAt(%s, %s) before the account existed", id, at.Format(time.RFC3339Nano)), err)
				notFound++
				continue
			}
			if err != nil {
				t.Fatalf("BalanceAt(%s, %s): %v", id, at.Format(time.RFC3339Nano), err)
			}
			var lastEv chronicle.Event // the account's last event at or before the instant
			for _, e := range events {
				if e.AggregateID == id && !e.CreatedAt.After(at) {
					lastEv = e
				}
			}
			if got.Balance != want || got.Position != lastEv.Position || !got.Time.Equal(lastEv.CreatedAt) || got.AccountID != id {
				t.Fatalf("BalanceAt(%s, %s) = %+v; the replay gives %d after event %d at %s",
					id, at.Format(time.RFC3339Nano), got, want, lastEv.Position, lastEv.CreatedAt.Format(time.RFC3339Nano))
			}
			found++
		}
	}
	if found == 0 || notFound == 0 {
		t.Fatalf("instants cover too little: %d found, %d not found", found, notFound)
	}
	for _, id := range []string{"nobody", chronicle.ExternalAccountID("USD")} {
		_, err := s.BalanceAt(ctx, id, last)
		wantNotFound(t, "BalanceAt("+id+")", err)
	}
}

// testRestart: after a restart the log, head, accounts and idempotency keys are what
// they were, and new commands continue the chain; twice, so that what the first
// restart wrote survives the second.
func testRestart(t *testing.T, h Harness) {
	if h.Reopen == nil {
		t.Skip("the harness cannot restart its store")
	}
	s := h.Open(t)
	runLoad(t, []chronicle.EventStore{s}, 2, 3, 15, 5)
	key := keyed(transfer("usd-0", "usd-1", "0.01"), "key-restart")
	original := execOK(t, s, deposit("usd-0", "0.01"), key)[1]
	for round := range 2 {
		rep, events := verify(t, s)
		head := mustHead(t, s)
		s = h.Reopen(t, s)
		if got := mustHead(t, s); !sameHead(got, head) {
			t.Fatalf("restart %d: head %+v, was %+v", round, got, head)
		}
		if err := sameEvents(events, allEvents(t, s, 100)); err != nil {
			t.Fatalf("restart %d: log differs: %v", round, err)
		}
		for _, want := range rep.State.SortedAccounts() {
			if !want.External() {
				if d := accountDiff(want, mustAccount(t, s, want.ID)); d != "" {
					t.Fatalf("restart %d: account %s: %s", round, want.ID, d)
				}
			}
		}
		if r := execOK(t, s, key)[0]; !r.Replayed || r.Position != original.Position || sameEvents(original.Events, r.Events) != nil {
			t.Fatalf("restart %d: keyed retry %+v, want a replay of position %d", round, r, original.Position)
		}
		res := execOK(t, s, deposit("bhd-0", "0.001"), deposit("eur-1", "0.01"), transfer("eur-1", "eur-0", "0.01"))
		if e := res[0].Events[0]; e.Position != head.Position+1 || e.PrevHash != head.Hash || !res[0].CommitTime.After(head.CommitTime) {
			t.Fatalf("restart %d: first new event at %d prev %s committed %s; want %d prev %s after %s", round,
				e.Position, e.PrevHash, res[0].CommitTime, head.Position+1, head.Hash, head.CommitTime)
		}
		verify(t, s)
	}
}
