package raftstore

import (
	"sync"

	"github.com/chronicle-ledger/chronicle"
)

// tailCacheSize is how many of the newest events are kept in memory.
const tailCacheSize = 16384

// tailCache holds the newest events, contiguous by position, so that readers following
// the head (projector, publisher, SSE) skip Pebble and decoding, and the publisher and
// the SSE hub share one JSON encoding of each event. Events in it are shared: callers
// must not modify them.
type tailCache struct {
	mu      sync.RWMutex
	entries []*tailEntry // positions first..first+len-1
	head    uint64       // the log's head when last told
}

// tailEntry is one cached event and its JSON, encoded by the first reader that asks for
// it (never by the state machine, which adds the event) and immutable from then on.
type tailEntry struct {
	ev   chronicle.Event
	once sync.Once
	json []byte
}

func (t *tailEntry) encoded() []byte {
	t.once.Do(func() { t.json = t.ev.AppendJSON(make([]byte, 0, 1024)) })
	return t.json
}

// add appends newly applied events; nil events (a restore) empty the cache.
func (c *tailCache) add(h chronicle.Head, events []chronicle.Event) {
	chunk := make([]tailEntry, len(events)) // one allocation per apply, outside the lock
	for i := range events {
		chunk[i].ev = events[i]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if events == nil && h.Position != c.head {
		c.entries, c.head = nil, h.Position
		return
	}
	for i := range chunk {
		if n := len(c.entries); n > 0 && c.entries[n-1].ev.Position+1 != chunk[i].ev.Position {
			c.entries = nil // not contiguous: start over (in a new array: spans handed out stay valid)
		}
		c.entries = append(c.entries, &chunk[i])
	}
	if len(c.entries) > 2*tailCacheSize {
		c.entries = append([]*tailEntry(nil), c.entries[len(c.entries)-tailCacheSize:]...)
	}
	c.head = h.Position
}

// span returns up to limit entries after position pos when the cache covers them (or
// when pos is the head: then there is nothing after it). The entries stay valid after
// the lock is released: they are never modified but for their JSON, set once.
func (c *tailCache) span(pos uint64, limit int) ([]*tailEntry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if pos == c.head && c.head > 0 {
		return nil, true
	}
	if len(c.entries) == 0 {
		return nil, false
	}
	first := c.entries[0].ev.Position
	last := c.entries[len(c.entries)-1].ev.Position
	if pos+1 < first || pos >= last || last != c.head {
		return nil, false
	}
	i := int(pos + 1 - first)
	j := min(i+limit, len(c.entries))
	return c.entries[i:j:j], true
}

// after returns up to limit events after position pos when the cache covers them.
func (c *tailCache) after(pos uint64, limit int) ([]chronicle.Event, bool) {
	entries, ok := c.span(pos, limit)
	if !ok {
		return nil, false
	}
	out := make([]chronicle.Event, len(entries))
	for i, t := range entries {
		out[i] = t.ev
	}
	return out, true
}

// afterEncoded is after with each event's JSON, encoding (outside the cache's lock) the
// events no reader has asked for yet.
func (c *tailCache) afterEncoded(pos uint64, limit int) ([]chronicle.EncodedEvent, bool) {
	entries, ok := c.span(pos, limit)
	if !ok {
		return nil, false
	}
	out := make([]chronicle.EncodedEvent, len(entries))
	for i, t := range entries {
		out[i] = chronicle.EncodedEvent{Event: t.ev, JSON: t.encoded()}
	}
	return out, true
}
