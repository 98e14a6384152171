package chronicle

import (
	"context"
	"time"
)

// EventQuery selects events from the log.
type EventQuery struct {
	// After returns events with a position greater than After (ascending order) or, with
	// Descending, less than After when After is not zero.
	After       uint64
	Limit       int
	Descending  bool
	EventType   string
	AggregateID string
}

// MaxEventsPage bounds one page of events.
const MaxEventsPage = 1000

// Page bounds for account and transaction listings.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// EventStore is the write side: it orders and durably commits commands and answers
// queries about what it committed (accounts, balances in time, the event log). Listings
// of accounts and statements are the read model's (ReadModel). Implementations: raftstore
// (Raft + Pebble) and, later, sqlstore. Reads on a node see every command that node has
// acknowledged.
type EventStore interface {
	// Execute commits cmds (each on its own: one failing does not stop the others) and
	// returns a result per command once they are durable. The error is for the batch as
	// a whole: the node is not the leader, is shutting down, or ctx ended (outcome unknown).
	Execute(ctx context.Context, cmds []Command) ([]Result, error)
	Account(ctx context.Context, id string) (Account, error)
	// BalanceAt is the account's balance after the last command committed at or before t;
	// a KindNotFound error when the account did not exist yet.
	BalanceAt(ctx context.Context, id string, t time.Time) (BalancePoint, error)
	Events(ctx context.Context, q EventQuery) ([]Event, error)
	Head(ctx context.Context) (Head, error)
}

// EncodedEvent is an event with its JSON form, Event.AppendJSON's bytes. The bytes may be
// shared by every reader of the event: never modify them.
type EncodedEvent struct {
	Event Event
	JSON  []byte
}

// EventReader reads the log; every EventStore is one.
type EventReader interface {
	Events(ctx context.Context, q EventQuery) ([]Event, error)
}

// EncodedEventReader is a store that keeps the JSON of the events it holds in memory
// (raftstore: the newest ones), so that the readers following the log (the NATS
// publisher, the SSE hub) share one encoding of each event. EncodedEvents answers as
// Events does, each event with its JSON.
type EncodedEventReader interface {
	EncodedEvents(ctx context.Context, q EventQuery) ([]EncodedEvent, error)
}

// ReadEncodedEvents reads events with their JSON: from src.EncodedEvents when src is an
// EncodedEventReader, else from src.Events, encoding the page here (into one buffer).
func ReadEncodedEvents(ctx context.Context, src EventReader, q EventQuery) ([]EncodedEvent, error) {
	if r, ok := src.(EncodedEventReader); ok {
		return r.EncodedEvents(ctx, q)
	}
	evs, err := src.Events(ctx, q)
	if err != nil {
		return nil, err
	}
	return EncodeEvents(evs), nil
}

// EncodeEvents pairs each event with its JSON, encoding them all into one buffer.
func EncodeEvents(evs []Event) []EncodedEvent {
	out := make([]EncodedEvent, len(evs))
	if len(evs) == 0 {
		return out
	}
	ends := make([]int, len(evs))
	// Sized from the first event (a transfer leg is about 830 bytes, a fixed guess was
	// short and the buffer grew, copying, twice per page of a catching-up publisher).
	first := evs[0].AppendJSON(make([]byte, 0, 1024))
	buf := append(make([]byte, 0, len(first)*len(evs)+len(first)*len(evs)/8), first...)
	ends[0] = len(buf)
	for i := 1; i < len(evs); i++ {
		buf = evs[i].AppendJSON(buf)
		ends[i] = len(buf)
	}
	start := 0
	for i := range evs {
		out[i] = EncodedEvent{Event: evs[i], JSON: buf[start:ends[i]:ends[i]]}
		start = ends[i]
	}
	return out
}
