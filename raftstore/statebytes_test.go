package raftstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
)

// scriptEntries is a fixed log: every entry kind, refusals, idempotent replays (within one
// entry too), key mismatches, keys that expire and are reused, a window of zero, and a
// purge larger than one entry may do. Command ids and times are fixed, so the state DB it
// produces is the same on every run.
func scriptEntries(t testing.TB) []*raft.Log {
	t.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var logs []*raft.Log
	next := func() uint64 { return uint64(len(logs) + 1) }
	add := func(at time.Time, window time.Duration, cmds ...chronicle.Command) {
		for i := range cmds {
			cmds[i].ID = fmt.Sprintf("cmd-%d-%d", next(), i)
		}
		payload, err := chronicle.Batch{Time: at, IdempotencyWindow: window, Commands: cmds}.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: next(), Term: 1, Type: raft.LogCommand,
			Data: chronicle.EncodeEntry(chronicle.EntryCommandBatch, payload)})
	}
	addKind := func(kind chronicle.EntryKind, m interface{ MarshalBinary() ([]byte, error) }) {
		payload, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: next(), Term: 1, Type: raft.LogCommand, Data: chronicle.EncodeEntry(kind, payload)})
	}
	const window = time.Minute
	var creates []chronicle.Command
	var ids []string
	for i := range 10 {
		id := fmt.Sprintf("acc-%d", i)
		ids = append(ids, id)
		overdraft := ""
		if i == 9 {
			overdraft = "20.00"
		}
		creates = append(creates, cmdCreate(id, "USD", "1000.00", overdraft))
	}
	creates = append(creates, cmdCreate("yen", "JPY", "5000", ""), cmdCreate("acc-1", "USD", "", "")) // the last one is refused
	add(t0, window, creates...)
	addKind(chronicle.EntryToken, chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: "bootstrap", Role: chronicle.RoleAdmin,
		Hash: chronicle.HashToken("s1"), At: t0, By: "test", IfNone: true})
	addKind(chronicle.EntryNodeMeta, NodeMeta{ID: "n1", APIURL: "http://127.0.0.1:1"})
	logs = append(logs, &raft.Log{Index: next(), Term: 1, Type: raft.LogNoop})

	rng := rand.New(rand.NewPCG(7, 11))
	amounts := []string{"1.00", "2.00", "3.00"}
	lastWith := map[string]chronicle.Command{}
	for step := range 80 {
		at := t0.Add(time.Duration(step+1) * 10 * time.Second)
		var cmds []chronicle.Command
		for range 1 + rng.IntN(5) {
			a, b := ids[rng.IntN(len(ids))], ids[rng.IntN(len(ids))]
			var c chronicle.Command
			switch p := rng.IntN(10); {
			case p < 3:
				c = cmdDeposit(a, amounts[rng.IntN(len(amounts))])
			case p < 5:
				c = cmdWithdraw(a, amounts[rng.IntN(len(amounts))])
			case p < 9:
				c = cmdTransfer(a, b, amounts[rng.IntN(len(amounts))])
			default:
				c = cmdWithdraw(a, "99999.00") // refused
			}
			if rng.IntN(3) > 0 {
				c.IdempotencyKey = fmt.Sprintf("key-%d", rng.IntN(15))
				if prev, ok := lastWith[c.IdempotencyKey]; ok && rng.IntN(2) == 0 {
					c = prev // the same body again: a replay, or a new effect once expired
				}
				lastWith[c.IdempotencyKey] = c
			}
			cmds = append(cmds, c)
		}
		w := window
		if step == 40 {
			w = 0 // keys kept forever: no purge in this entry
		}
		add(at, w, cmds...)
		if step == 20 {
			addKind(chronicle.EntryToken, chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: "writer-1", Role: chronicle.RoleWriter,
				Hash: chronicle.HashToken("s2"), At: at, By: "test"})
			addKind(chronicle.EntryToken, chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: "bootstrap-2", Role: chronicle.RoleAdmin,
				Hash: chronicle.HashToken("s3"), At: at, By: "test", IfNone: true}) // a no-op: tokens exist
		}
	}
	// More keys than one entry may purge, then entries far enough on to expire them all.
	bulkAt := t0.Add(time.Hour)
	var bulk []chronicle.Command
	for i := range 2500 {
		c := cmdDeposit(ids[i%len(ids)], "0.01")
		c.IdempotencyKey = fmt.Sprintf("bulk-%04d", i)
		bulk = append(bulk, c)
	}
	replay := bulk[7]
	bulk = append(bulk, replay) // the same key and body in the same entry: a replay
	add(bulkAt, window, bulk...)
	// Two entries purge 2,048 of the bulk keys; the reuse of bulk-2499 (expired, a new
	// effect) leaves its old expiry entry behind, pointing at a record that is no longer
	// its own.
	for i, key := range []string{"bulk-2499", "bulk-0000"} {
		c := cmdDeposit("acc-0", "0.02")
		c.IdempotencyKey = key
		add(bulkAt.Add(2*window+time.Duration(i)*time.Second), window, c)
	}
	return logs
}

// applyScript applies logs to f in calls of the given sizes (cycled), checking that no
// entry fails.
func applyScript(t *testing.T, f *fsm, logs []*raft.Log, sizes ...int) [][]chronicle.Result {
	t.Helper()
	var out [][]chronicle.Result
	for i, n := 0, 0; i < len(logs); n++ {
		size := min(sizes[n%len(sizes)], len(logs)-i)
		for _, r := range f.ApplyBatch(logs[i : i+size]) {
			if r == nil {
				continue // not a command entry
			}
			resp := responseOf(t, r)
			if resp.err != nil {
				t.Fatalf("apply: %v", resp.err)
			}
			out = append(out, resp.results)
		}
		i += size
	}
	return out
}

func dumpDigest(kvs []kv) string {
	h := sha256.New()
	for _, e := range kvs {
		fmt.Fprintf(h, "%d:%x=%d:%x\n", len(e.k), e.k, len(e.v), e.v)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// scriptDigest is the digest of the state DB the script leaves: a change of what is
// stored changes it. It was e1472a89… from when the state machine read the state DB
// itself until data format 3 (the working state moved into memory without changing a
// byte); data format 4 changed the stream and type indexes, and TestDataDirFormat3Migrates
// shows that upgrading a format-3 state gives exactly what this build writes.
const scriptDigest = "91019b735784ab9ec78a4bc720e23cc86a7dfbc995422e557f68caede93f5d40"

func TestStateDBBytesUnchanged(t *testing.T) {
	t.Parallel()
	logs := scriptEntries(t)
	one := newBareFSM(t)
	results := applyScript(t, one, logs, 1)
	want := dumpFSM(t, one)
	// The script covers what it claims to.
	var replayed, mismatched, refused, keys, expiry int
	for _, rs := range results {
		for _, r := range rs {
			switch {
			case r.Replayed:
				replayed++
			case r.Err != nil && r.Err.Code == chronicle.CodeIdempotencyMismatch:
				mismatched++
			case r.Err != nil:
				refused++
			}
		}
	}
	for _, e := range want {
		switch e.k[0] {
		case prefixIdem:
			keys++
		case prefixIdemExpiry:
			expiry++
		}
	}
	// 2,500 bulk keys expire and at most 1,024 go per entry: some stay.
	if replayed < 5 || mismatched < 5 || refused < 5 || keys == 0 || keys > 2000 || expiry <= keys {
		t.Fatalf("script is thin: %d replayed, %d mismatched, %d refused, %d keys and %d expiry entries left",
			replayed, mismatched, refused, keys, expiry)
	}
	t.Logf("%d replayed, %d mismatched, %d refused, %d keys and %d expiry entries left", replayed, mismatched, refused, keys, expiry)
	if got := dumpDigest(want); got != scriptDigest {
		t.Errorf("state DB digest %s, want %s", got, scriptDigest)
	}
	// However Raft groups the entries, the bytes are the same.
	grouped := newBareFSM(t)
	applyScript(t, grouped, logs, 3, 1, 17, 2, 64)
	requireSameState(t, want, dumpFSM(t, grouped))
}
