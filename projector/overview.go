package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
)

// The projected views keep no running totals (they hold customer accounts only, and
// adding totals would change their layout): their overview sums every account's balance
// by currency, which double-entry makes equal to minus the external account's balance.
// That is a scan, so it is marked Scanned and the API reuses it for a while.

var (
	_ chronicle.OverviewReader = (*PebbleView)(nil)
	_ chronicle.OverviewReader = (*PostgresView)(nil)
)

// heldTotals turns per-currency sums into the Overview's list: non-zero ones, by code.
func heldTotals(sums map[string]*big.Int) []chronicle.CurrencyHeld {
	var out []chronicle.CurrencyHeld
	for cur, v := range sums {
		if v.Sign() != 0 {
			out = append(out, chronicle.CurrencyHeld{Currency: cur, Held: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Currency < out[j].Currency })
	return out
}

// Overview implements chronicle.OverviewReader: one pass over the accounts of a snapshot,
// with the checkpoint read from the same snapshot.
func (v *PebbleView) Overview(ctx context.Context) (chronicle.Overview, error) {
	snap := v.db.NewSnapshot()
	defer snap.Close()
	pos, err := getCheckpoint(snap)
	if err != nil {
		return chronicle.Overview{}, fmt.Errorf("projector: overview: %w", err)
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{'a'}, UpperBound: []byte{'b'}})
	if err != nil {
		return chronicle.Overview{}, fmt.Errorf("projector: overview: %w", err)
	}
	defer it.Close()
	out := chronicle.Overview{Position: pos, Scanned: true}
	sums := map[string]*big.Int{}
	for it.First(); it.Valid(); it.Next() {
		if out.Accounts%4096 == 0 && ctx.Err() != nil {
			return chronicle.Overview{}, fmt.Errorf("projector: overview: %w", ctx.Err())
		}
		var a struct {
			Currency string `json:"currency"`
			Balance  int64  `json:"balance"`
		}
		if err := json.Unmarshal(it.Value(), &a); err != nil {
			return chronicle.Overview{}, fmt.Errorf("projector: overview: decode account %q: %w", it.Key()[1:], err)
		}
		out.Accounts++
		s := sums[a.Currency]
		if s == nil {
			s = new(big.Int)
			sums[a.Currency] = s
		}
		s.Add(s, big.NewInt(a.Balance))
	}
	if err := it.Error(); err != nil {
		return chronicle.Overview{}, fmt.Errorf("projector: overview: %w", err)
	}
	out.Held = heldTotals(sums)
	return out, nil
}

// Overview implements chronicle.OverviewReader: one aggregate query, in the same
// repeatable-read transaction as the checkpoint it is reported with.
func (v *PostgresView) Overview(ctx context.Context) (chronicle.Overview, error) {
	out := chronicle.Overview{Scanned: true}
	err := pgx.BeginTxFunc(ctx, v.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var pos int64
		err := tx.QueryRow(ctx, `SELECT last_event_id FROM event_position WHERE processor_name = $1`, v.processor).Scan(&pos)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read checkpoint: %w", err)
		}
		out.Position = uint64(pos)
		rows, err := tx.Query(ctx, `SELECT currency, count(*), sum(balance_minor)::text FROM account_balance GROUP BY currency`)
		if err != nil {
			return err
		}
		defer rows.Close()
		sums := map[string]*big.Int{}
		for rows.Next() {
			var cur, sum string
			var n int64
			if err := rows.Scan(&cur, &n, &sum); err != nil {
				return err
			}
			s, ok := new(big.Int).SetString(sum, 10)
			if !ok {
				return fmt.Errorf("sum of %s balances %q is not an integer", cur, sum)
			}
			out.Accounts += n
			sums[cur] = s
		}
		if err := rows.Err(); err != nil {
			return err
		}
		out.Held = heldTotals(sums)
		return nil
	})
	if err != nil {
		return chronicle.Overview{}, fmt.Errorf("projector: postgres view: overview: %w", err)
	}
	return out, nil
}
