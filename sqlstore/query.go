package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
)

// readAttempts bounds the tries of one read. Reads change nothing, so one that failed on
// a broken connection (typically an idle one the database dropped) is simply sent again
// on another.
const readAttempts = 3

// read runs fn, again on a connection failure.
func (s *Store) read(ctx context.Context, fn func() error) error {
	var err error
	for range readAttempts {
		if err = fn(); err == nil || !connectionFailure(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// Head implements chronicle.EventStore.
func (s *Store) Head(ctx context.Context) (chronicle.Head, error) {
	var pos, t int64
	var h chronicle.Head
	err := s.read(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT position, hash, commit_time_nanos FROM chronicle_head WHERE id = 1`).Scan(&pos, &h.Hash, &t)
	})
	if err != nil {
		return chronicle.Head{}, s.dbError(ctx, "read head", err)
	}
	h.Position, h.CommitTime = uint64(pos), fromNanos(t)
	return h, nil
}

// Account implements chronicle.EventStore. External accounts are not found, as in
// raftstore: they are the ledger's bookkeeping, not a client's.
func (s *Store) Account(ctx context.Context, id string) (chronicle.Account, error) {
	if chronicle.IsExternal(id) {
		return chronicle.Account{}, chronicle.ErrAccountNotFound(id)
	}
	var a chronicle.Account
	err := s.read(ctx, func() (err error) {
		a, err = scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM chronicle_accounts WHERE account_id = $1`, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return chronicle.Account{}, chronicle.ErrAccountNotFound(id)
	}
	if err != nil {
		return chronicle.Account{}, s.dbError(ctx, "read account", err)
	}
	return a, nil
}

// BalanceAt implements chronicle.EventStore: one seek on the balance history's primary
// key; the account is looked up only to word a miss.
func (s *Store) BalanceAt(ctx context.Context, id string, t time.Time) (chronicle.BalancePoint, error) {
	if chronicle.IsExternal(id) {
		return chronicle.BalancePoint{}, chronicle.ErrAccountNotFound(id)
	}
	var at, pos int64
	p := chronicle.BalancePoint{AccountID: id}
	err := s.read(ctx, func() error {
		return s.pool.QueryRow(ctx, `SELECT commit_time_nanos, position, balance FROM chronicle_balance_history
			WHERE account_id = $1 AND commit_time_nanos <= $2
			ORDER BY commit_time_nanos DESC, position DESC LIMIT 1`, id, nanosAtOrBefore(t)).Scan(&at, &pos, &p.Balance)
	})
	if err == nil {
		p.Time, p.Position = fromNanos(at), uint64(pos)
		return p, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return chronicle.BalancePoint{}, s.dbError(ctx, "read balance history", err)
	}
	if _, err := s.Account(ctx, id); err != nil {
		return chronicle.BalancePoint{}, err
	}
	return chronicle.BalancePoint{}, chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeAccountNotFound,
		"account %q did not exist at %s", id, t.UTC().Format(time.RFC3339Nano))
}

// nanosAtOrBefore is t in Unix nanoseconds, clamped to what int64 holds.
func nanosAtOrBefore(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, 1)):
		return 0
	case t.After(time.Unix(0, 1<<63-1)):
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// Events implements chronicle.EventStore, with raftstore's semantics: ascending after
// After, or descending below After (from the newest when After is 0), at most
// MaxEventsPage, filtered by event type and account.
func (s *Store) Events(ctx context.Context, q chronicle.EventQuery) ([]chronicle.Event, error) {
	if q.Limit <= 0 || q.Limit > chronicle.MaxEventsPage {
		q.Limit = chronicle.MaxEventsPage
	}
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.AggregateID != "" {
		conds = append(conds, "aggregate_id = "+arg(q.AggregateID))
	}
	if q.EventType != "" {
		conds = append(conds, "event_type = "+arg(q.EventType))
	}
	switch {
	case q.Descending && q.After > 0:
		conds = append(conds, "position < "+arg(int64(q.After)))
	case !q.Descending:
		conds = append(conds, "position > "+arg(int64(q.After)))
	}
	// Within an account's stream, version order is position order, and it is the index's.
	order := "position"
	if q.AggregateID != "" {
		order = "event_version"
	}
	if q.Descending {
		order += " DESC"
	}
	sql := "SELECT stored FROM events"
	if len(conds) > 0 {
		sql += " WHERE " + strings.Join(conds, " AND ")
	}
	sql += " ORDER BY " + order + " LIMIT " + arg(q.Limit)
	var out []chronicle.Event
	err := s.read(ctx, func() error {
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = []chronicle.Event{}
		for rows.Next() {
			var stored []byte
			if err := rows.Scan(&stored); err != nil {
				return err
			}
			e, err := decodeEvent(stored)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		var perm *permanentError
		if errors.As(err, &perm) {
			return nil, fmt.Errorf("sqlstore: %w", err) // a corrupt row is no outage
		}
		return nil, s.dbError(ctx, "read events", err)
	}
	return out, nil
}
