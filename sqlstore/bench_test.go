package sqlstore

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
)

// BenchmarkTransfers measures transfers through Execute, one command per call, from 1
// and 64 concurrent callers (group commit gathers the latter into shared transactions).
func BenchmarkTransfers(b *testing.B) {
	for _, conc := range []int{1, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			s := openStore(b, pgtest.Schema(b), nil)
			const accounts = 128
			setup := make([]chronicle.Command, accounts)
			for i := range setup {
				setup[i] = create(fmt.Sprintf("acc-%d", i), "USD", "1000000000")
			}
			if _, err := s.Execute(ctxT(b), setup); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := range conc {
				wg.Go(func() {
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						from, to := (int(i)+w)%accounts, (int(i)+w+1)%accounts
						c := transfer(fmt.Sprintf("acc-%d", from), fmt.Sprintf("acc-%d", to), "1")
						rs, err := s.Execute(ctxT(b), []chronicle.Command{c})
						if err != nil || rs[0].Err != nil {
							b.Errorf("transfer: %v %v", err, rs)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
		})
	}
}
