package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// These tests run the store on real Pebble and a real (one-node) Raft. Each Open waits for
// an election (one to two seconds with the store's timeouts), so the store tests run in
// parallel.

const ledgerTestTimeout = 30 * time.Second

// syncBuffer collects a store's log output, for assertions and for failure reports.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ledgerEnv is one data directory that a test opens, closes and reopens stores on.
type ledgerEnv struct {
	t    *testing.T
	cfg  Config
	logs *syncBuffer
}

func newLedgerEnv(t *testing.T, mod func(*Config)) *ledgerEnv {
	t.Helper()
	logs := &syncBuffer{}
	cfg := Config{DataDir: t.TempDir(), NodeID: "n1", RaftAddr: "127.0.0.1:0", Bootstrap: true,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	if mod != nil {
		mod(&cfg)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out := logs.String()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("store log:\n%s", out)
		}
	})
	return &ledgerEnv{t: t, cfg: cfg, logs: logs}
}

// open opens a store on the env's directory and waits until it leads.
func (e *ledgerEnv) open() *Store {
	t := e.t
	t.Helper()
	s, err := Open(e.cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTestTimeout)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	waitUntil(t, "this node to lead", func() bool { return s.raft.State() == raft.Leader })
	return s
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// waitUntil polls cond until it holds or the test timeout passes.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ledgerTestTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitAllApplied returns once every entry in this node's Raft log has been through the FSM.
func waitAllApplied(t testing.TB, s *Store) {
	t.Helper()
	if err := s.raft.Barrier(ledgerTestTimeout).Error(); err != nil {
		t.Fatalf("raft barrier: %v", err)
	}
}

// Command builders. IDs are given as the HTTP layer gives them.

func cmdCreate(id, cur, initial, overdraft string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: id, OwnerName: "Owner of " + id,
		Currency: cur, InitialBalance: chronicle.Decimal(initial), OverdraftLimit: chronicle.Decimal(overdraft)}
}

func cmdDeposit(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdDeposit, AccountID: id, Amount: chronicle.Decimal(amount)}
}

func cmdWithdraw(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdWithdraw, AccountID: id, Amount: chronicle.Decimal(amount)}
}

func cmdTransfer(from, to, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: from, ToAccountID: to, Amount: chronicle.Decimal(amount)}
}

// tryExec executes cmds (giving each an ID) and checks the shape of every result.
func tryExec(s *Store, cmds ...chronicle.Command) ([]chronicle.Result, error) {
	cmds = slices.Clone(cmds)
	for i := range cmds {
		if cmds[i].ID == "" {
			cmds[i].ID = chronicle.NewID()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTestTimeout)
	defer cancel()
	res, err := s.Execute(ctx, cmds)
	if err != nil {
		return nil, err
	}
	if len(res) != len(cmds) {
		return nil, fmt.Errorf("%d results for %d commands", len(res), len(cmds))
	}
	for i, r := range res {
		if err := checkResultShape(r); err != nil {
			return nil, fmt.Errorf("result %d (%s): %w", i, cmds[i].Type, err)
		}
	}
	return res, nil
}

func mustExec(t testing.TB, s *Store, cmds ...chronicle.Command) []chronicle.Result {
	t.Helper()
	res, err := tryExec(s, cmds...)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	return res
}

// mustOK executes commands that must all succeed.
func mustOK(t testing.TB, s *Store, cmds ...chronicle.Command) []chronicle.Result {
	t.Helper()
	res := mustExec(t, s, cmds...)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("command %d (%s %s%s) refused: %v", i, cmds[i].Type, cmds[i].AccountID, cmds[i].FromAccountID, r.Err)
		}
	}
	return res
}

// checkResultShape: a refused command has no events; an accepted one has consecutive
// positions ending at Position, all stamped with the command's commit time.
func checkResultShape(r chronicle.Result) error {
	if r.Err != nil {
		if len(r.Events) != 0 || r.Position != 0 {
			return fmt.Errorf("refused (%v) but has %d events at position %d", r.Err, len(r.Events), r.Position)
		}
		return nil
	}
	if len(r.Events) == 0 {
		return errors.New("accepted without events")
	}
	first := r.Position - uint64(len(r.Events)) + 1
	for i, e := range r.Events {
		if e.Position != first+uint64(i) {
			return fmt.Errorf("event %d at position %d, want %d", i, e.Position, first+uint64(i))
		}
		if !e.CreatedAt.Equal(r.CommitTime) {
			return fmt.Errorf("event %d created at %s, command committed at %s", i, e.CreatedAt, r.CommitTime)
		}
	}
	return nil
}

// allEvents reads the whole log in ascending pages of 1000.
func allEvents(t testing.TB, s *Store) []chronicle.Event {
	t.Helper()
	ctx := context.Background()
	var out []chronicle.Event
	var last uint64
	for {
		page, err := s.Events(ctx, chronicle.EventQuery{After: last, Limit: 1000})
		if err != nil {
			t.Fatalf("Events(after %d): %v", last, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		last = page[len(page)-1].Position
	}
}

// checkEventLog checks positions 1..N and commit times: equal within a command, strictly
// increasing from one command to the next.
func checkEventLog(t testing.TB, events []chronicle.Event) {
	t.Helper()
	for i, e := range events {
		if e.Position != uint64(i+1) {
			t.Fatalf("event %d has position %d: the log has a gap", i, e.Position)
		}
		if i == 0 {
			continue
		}
		prev := events[i-1]
		if e.Metadata["command_id"] == "" {
			t.Fatalf("event %d has no command_id", e.Position)
		}
		if e.Metadata["command_id"] == prev.Metadata["command_id"] {
			if !e.CreatedAt.Equal(prev.CreatedAt) {
				t.Fatalf("events %d and %d of one command have times %s and %s", prev.Position, e.Position, prev.CreatedAt, e.CreatedAt)
			}
		} else if !e.CreatedAt.After(prev.CreatedAt) {
			t.Fatalf("event %d created at %s, not after event %d of the previous command at %s",
				e.Position, e.CreatedAt.Format(time.RFC3339Nano), prev.Position, prev.CreatedAt.Format(time.RFC3339Nano))
		}
	}
}

func accountDiff(want, got chronicle.Account) string {
	var d []string
	if want.ID != got.ID {
		d = append(d, fmt.Sprintf("id %q != %q", got.ID, want.ID))
	}
	if want.OwnerName != got.OwnerName {
		d = append(d, fmt.Sprintf("owner %q != %q", got.OwnerName, want.OwnerName))
	}
	if want.Currency != got.Currency {
		d = append(d, fmt.Sprintf("currency %s != %s", got.Currency, want.Currency))
	}
	if want.Balance != got.Balance {
		d = append(d, fmt.Sprintf("balance %d != %d", got.Balance, want.Balance))
	}
	if want.OverdraftLimit != got.OverdraftLimit {
		d = append(d, fmt.Sprintf("overdraft %d != %d", got.OverdraftLimit, want.OverdraftLimit))
	}
	if want.Status != got.Status {
		d = append(d, fmt.Sprintf("status %s != %s", got.Status, want.Status))
	}
	if !want.CreatedAt.Equal(got.CreatedAt) {
		d = append(d, fmt.Sprintf("created_at %s != %s", got.CreatedAt, want.CreatedAt))
	}
	if !want.LastUpdated.Equal(got.LastUpdated) {
		d = append(d, fmt.Sprintf("last_updated %s != %s", got.LastUpdated, want.LastUpdated))
	}
	if want.Version != got.Version {
		d = append(d, fmt.Sprintf("version %d != %d", got.Version, want.Version))
	}
	if want.Held != got.Held {
		d = append(d, fmt.Sprintf("held %d != %d", got.Held, want.Held))
	}
	return strings.Join(d, "; ")
}

// verifyAgainstReplay replays the store's events through chronicle.NewReplayer (which
// checks the hash chain and every balance_after) and checks that every account, the
// state DB's set of accounts and the head match the replay. It returns the replay and the events.
func verifyAgainstReplay(t testing.TB, s *Store) (*chronicle.Replayer, []chronicle.Event) {
	t.Helper()
	ctx := context.Background()
	events := allEvents(t, s)
	checkEventLog(t, events)
	rep := chronicle.NewReplayer()
	for _, e := range events {
		if err := rep.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	if want := rep.State.Head; head.Position != want.Position || head.Hash != want.Hash || !head.CommitTime.Equal(want.CommitTime) {
		t.Fatalf("head %+v, replay gives %+v", head, want)
	}
	customers := 0
	for _, want := range rep.State.SortedAccounts() {
		var got chronicle.Account
		if want.External() {
			var ok bool
			if err := s.read(func(rd reader) error {
				var err error
				got, ok, err = rd.Account(want.ID)
				return err
			}); err != nil || !ok {
				t.Fatalf("external account %s: ok=%v err=%v", want.ID, ok, err)
			}
		} else {
			customers++
			if got, err = s.Account(ctx, want.ID); err != nil {
				t.Fatalf("Account(%s): %v", want.ID, err)
			}
		}
		if d := accountDiff(want, got); d != "" {
			t.Fatalf("account %s: store differs from replay: %s", want.ID, d)
		}
	}
	for cur, total := range rep.State.Totals() {
		if total != 0 {
			t.Fatalf("%s balances sum to %d, want 0", cur, total)
		}
	}
	// The store holds exactly the replay's accounts, external ones included: read every
	// account record of the state DB, not just the ids the replay knows of.
	var stored []chronicle.Account
	if err := s.read(func(rd reader) error {
		it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixAccount}, UpperBound: []byte{prefixAccount + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			var a chronicle.Account
			if err := a.UnmarshalBinary(it.Value()); err != nil {
				return fmt.Errorf("decode account %q: %w", it.Key(), err)
			}
			stored = append(stored, a)
		}
		return it.Error()
	}); err != nil {
		t.Fatalf("list stored accounts: %v", err)
	}
	if len(stored) != len(rep.State.Accounts) {
		t.Fatalf("state DB holds %d accounts, replay has %d (%d customers)", len(stored), len(rep.State.Accounts), customers)
	}
	for _, a := range stored {
		want, ok := rep.State.Accounts[a.ID]
		if !ok {
			t.Fatalf("state DB holds account %s the replay lacks", a.ID)
		}
		if d := accountDiff(want, a); d != "" {
			t.Fatalf("stored account %s differs from replay: %s", a.ID, d)
		}
		if a.External() {
			// Account serves customer accounts only.
			var ce *chronicle.Error
			if _, err := s.Account(ctx, a.ID); !errors.As(err, &ce) || ce.Kind != chronicle.KindNotFound {
				t.Fatalf("Account(%s) of an external account: %v, want not found", a.ID, err)
			}
		}
	}
	checkIndexes(t, s, events)
	return rep, events
}

// checkIndexes checks the state DB's indexes against the events: each stream names its
// account's events in order with their commit times and balances after, with a
// checkpoint at every checkpointEvery-th (the last, where several share an instant);
// balance-at answers, at each commit instant, the balance after the last event then, and nothing
// before the first; and each type's and each account's listing, both ways and page by
// page, is exactly the events of that type or account.
func checkIndexes(t testing.TB, s *Store, events []chronicle.Event) {
	t.Helper()
	ctx := context.Background()
	byAccount := map[string][]chronicle.Event{}
	byType := map[string][]chronicle.Event{}
	for _, e := range events {
		byAccount[e.AggregateID] = append(byAccount[e.AggregateID], e)
		byType[e.EventType] = append(byType[e.EventType], e)
	}
	for id, evs := range byAccount {
		var got, checkpoints []kv
		if err := s.read(func(rd reader) error {
			got, checkpoints = dumpRange(t, rd.r, streamPrefix(id)), dumpRange(t, rd.r, checkpointPrefix(id))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(evs) {
			t.Fatalf("stream of %s: %d entries, %d events", id, len(got), len(evs))
		}
		for i, e := range evs {
			pos, at, bal, err := streamEntry(got[i].v)
			if err != nil || !bytes.Equal(got[i].k, streamKey(id, e.EventVersion)) || pos != e.Position ||
				!at.Equal(e.CreatedAt) || bal != e.Data.BalanceAfter {
				t.Fatalf("stream entry %d of %s: %x = %d %v %d (%v), want event %d v%d at %v balance %d", i, id,
					got[i].k, pos, at, bal, err, e.Position, e.EventVersion, e.CreatedAt, e.Data.BalanceAfter)
			}
		}
		var wantCk []kv
		for _, e := range evs {
			if e.EventVersion%checkpointEvery != 0 {
				continue
			}
			k := appendCheckpointKey(nil, id, e.CreatedAt)
			if n := len(wantCk); n > 0 && bytes.Equal(wantCk[n-1].k, k) {
				wantCk = wantCk[:n-1] // one record per instant: the later version's
			}
			wantCk = append(wantCk, kv{k, pebbleutil.U64(e.EventVersion)})
		}
		if len(checkpoints) != len(wantCk) {
			t.Fatalf("%s has %d stream entries and %d checkpoints, want %d", id, len(evs), len(checkpoints), len(wantCk))
		}
		for i, c := range checkpoints {
			if !bytes.Equal(c.k, wantCk[i].k) || !bytes.Equal(c.v, wantCk[i].v) {
				t.Fatalf("checkpoint %d of %s: %x = %x, want %x = %x", i, id, c.k, c.v, wantCk[i].k, wantCk[i].v)
			}
		}
		if chronicle.IsExternal(id) {
			continue // balance-at answers for customer accounts only
		}
		if p, err := s.BalanceAt(ctx, id, evs[0].CreatedAt.Add(-time.Nanosecond)); err == nil {
			t.Fatalf("balance of %s before its first event: %+v", id, p)
		}
		// Every commit instant of short streams, about 300 of long ones.
		step := max(1, len(evs)/300)
		for i := 0; i < len(evs); i += step {
			j := i
			for j+1 < len(evs) && evs[j+1].CreatedAt.Equal(evs[i].CreatedAt) {
				j++
			}
			at := []time.Time{evs[i].CreatedAt}
			if j+1 < len(evs) {
				at = append(at, evs[j+1].CreatedAt.Add(-time.Nanosecond)) // just before the next
			}
			for _, at := range at {
				p, err := s.BalanceAt(ctx, id, at)
				if err != nil || p.Balance != evs[j].Data.BalanceAfter || p.Position != evs[j].Position || !p.Time.Equal(evs[j].CreatedAt) {
					t.Fatalf("balance of %s at %v: %+v, %v; want %d from event %d", id, at, p, err, evs[j].Data.BalanceAfter, evs[j].Position)
				}
			}
		}
	}
	// Each type's listing and each account's, both ways, page by page.
	listings := map[chronicle.EventQuery][]chronicle.Event{}
	for typ, evs := range byType {
		listings[chronicle.EventQuery{EventType: typ}] = evs
	}
	for id, evs := range byAccount {
		listings[chronicle.EventQuery{AggregateID: id}] = evs
	}
	for q, evs := range listings {
		for _, desc := range []bool{false, true} {
			var got []uint64
			q.After, q.Descending, q.Limit = 0, desc, 97
			for {
				page, err := s.Events(ctx, q)
				if err != nil {
					t.Fatalf("events %+v: %v", q, err)
				}
				if len(page) == 0 {
					break
				}
				for _, e := range page {
					got = append(got, e.Position)
				}
				q.After = page[len(page)-1].Position
			}
			want := make([]uint64, len(evs))
			for i, e := range evs {
				want[i] = e.Position
			}
			if desc {
				slices.Reverse(want)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("events of type %q, account %q (descending %v): %d positions, want %d (%v…, want %v…)", q.EventType, q.AggregateID,
					desc, len(got), len(want), got[:min(len(got), 5)], want[:min(len(want), 5)])
			}
		}
	}
}

// dumpRange reads the records under prefix (all of them when it is nil).
func dumpRange(t fataler, r pebble.Reader, prefix []byte) []kv {
	t.Helper()
	var opts *pebble.IterOptions
	if prefix != nil {
		opts = &pebble.IterOptions{LowerBound: prefix, UpperBound: pebbleutil.PrefixEnd(prefix)}
	}
	it, err := r.NewIter(opts)
	if err != nil {
		t.Fatalf("NewIter: %v", err)
	}
	defer it.Close()
	var out []kv
	for it.First(); it.Valid(); it.Next() {
		out = append(out, kv{slices.Clone(it.Key()), slices.Clone(it.Value())})
	}
	if err := it.Error(); err != nil {
		t.Fatalf("iterate: %v", err)
	}
	return out
}

// kv is one key and value of a state DB.
type kv struct{ k, v []byte }

// fataler is what the dump helpers need of a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

func dumpReader(t fataler, r pebble.Reader) []kv {
	t.Helper()
	return dumpRange(t, r, nil)
}

// dumpState reads every record of the store's state, events included, in key order.
func dumpState(t testing.TB, s *Store) []kv {
	t.Helper()
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return dumpFSM(t, s.fsm)
}

// dumpFSM reads every record of f's state DB and events DB up to its head, in key order
// (as a snapshot streams them).
func dumpFSM(t testing.TB, f *fsm) []kv {
	t.Helper()
	return dumpDBs(t, f.db, f.ev)
}

func dumpDBs(t testing.TB, state, events pebble.Reader) []kv {
	t.Helper()
	head, err := reader{r: state}.head()
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	var out []kv
	err = eachRecord(state, events, head.Position, func(k, v []byte) error {
		out = append(out, kv{slices.Clone(k), slices.Clone(v)})
		return nil
	})
	if err != nil {
		t.Fatalf("iterate: %v", err)
	}
	return out
}

// requireSameState fails unless both dumps hold exactly the same keys and values.
func requireSameState(t testing.TB, want, got []kv) {
	t.Helper()
	var diffs []string
	i, j := 0, 0
	for (i < len(want) || j < len(got)) && len(diffs) < 10 {
		switch {
		case j >= len(got) || i < len(want) && bytes.Compare(want[i].k, got[j].k) < 0:
			diffs = append(diffs, fmt.Sprintf("missing key %q", want[i].k))
			i++
		case i >= len(want) || bytes.Compare(want[i].k, got[j].k) > 0:
			diffs = append(diffs, fmt.Sprintf("extra key %q = %q", got[j].k, got[j].v))
			j++
		default:
			if !bytes.Equal(want[i].v, got[j].v) {
				diffs = append(diffs, fmt.Sprintf("key %q: value %q, want %q", want[i].k, got[j].v, want[i].v))
			}
			i++
			j++
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("state DBs differ (%d vs %d keys):\n%s", len(want), len(got), strings.Join(diffs, "\n"))
	}
	if len(want) == 0 {
		t.Fatalf("state DB is empty")
	}
}

func requireSameEvents(t testing.TB, want, got []chronicle.Event) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		if want[i].Position != got[i].Position || want[i].Hash != got[i].Hash || want[i].EventID != got[i].EventID {
			t.Fatalf("event %d: got position %d hash %s, want position %d hash %s", i, got[i].Position, got[i].Hash, want[i].Position, want[i].Hash)
		}
	}
}

func appliedIndex(t testing.TB, s *Store) uint64 {
	t.Helper()
	var idx uint64
	if err := s.read(func(rd reader) error {
		var err error
		idx, err = rd.applied()
		return err
	}); err != nil {
		t.Fatalf("read applied index: %v", err)
	}
	return idx
}

func mustHead(t testing.TB, s *Store) chronicle.Head {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

// workload runs a randomized mix of commands from several goroutines at once: accounts
// in USD and JPY, deposits, withdrawals, transfers, and commands that must be refused
// (too many decimals, unknown accounts, cross-currency transfers, overdrafts).
type workloadResult struct {
	results []chronicle.Result
	ok      int
	refused map[string]int
}

func runWorkload(t *testing.T, s *Store, workers, steps int, seed uint64) workloadResult {
	t.Helper()
	type acct struct{ id, cur string }
	var all []acct
	perWorker := make([][]chronicle.Command, workers)
	for w := range workers {
		for i := range 3 {
			id := fmt.Sprintf("usd-%d-%d", w, i)
			all = append(all, acct{id, "USD"})
			overdraft := ""
			if i == 2 {
				overdraft = "50.00"
			}
			perWorker[w] = append(perWorker[w], cmdCreate(id, "USD", fmt.Sprintf("%d.%02d", 100+w, i), overdraft))
		}
		for i := range 2 {
			id := fmt.Sprintf("jpy-%d-%d", w, i)
			all = append(all, acct{id, "JPY"})
			perWorker[w] = append(perWorker[w], cmdCreate(id, "JPY", fmt.Sprint(10000*(i+1)), ""))
		}
	}
	// Ids that are prefixes of one another, to catch index ranges that bleed into a neighbour.
	all = append(all, acct{"acc-1", "USD"}, acct{"acc-10", "USD"})
	perWorker[0] = append(perWorker[0], cmdCreate("acc-1", "USD", "", ""))
	perWorker[workers-1] = append(perWorker[workers-1], cmdCreate("acc-10", "USD", "5.00", ""))

	var mu sync.Mutex
	out := workloadResult{refused: map[string]int{}}
	record := func(res []chronicle.Result) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range res {
			if r.Err != nil {
				out.refused[r.Err.Code]++
			} else {
				out.ok++
			}
			out.results = append(out.results, r)
		}
	}
	amount := func(rng *rand.Rand, cur string) string {
		if cur == "JPY" {
			return fmt.Sprint(1 + rng.IntN(3000))
		}
		return fmt.Sprintf("%d.%02d", rng.IntN(60), 1+rng.IntN(99))
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			res, err := tryExec(s, perWorker[w]...)
			if err != nil {
				t.Errorf("worker %d: create accounts: %v", w, err)
				return
			}
			record(res)
			for range steps {
				var cmds []chronicle.Command
				for range 1 + rng.IntN(3) {
					a, b := all[rng.IntN(len(all))], all[rng.IntN(len(all))]
					var c chronicle.Command
					switch p := rng.IntN(100); {
					case p < 25:
						c = cmdDeposit(a.id, amount(rng, a.cur))
					case p < 50:
						c = cmdWithdraw(a.id, amount(rng, a.cur))
					case p < 88:
						c = cmdTransfer(a.id, b.id, amount(rng, a.cur))
					case p < 93:
						// One decimal too many for the currency.
						if a.cur == "JPY" {
							c = cmdDeposit(a.id, "1.5")
						} else {
							c = cmdDeposit(a.id, "1.234")
						}
					case p < 96:
						c = cmdWithdraw("ghost-"+a.id, "1")
					default:
						c = cmdWithdraw(a.id, "100000000")
					}
					cmds = append(cmds, c)
				}
				res, err := tryExec(s, cmds...)
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				record(res)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if out.ok == 0 || len(out.refused) == 0 {
		t.Fatalf("workload is degenerate: %d accepted, refusals %v", out.ok, out.refused)
	}
	return out
}

// 1. Concurrent workload; every account matches a replay of the log.
func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	w := runWorkload(t, s, 8, 40, 1)
	t.Logf("%d accepted, refused: %v", w.ok, w.refused)
	for _, code := range []string{chronicle.CodeInvalidAmount, chronicle.CodeAccountNotFound, chronicle.CodeInsufficientFunds} {
		if w.refused[code] == 0 {
			t.Errorf("workload produced no %s refusal", code)
		}
	}

	_, events := verifyAgainstReplay(t, s)

	// What Execute returned is exactly what was stored.
	fromResults := map[uint64]chronicle.Event{}
	var accepted []chronicle.Result
	for _, r := range w.results {
		if r.Err != nil {
			continue
		}
		accepted = append(accepted, r)
		for _, e := range r.Events {
			if _, dup := fromResults[e.Position]; dup {
				t.Fatalf("position %d returned to two commands", e.Position)
			}
			fromResults[e.Position] = e
		}
	}
	if len(fromResults) != len(events) {
		t.Fatalf("Execute returned %d events, the log holds %d", len(fromResults), len(events))
	}
	for _, e := range events {
		r, ok := fromResults[e.Position]
		if !ok || r.Hash != e.Hash || r.EventID != e.EventID {
			t.Fatalf("stored event %d (%s) differs from the one Execute returned (%s)", e.Position, e.Hash, r.Hash)
		}
	}
	sort.Slice(accepted, func(i, j int) bool { return accepted[i].Position < accepted[j].Position })
	for i := 1; i < len(accepted); i++ {
		if !accepted[i].CommitTime.After(accepted[i-1].CommitTime) {
			t.Fatalf("commands at positions %d and %d have commit times %s and %s", accepted[i-1].Position,
				accepted[i].Position, accepted[i-1].CommitTime, accepted[i].CommitTime)
		}
	}
	if h := mustHead(t, s); h.Position != uint64(len(events)) || h.Position == 0 {
		t.Fatalf("head at %d with %d events", h.Position, len(events))
	}
}

// 2. Close and reopen: the state is read back, not rebuilt, and the chain continues.
func TestStoreRestartDoesNotReapply(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("alice", "USD", "100.00", ""), cmdCreate("bob", "USD", "", ""), cmdCreate("yen", "JPY", "500", ""))
	for i := range 20 {
		mustOK(t, s, cmdTransfer("alice", "bob", "1.25"))
		mustOK(t, s, cmdDeposit("yen", fmt.Sprint(i+1)))
	}
	mustExec(t, s, cmdWithdraw("bob", "1000.00")) // refused
	waitAllApplied(t, s)
	before := dumpState(t, s)
	head := mustHead(t, s)
	events := allEvents(t, s)
	applied := appliedIndex(t, s)
	alice, _ := s.Account(context.Background(), "alice")
	closeStore(t, s)

	s = env.open()
	if got := mustHead(t, s); got != head {
		t.Fatalf("head after reopen %+v, want %+v", got, head)
	}
	// Raft replays its whole log into the FSM after the restart (there is no snapshot);
	// once it has, the state DB must be byte for byte what it was.
	waitAllApplied(t, s)
	if st := s.raft.Stats(); parseUint(st["applied_index"]) < applied {
		t.Fatalf("raft applied index %s, below the %d applied before the restart", st["applied_index"], applied)
	}
	requireSameState(t, before, dumpState(t, s))
	if got := appliedIndex(t, s); got != applied {
		t.Fatalf("applied index %d after restart, want %d", got, applied)
	}
	requireSameEvents(t, events, allEvents(t, s))
	if got, _ := s.Account(context.Background(), "alice"); got.Version != alice.Version || got.Balance != alice.Balance {
		t.Fatalf("alice after restart: version %d balance %d, want %d %d", got.Version, got.Balance, alice.Version, alice.Balance)
	}

	res := mustOK(t, s, cmdDeposit("bob", "0.01"))
	if e := res[0].Events[0]; e.Position != head.Position+1 || e.PrevHash != head.Hash {
		t.Fatalf("first event after restart at %d prev %s, want %d prev %s", e.Position, e.PrevHash, head.Position+1, head.Hash)
	}
	if !res[0].CommitTime.After(head.CommitTime) {
		t.Fatalf("commit time %s not after %s", res[0].CommitTime, head.CommitTime)
	}
	if got := appliedIndex(t, s); got <= applied {
		t.Fatalf("applied index %d did not advance past %d", got, applied)
	}
	verifyAgainstReplay(t, s)
}

// 3. A snapshot truncates the log; a restart from it restores nothing and loses nothing.
func TestStoreSnapshotTruncatesLog(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, func(c *Config) { c.SnapshotThreshold = 8; c.TrailingLogs = 4 })
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "1000.00", ""), cmdCreate("b", "USD", "", ""))
	for range 40 {
		mustOK(t, s, cmdTransfer("a", "b", "2.50"))
	}
	if err := s.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	first, err := s.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, _ := s.logs.LastIndex()
	if first <= 1 {
		t.Fatalf("log not truncated: first index %d, last %d", first, last)
	}
	t.Logf("log holds entries %d..%d after the snapshot", first, last)
	waitAllApplied(t, s)
	before, head, events := dumpState(t, s), mustHead(t, s), allEvents(t, s)
	closeStore(t, s)

	for round := range 2 {
		s = env.open()
		if got := mustHead(t, s); got != head {
			t.Fatalf("round %d: head after reopen %+v, want %+v", round, got, head)
		}
		waitAllApplied(t, s)
		requireSameState(t, before, dumpState(t, s))
		requireSameEvents(t, events, allEvents(t, s))
		if f, _ := s.logs.FirstIndex(); f <= 1 {
			t.Fatalf("round %d: truncated log grew back: first index %d", round, f)
		}
		for range 10 {
			mustOK(t, s, cmdTransfer("b", "a", "1.00"))
		}
		res := mustOK(t, s, cmdDeposit("a", "0.01"))
		if res[0].Position != head.Position+21 {
			t.Fatalf("round %d: new command at position %d, want %d", round, res[0].Position, head.Position+21)
		}
		verifyAgainstReplay(t, s)
		if err := s.Snapshot(); err != nil {
			t.Fatalf("round %d: Snapshot: %v", round, err)
		}
		waitAllApplied(t, s)
		before, head, events = dumpState(t, s), mustHead(t, s), allEvents(t, s)
		closeStore(t, s)
	}
	if n := strings.Count(env.logs.String(), "state already covers snapshot; skipping restore"); n != 2 {
		t.Fatalf("restarts skipped restoring %d times, want 2", n)
	}
	if strings.Contains(env.logs.String(), "restoring state from snapshot") {
		t.Fatalf("a restart replaced a state DB that already covered the snapshot")
	}
}

// crashAfterCommit runs commands, checkpoints the state DB, runs more, and then puts the
// checkpoint back: the state DB lags the Raft log as if the process had died after Raft
// committed entries but before their state writes reached the disk. With snapshot set,
// a snapshot (and a log truncation past the checkpoint) happens after the checkpoint.
func crashAfterCommit(t *testing.T, snapshot bool) {
	env := newLedgerEnv(t, func(c *Config) {
		if snapshot {
			c.SnapshotThreshold = 4
			c.TrailingLogs = 2
		}
	})
	s := env.open()
	mustOK(t, s, cmdCreate("a", "USD", "500.00", ""), cmdCreate("b", "USD", "", "20.00"), cmdCreate("y", "JPY", "1000", ""))
	for i := range 10 {
		mustOK(t, s, cmdTransfer("a", "b", fmt.Sprintf("%d.00", i+1)))
	}
	idem := cmdDeposit("y", "7")
	idem.IdempotencyKey = "crash-key"
	mustOK(t, s, idem)
	waitAllApplied(t, s)

	ckpt := filepath.Join(env.cfg.DataDir, "checkpoint")
	// The state DB has no WAL: a checkpoint holds what was flushed.
	if err := s.fsm.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.fsm.db.Checkpoint(ckpt, pebble.WithFlushedWAL()); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	ckApplied, ckHead := readCheckpoint(t, ckpt)

	for i := range 15 {
		mustExec(t, s, cmdWithdraw("b", "3.00"), cmdDeposit("y", fmt.Sprint(i+1)))
	}
	mustOK(t, s, cmdCreate("c", "USD", "1.00", ""))
	if snapshot {
		if err := s.Snapshot(); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		first, _ := s.logs.FirstIndex()
		if first <= ckApplied+1 {
			t.Fatalf("log starts at %d: not truncated past the checkpoint's applied index %d", first, ckApplied)
		}
		for range 5 {
			mustOK(t, s, cmdTransfer("c", "a", "0.10"))
		}
	}
	waitAllApplied(t, s)
	before, head, events := dumpState(t, s), mustHead(t, s), allEvents(t, s)
	applied := appliedIndex(t, s)
	if ckApplied >= applied || ckHead.Position >= head.Position {
		t.Fatalf("checkpoint (applied %d, position %d) does not lag the store (applied %d, position %d)",
			ckApplied, ckHead.Position, applied, head.Position)
	}
	closeStore(t, s)

	state := filepath.Join(env.cfg.DataDir, "state")
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(ckpt, state); err != nil {
		t.Fatal(err)
	}

	s = env.open()
	waitAllApplied(t, s)
	requireSameState(t, before, dumpState(t, s))
	requireSameEvents(t, events, allEvents(t, s))
	if got := mustHead(t, s); got != head {
		t.Fatalf("head after recovery %+v, want %+v", got, head)
	}
	if st := s.Status(); st.AppliedIndex != applied || st.Position != head.Position {
		t.Fatalf("status after recovery: applied %d position %d, want %d %d", st.AppliedIndex, st.Position, applied, head.Position)
	}
	restored := strings.Contains(env.logs.String(), "restoring state from snapshot")
	if restored != snapshot {
		t.Fatalf("restored from a snapshot: %v, want %v", restored, snapshot)
	}
	// The key recorded before the crash still answers with the original result.
	res := mustOK(t, s, idem)
	if !res[0].Replayed {
		t.Fatalf("idempotent retry after recovery was not replayed: %+v", res[0])
	}
	res = mustOK(t, s, cmdDeposit("a", "1.00"))
	if e := res[0].Events[0]; e.Position != head.Position+1 || e.PrevHash != head.Hash {
		t.Fatalf("next event at %d prev %s, want %d prev %s", e.Position, e.PrevHash, head.Position+1, head.Hash)
	}
	verifyAgainstReplay(t, s)
}

// readCheckpoint opens a checkpoint read-only and returns its applied index and head.
func readCheckpoint(t *testing.T, dir string) (uint64, chronicle.Head) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open checkpoint: %v", err)
	}
	defer db.Close()
	rd := reader{r: db}
	applied, err := rd.applied()
	if err != nil {
		t.Fatal(err)
	}
	head, err := rd.head()
	if err != nil {
		t.Fatal(err)
	}
	if applied == 0 || head.Position == 0 {
		t.Fatalf("checkpoint is empty: applied %d, head %+v", applied, head)
	}
	return applied, head
}

// 5. Killed between Raft commit and the state write: the restart re-applies the rest.
func TestStoreRecoversStateLaggingLog(t *testing.T) {
	t.Parallel()
	crashAfterCommit(t, false)
}

// 6. As 5, but the entries the state lacks are gone from the log: restore the snapshot.
func TestStoreRecoversStateBehindSnapshot(t *testing.T) {
	t.Parallel()
	crashAfterCommit(t, true)
}

// 7 and 8. Balance-at against the replay path, and the events query against a filter
// over the whole log.
func TestStoreReadPaths(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	runWorkload(t, s, 4, 60, 7)
	// A few commands a moment apart, so that instants fall between commits as well.
	for range 5 {
		mustExec(t, s, cmdDeposit("usd-0-0", "0.01"), cmdTransfer("acc-10", "acc-1", "0.01"))
	}
	rep, events := verifyAgainstReplay(t, s)

	t.Run("BalanceAt", func(t *testing.T) { checkBalanceAt(t, s, rep, events) })
	t.Run("Events", func(t *testing.T) { checkEventQueries(t, s, events) })
}

func checkBalanceAt(t *testing.T, s *Store, rep *chronicle.Replayer, events []chronicle.Event) {
	ctx := context.Background()
	var ids []string
	for _, a := range rep.State.SortedAccounts() {
		if !a.External() {
			ids = append(ids, a.ID)
		}
	}
	first, last := events[0].CreatedAt, events[len(events)-1].CreatedAt
	rng := rand.New(rand.NewPCG(42, 42))
	instants := []time.Time{
		{}, time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), first.Add(-time.Hour), first.Add(-time.Nanosecond), first,
		last, last.Add(time.Nanosecond), last.Add(24 * time.Hour), time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for range 200 {
		instants = append(instants, first.Add(time.Duration(rng.Int64N(int64(last.Sub(first))+1))))
	}
	for range 40 { // exactly at a commit and just before it
		e := events[rng.IntN(len(events))]
		instants = append(instants, e.CreatedAt, e.CreatedAt.Add(-time.Nanosecond))
	}
	notFound, found := 0, 0
	for _, at := range instants {
		for _, id := range ids {
			want, ok, err := chronicle.BalanceAt(events, id, at)
			if err != nil {
				t.Fatalf("replay BalanceAt: %v", err)
			}
			got, err := s.BalanceAt(ctx, id, at)
			if !ok {
				var ce *chronicle.Error
				if !errors.As(err, &ce) || ce.Kind != chronicle.KindNotFound {
					t.Fatalf("BalanceAt(%s, %s) before the account existed: %+v, %v; want a not-found error", id, at.Format(time.RFC3339Nano), got, err)
				}
				notFound++
				continue
			}
			found++
			if err != nil {
				t.Fatalf("BalanceAt(%s, %s): %v", id, at.Format(time.RFC3339Nano), err)
			}
			// The last event of the account at or before the instant.
			var lastEv chronicle.Event
			for _, e := range events {
				if e.AggregateID == id && !e.CreatedAt.After(at) {
					lastEv = e
				}
			}
			if got.Balance != want || got.Position != lastEv.Position || !got.Time.Equal(lastEv.CreatedAt) || got.AccountID != id {
				t.Fatalf("BalanceAt(%s, %s) = %+v; replay gives balance %d after event %d at %s",
					id, at.Format(time.RFC3339Nano), got, want, lastEv.Position, lastEv.CreatedAt.Format(time.RFC3339Nano))
			}
		}
	}
	if notFound == 0 || found == 0 {
		t.Fatalf("instants cover too little: %d found, %d not found", found, notFound)
	}
	for _, id := range []string{"nobody", chronicle.ExternalAccountID("USD")} {
		var ce *chronicle.Error
		if _, err := s.BalanceAt(ctx, id, last); !errors.As(err, &ce) || ce.Kind != chronicle.KindNotFound {
			t.Fatalf("BalanceAt(%s): %v, want not found", id, err)
		}
	}
}

// refEvents answers q by filtering the whole log.
func refEvents(all []chronicle.Event, q chronicle.EventQuery) []chronicle.Event {
	limit := q.Limit
	if limit <= 0 || limit > chronicle.MaxEventsPage {
		limit = chronicle.MaxEventsPage
	}
	out := []chronicle.Event{}
	match := func(e chronicle.Event) bool {
		switch {
		case q.EventType != "" && e.EventType != q.EventType, q.AggregateID != "" && e.AggregateID != q.AggregateID:
			return false
		case q.Descending:
			return q.After == 0 || e.Position < q.After
		default:
			return e.Position > q.After
		}
	}
	for i := range all {
		e := all[i]
		if q.Descending {
			e = all[len(all)-1-i]
		}
		if len(out) < limit && match(e) {
			out = append(out, e)
		}
	}
	return out
}

func checkEventQueries(t *testing.T, s *Store, all []chronicle.Event) {
	ctx := context.Background()
	n := uint64(len(all))
	types := []string{"", chronicle.EventAccountCreated, chronicle.EventMoneyDeposited, chronicle.EventMoneyWithdrawn, "NoSuchEvent"}
	aggs := []string{"", "acc-1", "acc-10", "usd-0-0", "jpy-1-1", chronicle.ExternalAccountID("USD"), "nobody"}
	afters := []uint64{0, 1, n / 3, n / 2, n - 1, n, n + 10}
	limits := []int{0, 1, 7, 100, 1000, 5000}
	queries := 0
	for _, typ := range types {
		for _, agg := range aggs {
			for _, after := range afters {
				for _, desc := range []bool{false, true} {
					for _, limit := range limits {
						q := chronicle.EventQuery{EventType: typ, AggregateID: agg, After: after, Descending: desc, Limit: limit}
						got, err := s.Events(ctx, q)
						if err != nil {
							t.Fatalf("Events(%+v): %v", q, err)
						}
						want := refEvents(all, q)
						if len(got) != len(want) {
							t.Fatalf("Events(%+v): %d events, want %d", q, len(got), len(want))
						}
						for i := range want {
							if got[i].Position != want[i].Position || got[i].Hash != want[i].Hash {
								t.Fatalf("Events(%+v)[%d] = position %d, want %d", q, i, got[i].Position, want[i].Position)
							}
						}
						queries++
					}
				}
			}
		}
	}
	// Spot checks that the reference itself is not vacuous.
	if got := refEvents(all, chronicle.EventQuery{EventType: chronicle.EventMoneyWithdrawn, AggregateID: "acc-10"}); len(got) == 0 {
		t.Fatalf("workload has no withdrawal from acc-10")
	}
	if got, _ := s.Events(ctx, chronicle.EventQuery{AggregateID: "acc-1"}); len(got) == 0 || got[0].EventType != chronicle.EventAccountCreated {
		t.Fatalf("acc-1 stream does not start with its creation: %v", got)
	}

	// Paging a filtered view in both directions yields the whole filtered log.
	for _, desc := range []bool{false, true} {
		for _, typ := range []string{chronicle.EventMoneyDeposited, ""} {
			var paged []chronicle.Event
			var after uint64
			for {
				page, err := s.Events(ctx, chronicle.EventQuery{EventType: typ, After: after, Descending: desc, Limit: 13})
				if err != nil {
					t.Fatal(err)
				}
				if len(page) == 0 {
					break
				}
				paged = append(paged, page...)
				after = page[len(page)-1].Position
			}
			want := refEvents(all, chronicle.EventQuery{EventType: typ, Descending: desc, Limit: 1000})
			if len(paged) != len(want) {
				t.Fatalf("paging type %q descending %v: %d events, want %d", typ, desc, len(paged), len(want))
			}
			for i := range want {
				if paged[i].Position != want[i].Position {
					t.Fatalf("paging type %q descending %v: [%d] = %d, want %d", typ, desc, i, paged[i].Position, want[i].Position)
				}
			}
		}
	}
	t.Logf("%d queries over %d events", queries, n)
}

// 9. An idempotency key answers with its original result after a restart.
func TestStoreIdempotencyAcrossRestart(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("acct", "USD", "10.00", ""), cmdCreate("other", "USD", "", ""))
	cmd := cmdTransfer("acct", "other", "2.50")
	cmd.IdempotencyKey = "transfer-0001"
	first := mustOK(t, s, cmd)[0]
	if first.Replayed {
		t.Fatalf("first execution reported as replayed")
	}
	sameResult := func(what string, r chronicle.Result) {
		t.Helper()
		if r.Err != nil || !r.Replayed || r.Position != first.Position || r.TransferID != first.TransferID ||
			!r.CommitTime.Equal(first.CommitTime) || len(r.Events) != len(first.Events) {
			t.Fatalf("%s: %+v, want a replay of %+v", what, r, first)
		}
		for i := range r.Events {
			if r.Events[i].Hash != first.Events[i].Hash {
				t.Fatalf("%s: event %d hash %s, want %s", what, i, r.Events[i].Hash, first.Events[i].Hash)
			}
		}
	}
	sameResult("retry before restart", mustExec(t, s, cmd)[0])
	head := mustHead(t, s)
	closeStore(t, s)

	s = env.open()
	sameResult("retry after restart", mustExec(t, s, cmd)[0])
	// Several retries in one batch, next to a new command.
	res := mustExec(t, s, cmd, cmdDeposit("other", "1.00"), cmd)
	sameResult("batched retry 1", res[0])
	sameResult("batched retry 2", res[2])
	if res[1].Err != nil || res[1].Position != head.Position+1 {
		t.Fatalf("new command: %+v, want position %d", res[1], head.Position+1)
	}
	reused := cmdTransfer("acct", "other", "3.00")
	reused.IdempotencyKey = cmd.IdempotencyKey
	if r := mustExec(t, s, reused)[0]; r.Err == nil || r.Err.Code != chronicle.CodeIdempotencyMismatch {
		t.Fatalf("key reused for another transfer: %+v, want %s", r, chronicle.CodeIdempotencyMismatch)
	}
	if h := mustHead(t, s); h.Position != head.Position+1 {
		t.Fatalf("head at %d, want %d: a retry wrote events", h.Position, head.Position+1)
	}
	if a, _ := s.Account(context.Background(), "acct"); a.Balance != 750 || a.Version != 2 {
		t.Fatalf("acct balance %d version %d, want 750 and 2", a.Balance, a.Version)
	}
	verifyAgainstReplay(t, s)
}

// 10. Concurrent withdrawals never overdraw.
func TestStoreConcurrentWithdrawals(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("hot", "USD", "100.00", ""))
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, insufficient := 0, 0
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := tryExec(s, cmdWithdraw("hot", "10.00"))
			if err != nil {
				t.Errorf("withdrawal %d: %v", i, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch r := res[0]; {
			case r.Err == nil:
				ok++
			case r.Err.Code == chronicle.CodeInsufficientFunds:
				insufficient++
			default:
				t.Errorf("withdrawal %d refused with %v", i, r.Err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok != 10 || insufficient != 90 {
		t.Fatalf("%d withdrawals succeeded and %d were refused for funds; want 10 and 90", ok, insufficient)
	}
	a, err := s.Account(context.Background(), "hot")
	if err != nil {
		t.Fatal(err)
	}
	if a.Balance != 0 || a.Version != 11 {
		t.Fatalf("balance %d version %d, want 0 and 11", a.Balance, a.Version)
	}
	verifyAgainstReplay(t, s)
}

// Close while commands are being executed: every call returns, and every call told that
// its command failed really wrote nothing.
func TestStoreCloseWhileExecuting(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("acct", "USD", "", ""))
	type outcome struct {
		id  string
		err error
	}
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	started := make(chan struct{}, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				c := cmdDeposit("acct", "0.01")
				c.ID = chronicle.NewID()
				res, err := s.Execute(context.Background(), []chronicle.Command{c})
				if err == nil && res[0].Err != nil {
					err = res[0].Err
				}
				mu.Lock()
				outcomes = append(outcomes, outcome{c.ID, err})
				mu.Unlock()
				if i == 5 {
					started <- struct{}{}
				}
				if err != nil {
					if w == 0 {
						t.Logf("first error: %v", err)
					}
					return
				}
			}
		}()
	}
	for range 16 {
		<-started
	}
	closeStore(t, s)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Execute calls still blocked 10s after Close returned")
	}

	s = env.open()
	waitAllApplied(t, s)
	committed := map[string]bool{}
	for _, e := range allEvents(t, s) {
		committed[e.Metadata["command_id"]] = true
	}
	var ok, failed int
	for _, o := range outcomes {
		switch {
		case o.err == nil && !committed[o.id]:
			t.Errorf("command %s acknowledged but not in the log", o.id)
		case o.err != nil && committed[o.id]:
			t.Errorf("command %s reported failed (%v) but committed", o.id, o.err)
		case o.err == nil:
			ok++
		default:
			failed++
		}
	}
	t.Logf("%d acknowledged, %d failed", ok, failed)
	verifyAgainstReplay(t, s)
}

// WaitApplied and Changes follow the applied position: a waiter for a future position is
// woken by the command that reaches it, one past its deadline gets a timeout error, and a
// subscriber is signalled when the log grows.
func TestStoreWaitAppliedAndChanges(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	changes, stop := s.Changes()
	defer stop()
	base := mustHead(t, s).Position

	ctx, cancel := context.WithTimeout(context.Background(), ledgerTestTimeout)
	defer cancel()
	woken := make(chan error, 1)
	go func() { woken <- s.WaitApplied(ctx, base+1) }()
	res := mustOK(t, s, cmdCreate("waited", "USD", "1.00", ""))
	if err := <-woken; err != nil {
		t.Fatalf("WaitApplied(%d): %v", base+1, err)
	}
	if h := mustHead(t, s); h.Position < res[0].Position {
		t.Fatalf("head %d after WaitApplied, command committed at %d", h.Position, res[0].Position)
	}
	select {
	case <-changes:
	case <-ctx.Done():
		t.Fatal("no change signal after a commit")
	}

	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	err := s.WaitApplied(short, mustHead(t, s).Position+1000)
	var ce *chronicle.Error
	if !errors.As(err, &ce) || ce.Kind != chronicle.KindTimeout || ce.Code != chronicle.CodeTimeout {
		t.Fatalf("WaitApplied past its deadline: %v, want a timeout error", err)
	}
	if err := s.WaitApplied(short, res[0].Position); err != nil {
		t.Fatalf("WaitApplied of a reached position with an ended context: %v", err)
	}
}

// Raft shutting itself down under load (as a removed leader does, ShutdownOnRemove) may
// leave entries in its apply queue that nothing ever answers: Close and every Execute
// still return, and whatever was acknowledged is in the log.
func TestStoreRaftShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		env := newLedgerEnv(t, nil)
		s := env.open()
		mustOK(t, s, cmdCreate("acct", "USD", "", ""))
		var mu sync.Mutex
		acked := map[string]bool{}
		var wg sync.WaitGroup
		started := make(chan struct{}, 32)
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					c := cmdDeposit("acct", "0.01")
					c.ID = chronicle.NewID()
					res, err := s.Execute(context.Background(), []chronicle.Command{c})
					if i == 3 {
						started <- struct{}{}
					}
					if err != nil || res[0].Err != nil {
						return
					}
					mu.Lock()
					acked[c.ID] = true
					mu.Unlock()
				}
			}()
		}
		for range 32 {
			<-started
		}
		if err := s.raft.Shutdown().Error(); err != nil {
			t.Fatal(err)
		}
		closed := make(chan error, 1)
		go func() { wg.Wait(); closed <- s.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: Close: %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Execute or Close still blocked 30s after Raft shut down", round)
		}
		s = env.open()
		waitAllApplied(t, s)
		committed := map[string]bool{}
		for _, e := range allEvents(t, s) {
			committed[e.Metadata["command_id"]] = true
		}
		for id := range acked {
			if !committed[id] {
				t.Errorf("round %d: command %s acknowledged but not in the log", round, id)
			}
		}
		closeStore(t, s)
	}
}
