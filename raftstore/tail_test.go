package raftstore

import (
	"bytes"
	"sync"
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
	if len(c.entries) > 2*tailCacheSize || c.entries[len(c.entries)-1].ev.Position != 102+3*tailCacheSize {
		t.Fatalf("cache holds %d events ending at %d", len(c.entries), c.entries[len(c.entries)-1].ev.Position)
	}
	first := c.entries[0].ev.Position
	if _, ok := c.after(first-2, 1); ok {
		t.Fatal("evicted positions still claimed")
	}
	if got, ok := c.after(first-1, 1); !ok || got[0].Position != first {
		t.Fatalf("after(first-1) = %v, %v", positions(got), ok)
	}
}

// TestTailCacheEncodedOnce: readers asking for the JSON of cached events get
// AppendJSON's bytes, the same bytes for every reader, however many ask at once; the
// state machine's add encodes nothing.
func TestTailCacheEncodedOnce(t *testing.T) {
	var c tailCache
	c.add(chronicle.Head{Position: 200}, evs(1, 200))
	for _, e := range c.entries {
		if e.json != nil {
			t.Fatal("add encoded an event")
		}
	}
	const readers = 8
	got := make([][]chronicle.EncodedEvent, readers)
	var wg sync.WaitGroup
	for r := range readers {
		wg.Go(func() {
			for pos := uint64(0); pos < 200; pos += 50 {
				page, ok := c.afterEncoded(pos, 50)
				if !ok || len(page) != 50 {
					t.Errorf("afterEncoded(%d) = %d events, %v", pos, len(page), ok)
					return
				}
				got[r] = append(got[r], page...)
			}
		})
	}
	wg.Wait()
	for i, e := range got[0] {
		if want := e.Event.AppendJSON(nil); !bytes.Equal(e.JSON, want) {
			t.Fatalf("position %d: JSON %s, want %s", e.Event.Position, e.JSON, want)
		}
		for r := 1; r < readers; r++ {
			if &got[r][i].JSON[0] != &e.JSON[0] {
				t.Fatalf("position %d: reader %d got its own copy of the JSON", e.Event.Position, r)
			}
		}
	}
	// A span handed out stays intact when the cache starts over.
	page, _ := c.afterEncoded(100, 10)
	c.add(chronicle.Head{Position: 1000}, evs(990, 1000))
	if positions(eventsOf(page))[0] != 101 || page[9].Event.Position != 110 {
		t.Fatalf("page changed under its reader: %v", positions(eventsOf(page)))
	}
	if got, ok := c.afterEncoded(1000, 5); !ok || len(got) != 0 || got == nil {
		t.Fatalf("afterEncoded(head) = %v, %v; want empty, covered", got, ok)
	}
}

func eventsOf(es []chronicle.EncodedEvent) []chronicle.Event {
	out := make([]chronicle.Event, len(es))
	for i := range es {
		out[i] = es[i].Event
	}
	return out
}
