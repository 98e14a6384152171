package raftlog

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	"pgregory.net/rapid"
)

// TestSegmentStoreModel runs random StoreLogs, DeleteRange (prefix, suffix,
// everything), stable sets and reopens against a SegmentStore with tiny
// segments and compares every read with a model: a contiguous run of
// indexes whose terms are tracked, and a map of stable values.
func TestSegmentStoreModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		opts := SegmentOptions{SegmentSize: int64(rapid.IntRange(200, 2000).Draw(rt, "segSize"))}
		s, err := OpenSegmentStore(dir, opts, nil)
		if err != nil {
			rt.Fatalf("open: %v", err)
		}
		defer func() { _ = s.Close() }()

		var first, last uint64 // 0, 0 when empty
		terms := map[uint64]uint64{}
		stable := map[string]uint64{}
		term := uint64(1)

		entry := func(i uint64) *raft.Log {
			l := testLog(i)
			l.Term = terms[i]
			return l
		}
		check := func(rt *rapid.T) {
			f, _ := s.FirstIndex()
			l, _ := s.LastIndex()
			if f != first || l != last {
				rt.Fatalf("bounds %d..%d, model %d..%d", f, l, first, last)
			}
			if last == 0 {
				return
			}
			for _, i := range []uint64{first, last, first + (last-first)/2, rapid.Uint64Range(first, last).Draw(rt, "probe")} {
				var got raft.Log
				if err := s.GetLog(i, &got); err != nil {
					rt.Fatalf("GetLog(%d): %v", i, err)
				}
				if want := entry(i); got.Term != want.Term || string(got.Data) != string(want.Data) {
					rt.Fatalf("GetLog(%d) term %d, want %d", i, got.Term, want.Term)
				}
			}
			for _, i := range []uint64{first - 1, last + 1} {
				if err := s.GetLog(i, new(raft.Log)); !errors.Is(err, raft.ErrLogNotFound) {
					rt.Fatalf("GetLog(%d) outside %d..%d: %v", i, first, last, err)
				}
			}
			for k, v := range stable {
				if got, err := s.GetUint64([]byte(k)); err != nil || got != v {
					rt.Fatalf("GetUint64(%s) = %d, %v; want %d", k, got, err, v)
				}
			}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"store": func(rt *rapid.T) {
				lo := last + 1
				if last == 0 {
					lo = rapid.Uint64Range(1, 500).Draw(rt, "start")
				}
				n := rapid.Uint64Range(1, 12).Draw(rt, "n")
				term++
				for i := lo; i < lo+n; i++ {
					terms[i] = term
				}
				if err := s.StoreLogs(testLogsTerm(lo, lo+n-1, term)); err != nil {
					rt.Fatalf("StoreLogs: %v", err)
				}
				if last == 0 {
					first = lo
				}
				last = lo + n - 1
			},
			"deletePrefix": func(rt *rapid.T) {
				if last == 0 {
					rt.Skip("empty")
				}
				hi := rapid.Uint64Range(first, last+3).Draw(rt, "max")
				if err := s.DeleteRange(rapid.Uint64Range(0, first).Draw(rt, "min"), hi); err != nil {
					rt.Fatalf("DeleteRange prefix: %v", err)
				}
				if hi >= last {
					first, last = 0, 0
				} else {
					first = hi + 1
				}
			},
			"deleteSuffix": func(rt *rapid.T) {
				if last == 0 || first == last {
					rt.Skip("nothing to cut")
				}
				lo := rapid.Uint64Range(first+1, last).Draw(rt, "min")
				if err := s.DeleteRange(lo, last+rapid.Uint64Range(0, 5).Draw(rt, "over")); err != nil {
					rt.Fatalf("DeleteRange suffix: %v", err)
				}
				last = lo - 1
			},
			"set": func(rt *rapid.T) {
				k := rapid.SampledFrom([]string{"CurrentTerm", "LastVoteTerm"}).Draw(rt, "key")
				v := rapid.Uint64().Draw(rt, "val")
				if err := s.SetUint64([]byte(k), v); err != nil {
					rt.Fatalf("SetUint64: %v", err)
				}
				stable[k] = v
			},
			"reopen": func(rt *rapid.T) {
				if err := s.Close(); err != nil {
					rt.Fatalf("Close: %v", err)
				}
				if s, err = OpenSegmentStore(dir, opts, nil); err != nil {
					rt.Fatalf("reopen: %v", err)
				}
			},
			"": check,
		})
	})
}

func testLogsTerm(lo, hi, term uint64) []*raft.Log {
	logs := testLogs(lo, hi)
	for _, l := range logs {
		l.Term = term
	}
	return logs
}
