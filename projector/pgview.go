package projector

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-ledger/chronicle"
)

// PostgresView is the read model in PostgreSQL, in the seed's tables: account_balance,
// transactions (one row per event: the statement), transfers, and event_position (the
// checkpoint). Schema and money conventions are in migrations/0001_read_model.sql.
//
// Apply runs in one transaction that first locks the view's event_position row, so any
// number of appliers (goroutines, processes) apply each event exactly once, in order.
type PostgresView struct {
	pool      *pgxpool.Pool
	processor string
	log       *slog.Logger
}

var _ View = (*PostgresView)(nil)

// DefaultProcessorName is the event_position row of the view, as the seed named it.
const DefaultProcessorName = "read_processor"

// defaultPGMaxConns bounds the pool unless the URL sets pool_max_conns.
const defaultPGMaxConns = 8

// PostgresOptions tunes OpenPostgresViewWith. The zero value is the default.
type PostgresOptions struct {
	// ProcessorName is the view's event_position row ("" = DefaultProcessorName).
	ProcessorName string
	// MaxConns bounds the connection pool (0 = pool_max_conns from the URL, else 8).
	MaxConns int32
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockKey is the first half of the advisory lock held while migrating; the
// second half is a hash of the schema, so that migrators of different schemas of one
// database do not wait for each other.
const migrationLockKey = 0x43484c56 // "CHLV"

// OpenPostgresView connects to url, brings the schema up to date and returns the view.
// The tables live in the connection's current schema (set search_path in the URL, e.g.
// options=-c%20search_path%3Dmyschema, to choose another).
func OpenPostgresView(ctx context.Context, url string, logger *slog.Logger) (*PostgresView, error) {
	return OpenPostgresViewWith(ctx, url, logger, PostgresOptions{})
}

// OpenPostgresViewWith is OpenPostgresView with options.
func OpenPostgresViewWith(ctx context.Context, url string, logger *slog.Logger, opts PostgresOptions) (*PostgresView, error) {
	if logger == nil {
		logger = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("projector: postgres view: parse url: %w", err)
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(url, "pool_max_conns"):
		cfg.MaxConns = defaultPGMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("projector: postgres view: connect: %w", err)
	}
	v := &PostgresView{pool: pool, processor: opts.ProcessorName, log: logger.With("component", "postgres-view")}
	if v.processor == "" {
		v.processor = DefaultProcessorName
	}
	if err := v.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return v, nil
}

// Name implements View.
func (v *PostgresView) Name() string { return "postgres" }

// Close implements View.
func (v *PostgresView) Close() error {
	v.pool.Close()
	return nil
}

// Pool is the view's connection pool, for health checks and for tests.
func (v *PostgresView) Pool() *pgxpool.Pool { return v.pool }

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the embedded migrations ordered by version: files named
// <version>_<name>.sql.
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

// migrate applies the migrations not yet recorded in schema_migrations, each in its own
// transaction under an advisory lock, so concurrent openers apply each exactly once.
func (v *PostgresView) migrate(ctx context.Context) error {
	list, err := migrations()
	if err != nil {
		return fmt.Errorf("projector: postgres view: %w", err)
	}
	for _, m := range list {
		applied, err := v.applyMigration(ctx, m)
		if err != nil {
			return fmt.Errorf("projector: postgres view: migration %s: %w", m.name, err)
		}
		if applied {
			v.log.Info("applied migration", "version", m.version, "name", m.name)
		}
	}
	// The checkpoint row exists from the start, so Position and Apply find it.
	if _, err := v.pool.Exec(ctx, `INSERT INTO event_position (processor_name, last_event_id) VALUES ($1, 0)
		ON CONFLICT (processor_name) DO NOTHING`, v.processor); err != nil {
		return fmt.Errorf("projector: postgres view: create checkpoint: %w", err)
	}
	return nil
}

func (v *PostgresView) applyMigration(ctx context.Context, m migration) (bool, error) {
	tx, err := v.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))`, int32(migrationLockKey)); err != nil {
		return false, fmt.Errorf("lock: %w", err)
	}
	// Created under the lock: two first openers must not race to create it.
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INT PRIMARY KEY,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return false, fmt.Errorf("create schema_migrations: %w", err)
	}
	var done bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.version).Scan(&done); err != nil {
		return false, err
	}
	if done {
		return false, tx.Commit(ctx)
	}
	// No arguments: the simple protocol runs every statement of the file.
	if _, err := tx.Exec(ctx, m.sql); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())`, m.version); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// Position implements chronicle.ReadModel.
func (v *PostgresView) Position(ctx context.Context) (uint64, error) {
	var pos int64
	err := v.pool.QueryRow(ctx, `SELECT last_event_id FROM event_position WHERE processor_name = $1`, v.processor).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("projector: postgres view: read checkpoint: %w", err)
	}
	return uint64(pos), nil
}

// splitTime splits t into the microsecond PostgreSQL keeps and the nanoseconds beyond it.
func splitTime(t time.Time) (time.Time, int32) {
	us := t.Truncate(time.Microsecond)
	return us, int32(t.Sub(us))
}

// joinTime undoes splitTime.
func joinTime(t time.Time, nanos int32) time.Time {
	return t.UTC().Add(time.Duration(nanos))
}

// accountRows holds account rows column by column, for one INSERT ... SELECT unnest.
type accountRows struct {
	id, owner, balance, currency, status []string
	balanceMinor, overdraft, version     []int64
	held                                 []int64
	created, updated                     []time.Time
	createdNanos, updatedNanos           []int32
}

func (r *accountRows) add(a chronicle.Account) error {
	cur, err := chronicle.LookupCurrency(a.Currency)
	if err != nil {
		return fmt.Errorf("account %s: %w", a.ID, err)
	}
	created, cn := splitTime(a.CreatedAt)
	updated, un := splitTime(a.LastUpdated)
	r.id = append(r.id, a.ID)
	r.owner = append(r.owner, a.OwnerName)
	r.balance = append(r.balance, chronicle.FormatMinor(a.Balance, cur))
	r.balanceMinor = append(r.balanceMinor, a.Balance)
	r.currency = append(r.currency, a.Currency)
	r.overdraft = append(r.overdraft, a.OverdraftLimit)
	r.status = append(r.status, string(a.Status))
	r.version = append(r.version, int64(a.Version))
	r.held = append(r.held, a.Held)
	r.created = append(r.created, created)
	r.createdNanos = append(r.createdNanos, cn)
	r.updated = append(r.updated, updated)
	r.updatedNanos = append(r.updatedNanos, un)
	return nil
}

// Amounts arrive as the exact decimal text of FormatMinor and are cast to NUMERIC by
// PostgreSQL itself: no float on the way.
const upsertAccountsSQL = `
INSERT INTO account_balance (account_id, owner_name, balance, balance_minor, currency,
	overdraft_limit_minor, status, version, created_at, created_at_nanos, last_updated, last_updated_nanos, held_minor)
SELECT u.account_id, u.owner_name, u.balance::numeric, u.balance_minor, u.currency,
	u.overdraft_limit_minor, u.status, u.version, u.created_at, u.created_at_nanos, u.last_updated, u.last_updated_nanos, u.held_minor
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[],
	$8::bigint[], $9::timestamptz[], $10::int[], $11::timestamptz[], $12::int[], $13::bigint[])
	AS u(account_id, owner_name, balance, balance_minor, currency, overdraft_limit_minor, status,
		version, created_at, created_at_nanos, last_updated, last_updated_nanos, held_minor)
ON CONFLICT (account_id) DO UPDATE SET
	owner_name = EXCLUDED.owner_name, balance = EXCLUDED.balance, balance_minor = EXCLUDED.balance_minor,
	currency = EXCLUDED.currency, overdraft_limit_minor = EXCLUDED.overdraft_limit_minor,
	status = EXCLUDED.status, version = EXCLUDED.version,
	created_at = EXCLUDED.created_at, created_at_nanos = EXCLUDED.created_at_nanos,
	last_updated = EXCLUDED.last_updated, last_updated_nanos = EXCLUDED.last_updated_nanos,
	held_minor = EXCLUDED.held_minor`

// lineRows holds statement lines column by column.
type lineRows struct {
	txID, account, typ, eventType, amount, balanceAfter, currency []string
	description, transferID, counterparty                         []string
	amountMinor, balanceAfterMinor, position, version             []int64
	ts                                                            []time.Time
	tsNanos                                                       []int32
}

func (r *lineRows) add(l chronicle.StatementLine, cur chronicle.Currency) {
	ts, tn := splitTime(l.Timestamp)
	r.txID = append(r.txID, l.TransactionID)
	r.account = append(r.account, l.AccountID)
	r.typ = append(r.typ, l.Type)
	r.eventType = append(r.eventType, l.EventType)
	r.amount = append(r.amount, chronicle.FormatMinor(l.Amount, cur))
	r.amountMinor = append(r.amountMinor, l.Amount)
	r.balanceAfter = append(r.balanceAfter, chronicle.FormatMinor(l.BalanceAfter, cur))
	r.balanceAfterMinor = append(r.balanceAfterMinor, l.BalanceAfter)
	r.currency = append(r.currency, l.Currency)
	r.description = append(r.description, l.Description)
	r.transferID = append(r.transferID, l.TransferID)
	r.counterparty = append(r.counterparty, l.Counterparty)
	r.position = append(r.position, int64(l.Position))
	r.version = append(r.version, int64(l.Version))
	r.ts = append(r.ts, ts)
	r.tsNanos = append(r.tsNanos, tn)
}

// Empty optional text is stored as NULL, as the seed did.
const insertLinesSQL = `
INSERT INTO transactions (transaction_id, account_id, type, event_type, amount, amount_minor,
	balance_after, balance_after_minor, currency, description, transfer_id, counterparty,
	position, version, timestamp, timestamp_nanos)
SELECT u.transaction_id::uuid, u.account_id, u.type, u.event_type, u.amount::numeric, u.amount_minor,
	u.balance_after::numeric, u.balance_after_minor, u.currency, NULLIF(u.description, ''),
	NULLIF(u.transfer_id, '')::uuid, NULLIF(u.counterparty, ''), u.position, u.version, u.ts, u.ts_nanos
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[],
	$8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::bigint[],
	$15::timestamptz[], $16::int[])
	AS u(transaction_id, account_id, type, event_type, amount, amount_minor, balance_after,
		balance_after_minor, currency, description, transfer_id, counterparty, position, version, ts, ts_nanos)`

// transferRows holds transfers column by column.
type transferRows struct {
	id, from, to, amount, currency []string
	amountMinor, position          []int64
	ts                             []time.Time
	tsNanos                        []int32
}

const insertTransfersSQL = `
INSERT INTO transfers (transfer_id, from_account_id, to_account_id, amount, amount_minor, currency,
	status, timestamp, timestamp_nanos, position)
SELECT u.transfer_id::uuid, u.from_account_id, u.to_account_id, u.amount::numeric, u.amount_minor,
	u.currency, 'completed', u.ts, u.ts_nanos, u.position
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
	$7::timestamptz[], $8::int[], $9::bigint[])
	AS u(transfer_id, from_account_id, to_account_id, amount, amount_minor, currency, ts, ts_nanos, position)`

const accountColumns = `account_id, owner_name, currency, balance_minor, overdraft_limit_minor, status,
	version, created_at, created_at_nanos, last_updated, last_updated_nanos, held_minor`

func scanAccount(row pgx.Row) (chronicle.Account, error) {
	var (
		a                  chronicle.Account
		status             string
		version            int64
		created, updated   time.Time
		createdN, updatedN int32
	)
	err := row.Scan(&a.ID, &a.OwnerName, &a.Currency, &a.Balance, &a.OverdraftLimit, &status,
		&version, &created, &createdN, &updated, &updatedN, &a.Held)
	a.Status = chronicle.AccountStatus(status)
	a.Version = uint64(version)
	a.CreatedAt = joinTime(created, createdN)
	a.LastUpdated = joinTime(updated, updatedN)
	return a, err
}

// Apply implements View: one transaction holds the rows and the checkpoint. It starts by
// locking the checkpoint row, so a concurrent Apply of the same events waits, then sees
// the new checkpoint (READ COMMITTED reads the latest committed row after the lock) and
// skips them.
func (v *PostgresView) Apply(ctx context.Context, events []chronicle.Event) error {
	if len(events) == 0 {
		return nil
	}
	tx, err := v.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("projector: postgres view: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op

	var lock pgx.Batch
	lock.Queue(`INSERT INTO event_position (processor_name, last_event_id) VALUES ($1, 0)
		ON CONFLICT (processor_name) DO NOTHING`, v.processor)
	lock.Queue(`SELECT last_event_id FROM event_position WHERE processor_name = $1 FOR UPDATE`, v.processor)
	br := tx.SendBatch(ctx, &lock)
	_, err = br.Exec()
	var cpi int64
	if err == nil {
		err = br.QueryRow().Scan(&cpi)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("projector: postgres view: lock checkpoint: %w", err)
	}
	cp := uint64(cpi)

	// The same walk as PebbleView: skip what the checkpoint covers, then demand
	// consecutive positions.
	next := cp + 1
	todo := make([]chronicle.Event, 0, len(events))
	for _, e := range events {
		if e.Position < next {
			continue // already applied: a replay changes nothing
		}
		if e.Position != next {
			return fmt.Errorf("%w: got position %d, expected %d", ErrGap, e.Position, next)
		}
		todo = append(todo, e)
		next++
	}
	if len(todo) == 0 {
		return nil
	}
	if next-1 > math.MaxInt64 {
		return fmt.Errorf("projector: postgres view: position %d out of range", next-1)
	}

	// Load every account the page touches in one query; read after the lock, so it sees
	// what the previous Apply committed.
	ids := make([]string, 0, len(todo))
	seen := make(map[string]bool, len(todo))
	for _, e := range todo {
		if !seen[e.AggregateID] {
			seen[e.AggregateID] = true
			ids = append(ids, e.AggregateID)
		}
	}
	accs := make(map[string]chronicle.Account, len(ids))
	// A join, not "= ANY($1)": with a parameter PostgreSQL searches the array linearly
	// for every row it scans, which grows with the table.
	rows, err := tx.Query(ctx, `SELECT `+accountColumns+` FROM account_balance
		JOIN unnest($1::text[]) AS want(id) ON account_id = want.id`, ids)
	if err != nil {
		return fmt.Errorf("projector: postgres view: load accounts: %w", err)
	}
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("projector: postgres view: load accounts: %w", err)
		}
		accs[a.ID] = a
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("projector: postgres view: load accounts: %w", err)
	}

	var (
		lines     lineRows
		transfers transferRows
		holds     holdRows
		order     []string // accounts in first-touched order
		touched   = make(map[string]bool, len(ids))
	)
	for _, e := range todo {
		acc, line, err := chronicle.Project(accs[e.AggregateID], e)
		if err != nil {
			return err
		}
		accs[acc.ID] = acc
		if !touched[acc.ID] {
			touched[acc.ID] = true
			order = append(order, acc.ID)
		}
		cur, err := chronicle.LookupCurrency(line.Currency)
		if err != nil {
			return err
		}
		lines.add(line, cur)
		holds.add(e)
		if line.Type == chronicle.LineTransferOut {
			to := line.Counterparty
			if e.Data.ToAccountID != "" {
				to = e.Data.ToAccountID
			}
			ts, tn := splitTime(line.Timestamp)
			transfers.id = append(transfers.id, line.TransferID)
			transfers.from = append(transfers.from, line.AccountID)
			transfers.to = append(transfers.to, to)
			transfers.amount = append(transfers.amount, chronicle.FormatMinor(line.Amount, cur))
			transfers.amountMinor = append(transfers.amountMinor, line.Amount)
			transfers.currency = append(transfers.currency, line.Currency)
			transfers.ts = append(transfers.ts, ts)
			transfers.tsNanos = append(transfers.tsNanos, tn)
			transfers.position = append(transfers.position, int64(line.Position))
		}
	}
	var accounts accountRows
	for _, id := range order {
		if err := accounts.add(accs[id]); err != nil {
			return err
		}
	}

	// Accounts first (the other tables refer to them), then lines, transfers and the
	// checkpoint: one round trip.
	var w pgx.Batch
	w.Queue(upsertAccountsSQL, accounts.id, accounts.owner, accounts.balance, accounts.balanceMinor,
		accounts.currency, accounts.overdraft, accounts.status, accounts.version, accounts.created,
		accounts.createdNanos, accounts.updated, accounts.updatedNanos, accounts.held)
	w.Queue(insertLinesSQL, lines.txID, lines.account, lines.typ, lines.eventType, lines.amount,
		lines.amountMinor, lines.balanceAfter, lines.balanceAfterMinor, lines.currency, lines.description,
		lines.transferID, lines.counterparty, lines.position, lines.version, lines.ts, lines.tsNanos)
	if len(transfers.id) > 0 {
		w.Queue(insertTransfersSQL, transfers.id, transfers.from, transfers.to, transfers.amount,
			transfers.amountMinor, transfers.currency, transfers.ts, transfers.tsNanos, transfers.position)
	}
	holds.queue(&w)
	w.Queue(`UPDATE event_position SET last_event_id = $2, last_processed_at = now() WHERE processor_name = $1`,
		v.processor, int64(next-1))
	if err := tx.SendBatch(ctx, &w).Close(); err != nil {
		return fmt.Errorf("projector: postgres view: write events %d..%d: %w", todo[0].Position, next-1, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("projector: postgres view: commit events %d..%d: %w", todo[0].Position, next-1, err)
	}
	return nil
}

// Reset implements View: it empties the tables and sets the checkpoint to 0 in one
// transaction. The checkpoint row is locked first, in the order Apply takes its locks,
// so a concurrent Apply finishes before or starts after, and the two cannot deadlock.
func (v *PostgresView) Reset(ctx context.Context) error {
	err := pgx.BeginTxFunc(ctx, v.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO event_position (processor_name, last_event_id) VALUES ($1, 0)
			ON CONFLICT (processor_name) DO NOTHING`, v.processor); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM event_position WHERE processor_name = $1 FOR UPDATE`, v.processor); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `TRUNCATE pending_transfers, transfers, transactions, account_balance`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE event_position SET last_event_id = 0, last_processed_at = now() WHERE processor_name = $1`, v.processor)
		return err
	})
	if err != nil {
		return fmt.Errorf("projector: postgres view: reset: %w", err)
	}
	return nil
}

// Account implements chronicle.ReadModel.
func (v *PostgresView) Account(ctx context.Context, id string) (chronicle.Account, error) {
	a, err := scanAccount(v.pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM account_balance WHERE account_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return chronicle.Account{}, chronicle.ErrAccountNotFound(id)
	}
	if err != nil {
		return chronicle.Account{}, fmt.Errorf("projector: read account: %w", err)
	}
	return a, nil
}

// Accounts implements chronicle.ReadModel: ordered by id byte by byte (the column's
// collation is "C"), after the id given.
func (v *PostgresView) Accounts(ctx context.Context, after string, limit int) ([]chronicle.Account, error) {
	out := []chronicle.Account{}
	if limit <= 0 {
		return out, nil
	}
	rows, err := v.pool.Query(ctx, `SELECT `+accountColumns+` FROM account_balance
		WHERE account_id > $1 ORDER BY account_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("projector: list accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("projector: list accounts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("projector: list accounts: %w", err)
	}
	return out, nil
}

// Transactions implements chronicle.ReadModel: newest first, below version before
// (0: from the newest); an unknown account is chronicle.ErrAccountNotFound.
func (v *PostgresView) Transactions(ctx context.Context, id string, before uint64, limit int) ([]chronicle.StatementLine, error) {
	out := []chronicle.StatementLine{}
	if limit > 0 {
		upper := int64(math.MaxInt64)
		if before > 0 && before <= math.MaxInt64 {
			upper = int64(before)
		}
		rows, err := v.pool.Query(ctx, `SELECT transaction_id::text, account_id, type, event_type, amount_minor,
			balance_after_minor, currency, COALESCE(description, ''), COALESCE(transfer_id::text, ''),
			COALESCE(counterparty, ''), "position", version, "timestamp", timestamp_nanos
			FROM transactions WHERE account_id = $1 AND version < $2 ORDER BY version DESC LIMIT $3`, id, upper, limit)
		if err != nil {
			return nil, fmt.Errorf("projector: list transactions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				l                 chronicle.StatementLine
				position, version int64
				ts                time.Time
				tsNanos           int32
			)
			if err := rows.Scan(&l.TransactionID, &l.AccountID, &l.Type, &l.EventType, &l.Amount,
				&l.BalanceAfter, &l.Currency, &l.Description, &l.TransferID, &l.Counterparty,
				&position, &version, &ts, &tsNanos); err != nil {
				return nil, fmt.Errorf("projector: list transactions: %w", err)
			}
			l.Position, l.Version, l.Timestamp = uint64(position), uint64(version), joinTime(ts, tsNanos)
			out = append(out, l)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("projector: list transactions: %w", err)
		}
		if len(out) > 0 {
			return out, nil // lines exist, so does the account (foreign key)
		}
	}
	if _, err := v.Account(ctx, id); err != nil {
		return nil, err
	}
	return out, nil
}

// LineCount implements View.
func (v *PostgresView) LineCount(ctx context.Context, id string) (int, error) {
	var n int
	if err := v.pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE account_id = $1`, id).Scan(&n); err != nil {
		return 0, fmt.Errorf("projector: count transactions: %w", err)
	}
	return n, nil
}
