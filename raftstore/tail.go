package raftstore

import (
	"sync"

	"github.com/chronicle-ledger/chronicle"
)

// tailCacheSize is how many of the newest events are kept in memory.
const tailCacheSize = 16384

// tailCache holds the newest events, contiguous by position, so that readers following
// the head (projector, publisher, SSE) skip Pebble and JSON decoding. Events in it are
// shared: callers must not modify them.
type tailCache struct {
	mu     sync.RWMutex
	events []chronicle.Event // positions first..first+len-1
	head   uint64            // the log's head when last told
}

// add appends newly applied events; nil events (a restore) empty the cache.
func (c *tailCache) add(h chronicle.Head, events []chronicle.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if events == nil && h.Position != c.head {
		c.events, c.head = nil, h.Position
		return
	}
	for _, e := range events {
		if n := len(c.events); n > 0 && c.events[n-1].Position+1 != e.Position {
			c.events = c.events[:0] // not contiguous: start over from here
		}
		c.events = append(c.events, e)
	}
	if len(c.events) > 2*tailCacheSize {
		c.events = append([]chronicle.Event(nil), c.events[len(c.events)-tailCacheSize:]...)
	}
	c.head = h.Position
}

// after returns up to limit events after position pos when the cache covers them (or
// when pos is the head: then there is nothing after it).
func (c *tailCache) after(pos uint64, limit int) ([]chronicle.Event, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if pos == c.head && c.head > 0 {
		return []chronicle.Event{}, true
	}
	if len(c.events) == 0 {
		return nil, false
	}
	first := c.events[0].Position
	last := c.events[len(c.events)-1].Position
	if pos+1 < first || pos >= last || last != c.head {
		return nil, false
	}
	i := int(pos + 1 - first)
	j := min(i+limit, len(c.events))
	return append([]chronicle.Event(nil), c.events[i:j]...), true
}
