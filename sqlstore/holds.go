package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
)

// Pending transfers (holds) in the event store: chronicle_pending_transfers
// (migrations/0005_pending_transfers.sql), read by the state machine through txState and
// written with the batch's other rows.

const holdColumns = `transfer_id, from_account_id, to_account_id, currency, amount, created_at_nanos,
	expires_at_nanos, state, captured_amount, finished_at_nanos`

func scanHold(row pgx.Row) (chronicle.PendingTransfer, error) {
	var p chronicle.PendingTransfer
	var state string
	var created, expires, finished int64
	if err := row.Scan(&p.ID, &p.FromAccountID, &p.ToAccountID, &p.Currency, &p.Amount, &created, &expires,
		&state, &p.CapturedAmount, &finished); err != nil {
		return p, err
	}
	p.State = chronicle.TransferState(state)
	p.CreatedAt, p.ExpiresAt, p.FinishedAt = fromNanos(created), fromNanos(expires), fromNanos(finished)
	return p, nil
}

func scanHolds(rows pgx.Rows) ([]chronicle.PendingTransfer, error) {
	defer rows.Close()
	var out []chronicle.PendingTransfer
	for rows.Next() {
		p, err := scanHold(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// PendingTransfer implements chronicle.State. Reads are cached for the attempt: the
// state machine keeps its own changes, so the rows cannot change under it.
func (st *txState) PendingTransfer(id string) (chronicle.PendingTransfer, bool, error) {
	if p, ok := st.holds[id]; ok {
		if p == nil {
			return chronicle.PendingTransfer{}, false, nil
		}
		return *p, true, nil
	}
	if st.holds == nil {
		st.holds = map[string]*chronicle.PendingTransfer{}
	}
	p, err := scanHold(st.tx.QueryRow(st.ctx, `SELECT `+holdColumns+` FROM chronicle_pending_transfers WHERE transfer_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		st.holds[id] = nil
		return chronicle.PendingTransfer{}, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read pending transfer: %w", err)
	}
	st.holds[id] = &p
	return p, true, nil
}

// AccountHolds implements chronicle.State.
func (st *txState) AccountHolds(accountID string) ([]chronicle.PendingTransfer, error) {
	rows, err := st.tx.Query(st.ctx, `SELECT `+holdColumns+` FROM chronicle_pending_transfers
		WHERE from_account_id = $1 AND state = 'pending'`, accountID)
	if err != nil {
		return nil, fmt.Errorf("read holds of %s: %w", accountID, err)
	}
	out, err := scanHolds(rows)
	if err != nil {
		return nil, fmt.Errorf("read holds of %s: %w", accountID, err)
	}
	return out, nil
}

// DueHolds implements chronicle.State.
func (st *txState) DueHolds(t time.Time, limit int) ([]chronicle.PendingTransfer, error) {
	rows, err := st.tx.Query(st.ctx, `SELECT `+holdColumns+` FROM chronicle_pending_transfers
		WHERE state = 'pending' AND expires_at_nanos <= $1 ORDER BY expires_at_nanos, transfer_id LIMIT $2`,
		nanosAtOrBefore(t), limit)
	if err != nil {
		return nil, fmt.Errorf("read due holds: %w", err)
	}
	out, err := scanHolds(rows)
	if err != nil {
		return nil, fmt.Errorf("read due holds: %w", err)
	}
	return out, nil
}

// queueHoldWrites queues the upsert of the holds a batch created or finished.
func queueHoldWrites(b *pgx.Batch, holds []chronicle.PendingTransfer) {
	if len(holds) == 0 {
		return
	}
	n := len(holds)
	id, from, to, cur, state := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	amount, created, expires, captured, finished := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, p := range holds {
		id[i], from[i], to[i], cur[i], state[i] = p.ID, p.FromAccountID, p.ToAccountID, p.Currency, string(p.State)
		amount[i], created[i], expires[i], captured[i], finished[i] = p.Amount, nanos(p.CreatedAt), nanos(p.ExpiresAt), p.CapturedAmount, nanos(p.FinishedAt)
	}
	b.Queue(`INSERT INTO chronicle_pending_transfers (`+holdColumns+`)
		SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::INT8[], $6::INT8[], $7::INT8[],
			$8::TEXT[], $9::INT8[], $10::INT8[])
		ON CONFLICT (transfer_id) DO UPDATE SET state = excluded.state, captured_amount = excluded.captured_amount,
			finished_at_nanos = excluded.finished_at_nanos`,
		id, from, to, cur, amount, created, expires, state, captured, finished)
}

// NextHoldDeadline is the earliest deadline of an open hold (ok false: none), for the
// expiry sweep of the publisher-lease holder.
func (s *Store) NextHoldDeadline(ctx context.Context) (time.Time, bool, error) {
	var n *int64
	if err := s.pool.QueryRow(ctx, `SELECT min(expires_at_nanos) FROM chronicle_pending_transfers WHERE state = 'pending'`).Scan(&n); err != nil {
		return time.Time{}, false, fmt.Errorf("sqlstore: next hold deadline: %w", err)
	}
	if n == nil {
		return time.Time{}, false, nil
	}
	return fromNanos(*n), true, nil
}
