package raftstore

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/hashicorp/raft"
)

// BenchmarkApplyTransfers is the state machine's write path as a node at c=64 runs it:
// ApplyBatch calls of 4 entries of 16 transfers each between 1000 accounts, staged into
// one Pebble batch and committed to the state DB's memtable. Entries are built before the
// timer starts. It reports transfers per second of apply.
func BenchmarkApplyTransfers(b *testing.B) {
	const accounts, perEntry, perCall = 1000, 16, 4
	f := newBareFSM(b)
	at := time.Unix(1_700_000_000, 0).UTC()
	index := uint64(1)
	for i := 0; i < accounts; i += 100 {
		var cmds []chronicle.Command
		for j := i; j < i+100; j++ {
			cmds = append(cmds, cmdCreate(fmt.Sprintf("acc-%04d", j), "USD", "1000000.00", ""))
		}
		for _, r := range f.ApplyBatch([]*raft.Log{batchEntry(b, index, at, cmds...)}) {
			if err := r.(applyResponse).err; err != nil {
				b.Fatal(err)
			}
		}
		index++
	}
	rng := rand.New(rand.NewPCG(1, 2))
	calls := make([][]*raft.Log, b.N)
	for i := range calls {
		for range perCall {
			at = at.Add(time.Millisecond)
			cmds := make([]chronicle.Command, perEntry)
			for k := range cmds {
				from := rng.IntN(accounts)
				to := (from + 1 + rng.IntN(accounts-1)) % accounts
				cmds[k] = chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: fmt.Sprintf("acc-%04d", from),
					ToAccountID: fmt.Sprintf("acc-%04d", to), Amount: "1.00"}
			}
			calls[i] = append(calls[i], batchEntry(b, index, at, cmds...))
			index++
		}
	}
	b.ResetTimer()
	for i := range calls {
		for _, r := range f.ApplyBatch(calls[i]) {
			if err := r.(applyResponse).err; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*perCall*perEntry)/b.Elapsed().Seconds(), "transfers/s")
}
