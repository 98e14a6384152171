package raftstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// workingCopy is a deep copy of a working state, for comparisons.
type workingCopy struct {
	accounts map[string]chronicle.Account
	keys     map[string]chronicle.IdempotencyRecord
	expiry   []expiryEntry
	head     chronicle.Head
	applied  uint64
	// holds are the open holds; holdAccounts their ids by debit account; due the
	// deadline order.
	holds        map[string]chronicle.PendingTransfer
	holdAccounts map[string][]string
	due          []dueEntry
}

func copyWorking(w *working) workingCopy {
	w.mu.RLock()
	defer w.mu.RUnlock()
	accounts := map[string]chronicle.Account{}
	w.accounts.each(func(a chronicle.Account) { accounts[a.ID] = a })
	holdAccounts := map[string][]string{}
	for acc, ids := range w.holds.byAccount {
		holdAccounts[acc] = slices.Sorted(maps.Keys(ids))
	}
	return workingCopy{accounts: accounts, keys: maps.Clone(w.keys), expiry: slices.Clone(w.expiry),
		head: w.head, applied: w.applied, holds: maps.Clone(w.holds.byID), holdAccounts: holdAccounts,
		due: slices.Clone(w.holds.due)}
}

// workingFromDump decodes the working state from a state DB's keys and values, apart from
// loadWorking, so that a bug there cannot hide itself.
func workingFromDump(t testing.TB, kvs []kv) workingCopy {
	t.Helper()
	out := workingCopy{accounts: map[string]chronicle.Account{}, keys: map[string]chronicle.IdempotencyRecord{},
		head: chronicle.GenesisHead(), holds: map[string]chronicle.PendingTransfer{}, holdAccounts: map[string][]string{}}
	for _, e := range kvs {
		switch e.k[0] {
		case prefixAccount:
			var a chronicle.Account
			if err := a.UnmarshalBinary(e.v); err != nil {
				t.Fatalf("account %q: %v", e.k, err)
			}
			out.accounts[string(e.k[1:])] = a
		case prefixIdem:
			var r chronicle.IdempotencyRecord
			if err := r.UnmarshalBinary(e.v); err != nil {
				t.Fatalf("idempotency record %q: %v", e.k, err)
			}
			out.keys[string(e.k[1:])] = r
		case prefixIdemExpiry:
			out.expiry = append(out.expiry, expiryEntry{at: binary.BigEndian.Uint64(e.k[1:9]), key: string(e.k[9:])})
		case prefixHold:
			// Every record, open or finished: the open ones are what memory must hold.
			var p chronicle.PendingTransfer
			if err := p.UnmarshalBinary(e.v); err != nil {
				t.Fatalf("pending transfer %q: %v", e.k, err)
			}
			if p.Open() {
				out.holds[string(e.k[1:])] = p
				out.holdAccounts[p.FromAccountID] = append(out.holdAccounts[p.FromAccountID], p.ID)
				out.due = append(out.due, dueEntry{at: timeOrder(p.ExpiresAt), id: p.ID})
			}
		case prefixMeta:
			switch string(e.k[1:]) {
			case metaHead:
				if err := out.head.UnmarshalBinary(e.v); err != nil {
					t.Fatalf("head: %v", err)
				}
			case metaApplied:
				out.applied = binary.BigEndian.Uint64(e.v)
			}
		}
	}
	for _, ids := range out.holdAccounts {
		slices.Sort(ids)
	}
	slices.SortFunc(out.due, func(a, b dueEntry) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	return out
}

// requireSameWorking fails unless both hold the same accounts, records, expiry index,
// head, applied index and open holds, every field of every one.
func requireSameWorking(t testing.TB, what string, want, got workingCopy) {
	t.Helper()
	var diffs []string
	if len(got.accounts) != len(want.accounts) {
		diffs = append(diffs, fmt.Sprintf("%d accounts, want %d", len(got.accounts), len(want.accounts)))
	}
	for id, a := range want.accounts {
		if g, ok := got.accounts[id]; !ok {
			diffs = append(diffs, fmt.Sprintf("account %s missing", id))
		} else if d := accountDiff(a, g); d != "" {
			diffs = append(diffs, fmt.Sprintf("account %s: %s", id, d))
		}
	}
	if len(got.keys) != len(want.keys) {
		diffs = append(diffs, fmt.Sprintf("%d idempotency records, want %d", len(got.keys), len(want.keys)))
	}
	for k, r := range want.keys {
		g, ok := got.keys[k]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("idempotency record %s missing", k))
		} else if g.Key != r.Key || g.Fingerprint != r.Fingerprint || !g.CommitTime.Equal(r.CommitTime) || g.Position != r.Position || g.Count != r.Count {
			diffs = append(diffs, fmt.Sprintf("idempotency record %s: %+v, want %+v", k, g, r))
		}
	}
	if !slices.Equal(got.expiry, want.expiry) {
		diffs = append(diffs, fmt.Sprintf("expiry index of %d entries differs from the %d wanted", len(got.expiry), len(want.expiry)))
	}
	if got.head.Position != want.head.Position || got.head.Hash != want.head.Hash || !got.head.CommitTime.Equal(want.head.CommitTime) {
		diffs = append(diffs, fmt.Sprintf("head %+v, want %+v", got.head, want.head))
	}
	if got.applied != want.applied {
		diffs = append(diffs, fmt.Sprintf("applied index %d, want %d", got.applied, want.applied))
	}
	if len(got.holds) != len(want.holds) {
		diffs = append(diffs, fmt.Sprintf("%d open holds, want %d", len(got.holds), len(want.holds)))
	}
	for id, p := range want.holds {
		if g, ok := got.holds[id]; !ok {
			diffs = append(diffs, fmt.Sprintf("open hold %s missing", id))
		} else if !sameHold(g, p) {
			diffs = append(diffs, fmt.Sprintf("open hold %s: %+v, want %+v", id, g, p))
		}
	}
	for id := range got.holds {
		if _, ok := want.holds[id]; !ok {
			diffs = append(diffs, fmt.Sprintf("hold %s is in memory as open, the state DB has it finished or not at all", id))
		}
	}
	if !maps.EqualFunc(got.holdAccounts, want.holdAccounts, slices.Equal) {
		diffs = append(diffs, fmt.Sprintf("open holds by account %v, want %v", got.holdAccounts, want.holdAccounts))
	}
	if !slices.Equal(got.due, want.due) {
		diffs = append(diffs, fmt.Sprintf("deadline order of %d holds differs from the %d wanted", len(got.due), len(want.due)))
	}
	if len(diffs) > 10 {
		diffs = diffs[:10]
	}
	if len(diffs) > 0 {
		t.Fatalf("%s: working states differ:\n%s", what, bytes.Join(func() [][]byte {
			var b [][]byte
			for _, d := range diffs {
				b = append(b, []byte(d))
			}
			return b
		}(), []byte("\n")))
	}
}

func sameHold(a, b chronicle.PendingTransfer) bool {
	return a.ID == b.ID && a.FromAccountID == b.FromAccountID && a.ToAccountID == b.ToAccountID && a.Currency == b.Currency &&
		a.Amount == b.Amount && a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt) && a.State == b.State &&
		a.CapturedAmount == b.CapturedAmount && a.FinishedAt.Equal(b.FinishedAt)
}

// requireMemoryMirrorsDB compares f's working state with its state DB, record by record.
func requireMemoryMirrorsDB(t testing.TB, what string, f *fsm) {
	t.Helper()
	f.mu.RLock()
	kvs := dumpFSM(t, f)
	f.mu.RUnlock()
	requireSameWorking(t, what, workingFromDump(t, kvs), copyWorking(f.mem))
}

func commandEntry(t testing.TB, index uint64, at time.Time, window time.Duration, cmds ...chronicle.Command) *raft.Log {
	t.Helper()
	for i := range cmds {
		cmds[i].ID = fmt.Sprintf("extra-%d-%d", index, i)
	}
	payload, err := chronicle.Batch{Time: at, IdempotencyWindow: window, Commands: cmds}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: chronicle.EncodeEntry(chronicle.EntryCommandBatch, payload)}
}

// The command path reads no state DB: with every value in it overwritten with garbage,
// and records planted that memory does not hold, a state machine applies the rest of the
// log exactly as one whose state DB is intact, and writes the same bytes. Reading an
// account, an idempotency record, the expiry index, the head or the applied index from
// Pebble would fail to decode, or find the planted records and decide differently.
func TestCommandPathReadsNoStateDB(t *testing.T) {
	t.Parallel()
	logs := scriptEntries(t)
	last := logs[len(logs)-1]
	var lastBatch chronicle.Batch
	if _, payload, err := chronicle.DecodeEntry(last.Data); err != nil {
		t.Fatal(err)
	} else if err := lastBatch.UnmarshalBinary(payload); err != nil {
		t.Fatal(err)
	}
	at := lastBatch.Time.Add(time.Minute)
	// A command whose key a planted record claims, with the same body: a state machine
	// reading Pebble would answer it as a replay.
	planted := cmdDeposit("acc-3", "4.00")
	planted.IdempotencyKey = "planted"
	extra := []*raft.Log{
		commandEntry(t, last.Index+1, at, time.Minute, cmdTransfer("acc-2", "ghost", "1.00"), planted),
		commandEntry(t, last.Index+2, at.Add(time.Second), time.Minute, cmdDeposit("ghost", "1.00"), cmdCreate("fresh", "USD", "3.00", "")),
	}
	logs = append(logs, extra...)
	split := len(logs) / 2

	ref, f := newBareFSM(t), newBareFSM(t)
	applyScript(t, ref, logs[:split], 1)
	applyScript(t, f, logs[:split], 1)
	before := dumpFSM(t, f)
	garbage := bytes.Repeat([]byte{0xee}, 7)
	b := f.db.NewBatch()
	for _, e := range before {
		if err := b.Set(e.k, garbage, nil); err != nil {
			t.Fatal(err)
		}
	}
	ghost, err := chronicle.Account{ID: "ghost", Currency: "USD", Status: chronicle.StatusActive, Balance: 500, CreatedAt: at, LastUpdated: at, Version: 1}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rec := chronicle.IdempotencyRecord{Key: "planted", Fingerprint: planted.Fingerprint(), CommitTime: at.Add(-time.Second), Position: 1, Count: 1}
	recBytes, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	old := chronicle.IdempotencyRecord{Key: "planted-old", Fingerprint: "x", CommitTime: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), Position: 1, Count: 1}
	oldBytes, err := old.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	plantedKeys := map[string][]byte{
		string(accountKey("ghost")):                          ghost,
		string(idemKey("planted")):                           recBytes,
		string(idemExpiryKey(rec.CommitTime, "planted")):     nil,
		string(idemKey("planted-old")):                       oldBytes,
		string(idemExpiryKey(old.CommitTime, "planted-old")): nil, // long expired: a Pebble scan would purge it
	}
	for k, v := range plantedKeys {
		if err := b.Set([]byte(k), v, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}

	want := applyScript(t, ref, logs[split:], 1, 5, 2)
	got := applyScript(t, f, logs[split:], 1, 5, 2)
	if err := f.failed(); err != nil {
		t.Fatalf("the state machine stopped: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d responses, want %d", len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("response %d: %d results, want %d", i, len(got[i]), len(want[i]))
		}
		for j, w := range want[i] {
			g := got[i][j]
			if (g.Err == nil) != (w.Err == nil) || g.Err != nil && g.Err.Code != w.Err.Code || g.Replayed != w.Replayed ||
				g.Position != w.Position || !g.CommitTime.Equal(w.CommitTime) || g.EventCount != w.EventCount || len(g.Events) != len(w.Events) {
				t.Fatalf("response %d result %d: %+v, want %+v", i, j, g, w)
			}
			for k := range w.Events {
				if g.Events[k].Hash != w.Events[k].Hash {
					t.Fatalf("response %d result %d event %d: hash %s, want %s", i, j, k, g.Events[k].Hash, w.Events[k].Hash)
				}
			}
		}
	}
	// The extra entries did what memory says, not what the planted records say.
	ext := want[len(want)-2:]
	if r := ext[0]; r[0].Err == nil || r[0].Err.Code != chronicle.CodeAccountNotFound || r[1].Err != nil || r[1].Replayed ||
		ext[1][0].Err == nil || ext[1][1].Err != nil {
		t.Fatalf("extra entries: %+v", ext)
	}

	// Every key: written alike, or left alone (garbage here, unchanged there).
	wasBefore := map[string][]byte{}
	for _, e := range before {
		wasBefore[string(e.k)] = e.v
	}
	gotKV := map[string][]byte{}
	for _, e := range dumpFSM(t, f) {
		gotKV[string(e.k)] = e.v
	}
	for _, e := range dumpFSM(t, ref) {
		g, ok := gotKV[string(e.k)]
		delete(gotKV, string(e.k))
		delete(plantedKeys, string(e.k)) // written by the log itself (the planted key)
		switch {
		case !ok:
			t.Fatalf("key %q is missing", e.k)
		case bytes.Equal(g, e.v):
		case bytes.Equal(g, garbage) && bytes.Equal(wasBefore[string(e.k)], e.v):
		default:
			t.Fatalf("key %q: %x, want %x", e.k, g, e.v)
		}
	}
	for k := range gotKV {
		if _, ok := plantedKeys[k]; !ok {
			t.Fatalf("extra key %q", k)
		}
		delete(plantedKeys, k)
	}
	if len(plantedKeys) != 0 {
		t.Fatalf("planted keys deleted: %q", slices.Collect(maps.Keys(plantedKeys)))
	}
	if _, ok := gotKV[string(idemExpiryKey(old.CommitTime, "planted-old"))]; !ok {
		t.Fatalf("the planted, long expired key was purged: the purge scanned the state DB")
	}
	requireSameWorking(t, "tampered against intact", copyWorking(ref.mem), copyWorking(f.mem))
	requireMemoryMirrorsDB(t, "intact", ref)
}

// A failed apply leaves memory as it was, like the state DB it mirrors.
func TestFailedApplyLeavesMemory(t *testing.T) {
	t.Parallel()
	logs := scriptEntries(t)
	f := newBareFSM(t)
	applyScript(t, f, logs[:10], 1)
	mem, db := copyWorking(f.mem), dumpFSM(t, f)
	bad := &raft.Log{Index: 12, Term: 1, Type: raft.LogCommand, Data: []byte{0x7f, 0x01}}
	resp := f.ApplyBatch([]*raft.Log{logs[10], bad})
	if responseOf(t, resp[0]).err == nil || f.failed() == nil {
		t.Fatalf("a batch with a corrupt entry applied: %+v", resp)
	}
	requireSameWorking(t, "after a failed apply", mem, copyWorking(f.mem))
	requireSameState(t, db, dumpFSM(t, f))
}

// The working state equals the state DB after a concurrent workload with idempotency
// keys that expire and are reused, after a restart (loaded, then the log replayed on
// top), and after a snapshot is restored into a new node and into a lagging one.
func TestWorkingStateMirrorsStateDB(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, func(c *Config) { c.IdempotencyWindow = 20 * time.Millisecond })
	s := env.open()
	runWorkload(t, s, 4, 25, 5)
	runKeyedWorkload(t, s, 4, 60, 6)
	waitAllApplied(t, s)
	requireMemoryMirrorsDB(t, "after the workload", s.fsm)
	mem := copyWorking(s.fsm.mem)
	if len(mem.keys) == 0 || len(mem.expiry) == 0 {
		t.Fatalf("workload left %d keys, %d expiry entries", len(mem.keys), len(mem.expiry))
	}
	closeStore(t, s)

	s = env.open()
	// Loaded from the state DB at open, before Raft replays anything.
	waitAllApplied(t, s)
	requireMemoryMirrorsDB(t, "after a restart", s.fsm)
	requireSameWorking(t, "after a restart", mem, copyWorking(s.fsm.mem))
	runKeyedWorkload(t, s, 2, 30, 7)
	waitAllApplied(t, s)
	requireMemoryMirrorsDB(t, "after more commands", s.fsm)

	data, _, hdr := persist(t, s.fsm)
	fresh := newBareFSM(t)
	if err := restore(fresh, data); err != nil {
		t.Fatalf("restore: %v", err)
	}
	requireMemoryMirrorsDB(t, "restored into a new node", fresh)
	requireSameWorking(t, "restored into a new node", copyWorking(s.fsm.mem), copyWorking(fresh.mem))

	// A lagging node holds accounts and keys the snapshot does not: none may survive.
	lag := newBareFSM(t)
	applyScript(t, lag, scriptEntries(t)[:8], 1)
	if err := restore(lag, data); err != nil {
		t.Fatalf("restore: %v", err)
	}
	requireMemoryMirrorsDB(t, "restored into a lagging node", lag)
	requireSameWorking(t, "restored into a lagging node", copyWorking(s.fsm.mem), copyWorking(lag.mem))

	// And the restored node goes on from there.
	next := commandEntry(t, hdr.Applied+1, hdr.Head.CommitTime.Add(time.Second), time.Minute,
		cmdTransfer("acc-1", "acc-10", "0.01"), cmdDeposit("usd-0-0", "1.00"))
	next.Data = slices.Clone(next.Data)
	for _, f := range []*fsm{fresh, lag} {
		if r := responseOf(t, f.ApplyBatch([]*raft.Log{next})[0]); r.err != nil {
			t.Fatalf("apply after restore: %v", r.err)
		}
		requireMemoryMirrorsDB(t, "applied after a restore", f)
	}
}

// runKeyedWorkload sends commands with idempotency keys from a small pool from several
// goroutines: replays (same key, same body), mismatches, and, as the window is short in
// commit time, keys that expire and are reused.
func runKeyedWorkload(t *testing.T, s *Store, workers, steps int, seed uint64) {
	t.Helper()
	ids := []string{"usd-0-0", "usd-0-1", "usd-1-0", "usd-1-1", "acc-1", "acc-10"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range steps {
				n := rng.IntN(12)
				// Mostly the key's own body (a replay, or a new effect once expired),
				// sometimes another (a mismatch while the key lives).
				c := cmdDeposit(ids[n%len(ids)], fmt.Sprintf("0.%02d", 1+n))
				if rng.IntN(4) == 0 {
					c = cmdTransfer(ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))], "0.01")
				}
				c.IdempotencyKey = fmt.Sprintf("k-%d", n)
				res, err := tryExec(s, c)
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				mu.Lock()
				switch r := res[0]; {
				case r.Replayed:
					counts["replayed"]++
				case r.Err != nil:
					counts[r.Err.Code]++
				default:
					counts["applied"]++
				}
				mu.Unlock()
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("keyed workload: %v", counts)
}

// Store.Account answers from memory and sees every acknowledged command.
func TestAccountReadsMemory(t *testing.T) {
	t.Parallel()
	env := newLedgerEnv(t, nil)
	s := env.open()
	mustOK(t, s, cmdCreate("alice", "USD", "10.00", ""))
	for i := range 20 {
		mustOK(t, s, cmdDeposit("alice", "1.00"))
		a, err := s.Account(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(1000 + 100*(i+1)); a.Balance != want {
			t.Fatalf("balance %d after an acknowledged deposit, want %d", a.Balance, want)
		}
	}
}

// The same from Pebble's side: with everything flushed to tables before each entry (so
// that no read can be answered by a memtable unseen), applying the entry touches no
// block, as Pebble's block cache counts hits and misses. A control read shows the count
// sees a point read.
func TestCommandPathTouchesNoBlocks(t *testing.T) {
	t.Parallel()
	db, err := pebble.Open(t.TempDir(), &pebble.Options{FormatMajorVersion: pebbleutil.FormatMajorVersion,
		// Nothing but the state machine may read a block while the test counts; without
		// compactions, a flush per entry must not stall writes.
		DisableAutomaticCompactions: true, DisableTableStats: true, L0StopWritesThreshold: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ev, err := pebble.Open(t.TempDir(), &pebble.Options{FormatMajorVersion: pebbleutil.FormatMajorVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	f, err := newFSM(slog.New(slog.NewTextHandler(io.Discard, nil)), db, ev, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := scriptEntries(t)
	split := len(logs) / 3
	applyScript(t, f, logs[:split], 1)
	blocks := func() int64 {
		m := db.Metrics()
		return m.BlockCache.Hits + m.BlockCache.Misses
	}
	for _, l := range logs[split:] {
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
		before := blocks()
		applyScript(t, f, []*raft.Log{l}, 1)
		if n := blocks() - before; n != 0 {
			t.Fatalf("entry %d: the state machine touched %d blocks of the state DB", l.Index, n)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	before := blocks()
	if _, ok, err := (reader{r: db}).Account("acc-1"); err != nil || !ok {
		t.Fatalf("control read: %v %v", ok, err)
	}
	if blocks() == before {
		t.Fatal("a point read of the state DB touched no block: the count proves nothing")
	}
	requireMemoryMirrorsDB(t, "after the entries", f)
}

// BenchmarkLoadWorking measures the start-up load of the working state from a compacted
// state DB: 100,000 accounts, 100,000 idempotency records (with their expiry entries),
// and both; and the heap it holds afterwards per account or record.
func BenchmarkLoadWorking(b *testing.B) {
	for _, n := range []struct{ accounts, keys int }{{100_000, 0}, {0, 100_000}, {100_000, 100_000}} {
		b.Run(fmt.Sprintf("accounts=%d/keys=%d", n.accounts, n.keys), func(b *testing.B) { benchmarkLoad(b, n.accounts, n.keys) })
	}
}

func benchmarkLoad(b *testing.B, accounts, keys int) {
	db, err := pebble.Open(b.TempDir(), &pebble.Options{FormatMajorVersion: pebbleutil.FormatMajorVersion,
		Logger: pebbleutil.Logger(slog.New(slog.NewTextHandler(io.Discard, nil)), "pebble")})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	batch := db.NewBatch()
	for i := range accounts {
		a := chronicle.Account{ID: fmt.Sprintf("customer-%07d", i), OwnerName: fmt.Sprintf("Owner %d", i), Currency: "USD",
			Balance: int64(i) * 100, Status: chronicle.StatusActive, CreatedAt: at, LastUpdated: at.Add(time.Duration(i)), Version: uint64(i%50 + 1)}
		if err := setBinary(batch, accountKey(a.ID), a); err != nil {
			b.Fatal(err)
		}
	}
	for i := range keys {
		r := chronicle.IdempotencyRecord{Key: chronicle.NewID(), Fingerprint: fmt.Sprintf("%064x", i), CommitTime: at.Add(time.Duration(i) * time.Millisecond),
			Position: uint64(i + 1), Count: 2}
		if err := setBinary(batch, idemKey(r.Key), r); err != nil {
			b.Fatal(err)
		}
		if err := batch.Set(idemExpiryKey(r.CommitTime, r.Key), nil, nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := setBinary(batch, metaKey(metaHead), chronicle.Head{Position: 1, Hash: chronicle.GenesisHash, CommitTime: at}); err != nil {
		b.Fatal(err)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		b.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	var heap int64
	b.ResetTimer()
	for range b.N {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		w, err := loadWorking(db)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		if w.accounts.len() != accounts || len(w.keys) != keys || len(w.expiry) != keys {
			b.Fatalf("loaded %d accounts, %d keys, %d expiry entries", w.accounts.len(), len(w.keys), len(w.expiry))
		}
		heap = int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
		runtime.KeepAlive(w)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/float64(accounts+keys), "heap-B/item")
}
