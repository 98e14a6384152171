package raftlog

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
)

// BenchmarkStoreLogs compares the stores (Pebble, segments, raft-wal) on
// synced appends of (a) one ~500-byte entry per call and (b) 16 entries of
// 16 KiB per call (group commit: few, large entries), and on GetLog of
// recent entries, as replication reads them.
//
//	go test ./raftlog -run x -bench StoreLogs -count 3 -benchtime 2s
func BenchmarkStoreLogs(b *testing.B) {
	shapes := []struct {
		name      string
		n, size   int
		getRecent bool
	}{
		{name: "1x500B", n: 1, size: 500},
		{name: "16x16KiB", n: 16, size: 16 << 10},
		{name: "GetLog-recent-16KiB", n: 16, size: 16 << 10, getRecent: true},
	}
	for _, sh := range shapes {
		for _, k := range storeKinds {
			b.Run(fmt.Sprintf("%s/%s", sh.name, k.name), func(b *testing.B) {
				s := k.open(b, b.TempDir())
				defer s.Close()
				data := make([]byte, sh.size)
				for i := range data {
					data[i] = byte(i * 7)
				}
				batch := make([]*raft.Log, sh.n)
				next := uint64(1)
				store := func() {
					for i := range batch {
						batch[i] = &raft.Log{Index: next, Term: 1, Type: raft.LogCommand, Data: data}
						next++
					}
					if err := s.StoreLogs(batch); err != nil {
						b.Fatalf("StoreLogs: %v", err)
					}
				}
				if sh.getRecent {
					for range 64 { // 1024 entries
						store()
					}
					var l raft.Log
					b.SetBytes(int64(sh.size))
					b.ResetTimer()
					for i := 0; b.Loop(); i++ {
						if err := s.GetLog(next-1-uint64(i%256), &l); err != nil {
							b.Fatalf("GetLog: %v", err)
						}
					}
					return
				}
				b.SetBytes(int64(sh.n * sh.size))
				b.ResetTimer()
				for b.Loop() {
					store()
				}
			})
		}
	}
}
