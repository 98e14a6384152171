package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// Log reads a node's event log over HTTP; it is what a projector in another process
// tails (projector.Source).
type Log struct{ c *Client }

// Log returns the node's log as a projector source.
func (c *Client) Log() *Log { return &Log{c: c} }

// Events reads events as chronicle.EventQuery selects them.
func (l *Log) Events(ctx context.Context, q chronicle.EventQuery) ([]chronicle.Event, error) {
	order := "asc"
	if q.Descending {
		order = "desc"
	}
	return l.c.Events(ctx, EventsQuery{After: q.After, Limit: q.Limit, Order: order, Type: q.EventType, AggregateID: q.AggregateID})
}

// Head reads the position, hash and commit time of the newest event.
func (l *Log) Head(ctx context.Context) (chronicle.Head, error) {
	ev, err := l.c.Events(ctx, EventsQuery{Limit: 1, Order: "desc"})
	if err != nil {
		return chronicle.Head{}, err
	}
	if len(ev) == 0 {
		return chronicle.GenesisHead(), nil
	}
	return chronicle.Head{Position: ev[0].Position, Hash: ev[0].Hash, CommitTime: ev[0].CreatedAt}, nil
}

// AllTransactions reads an account's whole statement, newest first.
func (c *Client) AllTransactions(ctx context.Context, id string, minPosition uint64) ([]Transaction, error) {
	var all []Transaction
	var before uint64
	for {
		var out api.Transactions
		q := url.Values{"limit": {strconv.Itoa(chronicle.MaxPageSize)}}
		if before > 0 {
			q.Set("before", strconv.FormatUint(before, 10))
		}
		if minPosition > 0 {
			q.Set("min_position", strconv.FormatUint(minPosition, 10))
		}
		if _, err := c.Do(ctx, http.MethodGet, "/accounts/"+url.PathEscape(id)+"/transactions?"+q.Encode(), nil, nil, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Transactions...)
		if out.NextBefore == 0 {
			return all, nil
		}
		before = out.NextBefore
	}
}
