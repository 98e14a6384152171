package raftstore

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"
)

func openMemDB(t fataler) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

// TestKeyOrderMeansTheSame: committing keyOrder's copy leaves a DB exactly as committing
// the batch itself does, with operations on one key (sets and deletes, over keys already
// in the DB) in any order; and the copy's operations are in key order.
func TestKeyOrderMeansTheSame(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		plain, sorted := openMemDB(rt), openMemDB(rt)
		defer plain.Close()
		defer sorted.Close()
		var ops []batchOp
		for round := range rapid.IntRange(1, 3).Draw(rt, "rounds") {
			a, b := plain.NewBatch(), sorted.NewBatch()
			n := rapid.IntRange(0, 40).Draw(rt, "ops")
			for i := range n {
				key := fmt.Appendf(nil, "%c%d", rapid.SampledFrom([]byte("ahst")).Draw(rt, "prefix"), rapid.IntRange(0, 6).Draw(rt, "key"))
				if rapid.IntRange(0, 3).Draw(rt, "kind") == 0 {
					_ = a.Delete(key, nil)
					_ = b.Delete(key, nil)
					continue
				}
				val := fmt.Appendf(nil, "r%d-op%d", round, i)
				_ = a.Set(key, val, nil)
				_ = b.Set(key, val, nil)
			}
			c, err := keyOrder(sorted, b, &ops)
			if err != nil {
				rt.Fatalf("keyOrder: %v", err)
			}
			if c == b {
				rt.Fatalf("a batch of sets and deletes was not copied")
			}
			var prev []byte
			for r := c.Reader(); ; {
				_, k, _, ok, err := r.Next()
				if err != nil || !ok {
					break
				}
				if bytes.Compare(prev, k) > 0 {
					rt.Fatalf("copy not in key order: %q after %q", k, prev)
				}
				prev = k
			}
			if c.Count() != b.Count() {
				rt.Fatalf("copy holds %d operations, the batch %d", c.Count(), b.Count())
			}
			if err := a.Commit(pebble.NoSync); err != nil {
				rt.Fatal(err)
			}
			if err := c.Commit(pebble.NoSync); err != nil {
				rt.Fatal(err)
			}
			_, _, _ = a.Close(), b.Close(), c.Close()
			if want, got := dumpReader(rt, plain), dumpReader(rt, sorted); !slices.EqualFunc(want, got, func(x, y kv) bool {
				return bytes.Equal(x.k, y.k) && bytes.Equal(x.v, y.v)
			}) {
				rt.Fatalf("round %d: the sorted copy left\n%q\nthe batch itself\n%q", round, got, want)
			}
			if len(ops) != 0 {
				rt.Fatalf("scratch list kept %d operations (aliasing a closed batch)", len(ops))
			}
		}
	})
}

// TestKeyOrderLeavesRangeDeletes: a batch holding a range deletion comes back as it is,
// since moving the deletion past a set it covers would change what it deletes.
func TestKeyOrderLeavesRangeDeletes(t *testing.T) {
	db := openMemDB(t)
	defer db.Close()
	b := db.NewBatch()
	defer b.Close()
	_ = b.Set([]byte("z"), []byte("1"), nil)
	_ = b.DeleteRange([]byte("a"), []byte("zz"), nil)
	_ = b.Set([]byte("b"), []byte("2"), nil)
	var ops []batchOp
	c, err := keyOrder(db, b, &ops)
	if err != nil {
		t.Fatal(err)
	}
	if c != b {
		t.Fatalf("a batch with a range deletion was reordered")
	}
	if err := c.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	got := dumpReader(t, db)
	if len(got) != 1 || string(got[0].k) != "b" {
		t.Fatalf("after set z, delete [a,zz), set b: %q, want only b", got)
	}
}
