package storetest_test

import (
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/storetest"
)

// The reference store passes the suite: the suite asks nothing the domain cannot give.
// A restart keeps the memory (a new handle on it), and Extra handles share it as
// processes share a database.
func TestMemStoreConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		Open: func(*testing.T) chronicle.EventStore { return storetest.NewMemStore() },
		Reopen: func(_ *testing.T, s chronicle.EventStore) chronicle.EventStore {
			return s.(*storetest.MemStore).Attach()
		},
		Extra: func(_ *testing.T, s chronicle.EventStore, n int) []chronicle.EventStore {
			out := make([]chronicle.EventStore, n)
			for i := range out {
				out[i] = s.(*storetest.MemStore).Attach()
			}
			return out
		},
	})
}
