package sqlstore

import (
	"sync"
	"testing"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pgtest"
	"github.com/chronicle-ledger/chronicle/storetest"
)

// TestConformance runs the store suite against sqlstore on PostgreSQL at SERIALIZABLE:
// each subtest gets a schema of its own; a restart closes the store and opens the schema
// again; Extra stores are further stores on the same schema, as other processes on one
// database would be.
func TestConformance(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	urls := map[chronicle.EventStore]string{}
	open := func(t *testing.T, url string) chronicle.EventStore {
		s := openStore(t, url, nil)
		mu.Lock()
		defer mu.Unlock()
		urls[s] = url
		return s
	}
	urlOf := func(t *testing.T, s chronicle.EventStore) string {
		mu.Lock()
		defer mu.Unlock()
		u, ok := urls[s]
		if !ok {
			t.Fatal("store not opened by this harness")
		}
		return u
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) chronicle.EventStore { return open(t, pgtest.Schema(t)) },
		Reopen: func(t *testing.T, s chronicle.EventStore) chronicle.EventStore {
			url := urlOf(t, s)
			if err := s.(*Store).Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			return open(t, url)
		},
		Extra: func(t *testing.T, s chronicle.EventStore, n int) []chronicle.EventStore {
			url := urlOf(t, s)
			out := make([]chronicle.EventStore, n)
			for i := range out {
				out[i] = open(t, url)
			}
			return out
		},
	})
}
