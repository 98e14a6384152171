package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
)

// ApplyToken implements chronicle.TokenStore: one SERIALIZABLE transaction reads the
// named record (and, for a bootstrap create, whether any exists), applies the domain's
// rules and writes the result, rerun on a serialization failure.
func (s *Store) ApplyToken(ctx context.Context, op chronicle.TokenOp) (chronicle.Token, error) {
	if err := op.Validate(); err != nil {
		return chronicle.Token{}, err
	}
	var out chronicle.Token
	var refused error
	for attempt := 0; ; attempt++ {
		refused = nil
		err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
			existing, found, err := readToken(ctx, tx, op.Name)
			if err != nil {
				return err
			}
			anyExists := found
			if !found && op.IfNone {
				if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM chronicle_tokens)`).Scan(&anyExists); err != nil {
					return err
				}
			}
			t, write, err := chronicle.ApplyTokenOp(op, existing, found, anyExists)
			if err != nil {
				refused = err
				return nil
			}
			out = t
			if !write {
				return nil
			}
			var revokedAt *time.Time
			if t.Revoked() {
				revokedAt = &t.RevokedAt
			}
			_, err = tx.Exec(ctx, `
INSERT INTO chronicle_tokens (name, role, hash, created_at, created_by, revoked_at, revoked_by)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name) DO UPDATE SET revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by`,
				t.Name, string(t.Role), t.Hash[:], t.CreatedAt, t.CreatedBy, revokedAt, t.RevokedBy)
			return err
		})
		switch {
		case err == nil && refused != nil:
			return chronicle.Token{}, refused
		case err == nil:
			return out, nil
		case attempt < 5 && retryable(err):
			continue
		default:
			return chronicle.Token{}, fmt.Errorf("sqlstore: token %q: %w", op.Name, err)
		}
	}
}

// Tokens implements chronicle.TokenStore.
func (s *Store) Tokens(ctx context.Context) ([]chronicle.Token, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM chronicle_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanToken)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read tokens: %w", err)
	}
	return out, nil
}

const tokenColumns = `name, role, hash, created_at, created_by, revoked_at, revoked_by`

func readToken(ctx context.Context, tx pgx.Tx, name string) (chronicle.Token, bool, error) {
	rows, err := tx.Query(ctx, `SELECT `+tokenColumns+` FROM chronicle_tokens WHERE name = $1`, name)
	if err != nil {
		return chronicle.Token{}, false, err
	}
	t, err := pgx.CollectExactlyOneRow(rows, scanToken)
	if errors.Is(err, pgx.ErrNoRows) {
		return chronicle.Token{}, false, nil
	}
	return t, err == nil, err
}

func scanToken(row pgx.CollectableRow) (chronicle.Token, error) {
	var t chronicle.Token
	var role string
	var hash []byte
	var revokedAt *time.Time
	if err := row.Scan(&t.Name, &role, &hash, &t.CreatedAt, &t.CreatedBy, &revokedAt, &t.RevokedBy); err != nil {
		return chronicle.Token{}, err
	}
	if len(hash) != len(t.Hash) {
		return chronicle.Token{}, fmt.Errorf("token %q: hash of %d bytes", t.Name, len(hash))
	}
	copy(t.Hash[:], hash)
	t.Role = chronicle.Role(role)
	t.CreatedAt = t.CreatedAt.UTC()
	if revokedAt != nil {
		t.RevokedAt = revokedAt.UTC()
	}
	return t, nil
}
