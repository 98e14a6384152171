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
