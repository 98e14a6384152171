package sqlstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the embedded migrations, files named <version>_<name>.sql, in order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("migration %s: name must be <version>_<name>.sql", base)
		}
		body, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: version, name: base, sql: string(body)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].name, out[i].name, out[i].version)
		}
	}
	return out, nil
}

// migrate applies the migrations not yet recorded in chronicle_migrations. Row version 0
// of that table is a lock row: each migration's transaction locks it first, so concurrent
// openers (other processes included) apply each migration once, without advisory locks,
// which CockroachDB lacks.
func (s *Store) migrate(ctx context.Context) error {
	list, err := migrations()
	if err != nil {
		return err
	}
	if err := s.bootstrapMigrations(ctx); err != nil {
		return fmt.Errorf("create chronicle_migrations: %w", err)
	}
	for _, m := range list {
		applied := false
		err := s.runTx(ctx, func(ctx context.Context, tx pgx.Tx, _ int) error {
			applied = false
			// An update, not only a lock: on PostgreSQL a migrator that waited for the
			// row then fails with 40001 and reruns with a snapshot that sees this one's
			// work. CockroachDB orders them by itself.
			if _, err := tx.Exec(ctx, `UPDATE chronicle_migrations SET applied_at = now() WHERE version = 0`); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM chronicle_migrations WHERE version = $1)`, m.version).Scan(&done); err != nil {
				return err
			}
			if done {
				return nil
			}
			// No arguments: the simple protocol runs every statement of the file.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO chronicle_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return err
			}
			applied = true
			return nil
		}, nil)
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if applied {
			s.log.Info("applied migration", "version", m.version, "name", m.name)
		}
	}
	return nil
}

// bootstrapMigrations creates the migrations table and its lock row. Two PostgreSQL
// sessions creating the same table at once can fail on the catalog (23505 on pg_type,
// 42P07, or 42710 "type already exists") even with IF NOT EXISTS: the loser retries and
// finds the table.
func (s *Store) bootstrapMigrations(ctx context.Context) error {
	var err error
	for range 5 {
		_, err = s.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS chronicle_migrations (
			version    INT8 NOT NULL PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
		if err == nil {
			_, err = s.pool.Exec(ctx, `INSERT INTO chronicle_migrations (version, name) VALUES (0, 'lock')
				ON CONFLICT (version) DO NOTHING`)
		}
		var pg *pgconn.PgError
		if err == nil || !errors.As(err, &pg) || (pg.Code != "23505" && pg.Code != "42P07" && pg.Code != "42710" && !retryable(err)) {
			return err
		}
	}
	return err
}
