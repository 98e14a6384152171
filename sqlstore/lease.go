package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// TryLease takes or renews the lease name for holder for ttl and reports whether holder
// has it now. A lease held by another holder is taken only once it has expired, in the
// database's clock. One statement (an upsert guarded by a WHERE), so it needs no
// transaction of its own and works alike on CockroachDB and PostgreSQL.
func (s *Store) TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if ttl < time.Millisecond {
		return false, errors.New("sqlstore: lease ttl under a millisecond")
	}
	var got string
	err := s.pool.QueryRow(ctx, `
INSERT INTO chronicle_leases (name, holder, expires_at)
VALUES ($1, $2, clock_timestamp() + $3::INT8 * INTERVAL '1 millisecond')
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE chronicle_leases.holder = excluded.holder OR chronicle_leases.expires_at < clock_timestamp()
RETURNING holder`, name, holder, ttl.Milliseconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // someone else holds it
	}
	if err != nil {
		return false, fmt.Errorf("sqlstore: lease %s: %w", name, err)
	}
	return got == holder, nil
}
