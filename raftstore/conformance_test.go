package raftstore_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/freeport"
	"github.com/chronicle-ledger/chronicle/raftstore"
	"github.com/chronicle-ledger/chronicle/storetest"
)

// TestConformance runs the store suite against a real one-node Raft on Pebble. A
// restart closes the store and opens its directory again on the same Raft address; one
// node owns its directory, so there are no Extra stores.
func TestConformance(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	cfgs := map[chronicle.EventStore]raftstore.Config{} // each open store's config, for Reopen
	open := func(t *testing.T, cfg raftstore.Config) chronicle.EventStore {
		t.Helper()
		s := openLeader(t, cfg)
		mu.Lock()
		defer mu.Unlock()
		cfgs[s] = cfg
		return s
	}
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) chronicle.EventStore {
			return open(t, raftstore.Config{DataDir: t.TempDir(), NodeID: "n1", RaftAddr: freeAddr(t), Bootstrap: true,
				Logger: testLogger(t)})
		},
		Reopen: func(t *testing.T, s chronicle.EventStore) chronicle.EventStore {
			mu.Lock()
			cfg, ok := cfgs[s]
			delete(cfgs, s)
			mu.Unlock()
			if !ok {
				t.Fatalf("Reopen of a store this harness did not open")
			}
			if err := s.(*raftstore.Store).Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return open(t, cfg)
		},
	})
}

// openLeader opens a store, closes it when t ends, and returns once it leads and has
// applied everything its log holds (after a restart, Raft re-applies the tail first).
func openLeader(t *testing.T, cfg raftstore.Config) *raftstore.Store {
	t.Helper()
	s, err := raftstore.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	if err := s.WaitReady(ctx); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	if !s.IsLeader() {
		t.Fatalf("a one-node cluster's only node is ready but does not lead")
	}
	return s
}

// freeAddr returns a loopback address with a port free a moment ago, so that a restart
// can listen on the address the Raft configuration recorded.
func freeAddr(t *testing.T) string { return freeport.Addr(t) }

// testLogger keeps a store's log and shows its end when t fails.
func testLogger(t *testing.T) *slog.Logger {
	var mu sync.Mutex
	var b strings.Builder
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if out := b.String(); t.Failed() {
			t.Logf("store log (end):\n%s", out[max(0, len(out)-20000):])
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &b}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
