package raftstore

import (
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

func evs(from, to uint64) []chronicle.Event {
	var out []chronicle.Event
	for p := from; p <= to; p++ {
		out = append(out, chronicle.Event{Position: p})
	}
	return out
}

func positions(es []chronicle.Event) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.Position)
	}
	return out
}

func TestTailCache(t *testing.T) {
	var c tailCache
	if _, ok := c.after(0, 10); ok {
		t.Fatal("empty cache claims to cover the log")
	}
	c.add(chronicle.Head{Position: 5}, evs(1, 5))
	c.add(chronicle.Head{Position: 9}, evs(6, 9))
	got, ok := c.after(3, 4)
	if !ok || len(got) != 4 || got[0].Position != 4 || got[3].Position != 7 {
		t.Fatalf("after(3,4) = %v, %v", positions(got), ok)
	}
	if got, ok := c.after(9, 10); !ok || len(got) != 0 {
		t.Fatalf("after(head) = %v, %v; want empty, covered", positions(got), ok)
	}
	if got, ok := c.after(0, 100); !ok || len(got) != 9 {
		t.Fatalf("after(0) = %v, %v", positions(got), ok)
	}
	// A restore replaces the log: the cache no longer covers anything before new events.
	c.add(chronicle.Head{Position: 100}, nil)
	if _, ok := c.after(9, 10); ok {
		t.Fatal("cache covers positions after a restore replaced the log")
	}
	if got, ok := c.after(100, 10); !ok || len(got) != 0 {
		t.Fatalf("after(restored head) = %v, %v", positions(got), ok)
	}
	c.add(chronicle.Head{Position: 102}, evs(101, 102))
	if got, ok := c.after(100, 10); !ok || len(got) != 2 {
		t.Fatalf("after restore: %v, %v", positions(got), ok)
	}
	if _, ok := c.after(50, 10); ok {
		t.Fatal("cache claims positions it never held")
	}
	// Eviction keeps the newest tailCacheSize events, contiguous.
	c.add(chronicle.Head{Position: 102 + 3*tailCacheSize}, evs(103, 102+3*tailCacheSize))
	if len(c.events) > 2*tailCacheSize || c.events[len(c.events)-1].Position != 102+3*tailCacheSize {
		t.Fatalf("cache holds %d events ending at %d", len(c.events), c.events[len(c.events)-1].Position)
	}
	first := c.events[0].Position
	if _, ok := c.after(first-2, 1); ok {
		t.Fatal("evicted positions still claimed")
	}
	if got, ok := c.after(first-1, 1); !ok || got[0].Position != first {
		t.Fatalf("after(first-1) = %v, %v", positions(got), ok)
	}
}
