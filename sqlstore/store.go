package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-ledger/chronicle"
)

// Config configures a Store. Zero values take the defaults below.
type Config struct {
	// URL is the database's connection string (postgres:// for both PostgreSQL and
	// CockroachDB). The tables live in the connection's current schema.
	URL string
	// IdempotencyWindow is how long, in commit time, idempotency keys are remembered
	// (0 or less: forever).
	IdempotencyWindow time.Duration
	Logger            *slog.Logger
	// MaxConns bounds the pool (0: the URL's pool_max_conns, else 8). Appends use one
	// connection at a time; the rest serve reads.
	MaxConns int32
	// QueueSize bounds the Execute calls waiting for the batcher (0: 4096).
	QueueSize int
	// TxTimeout bounds one transaction attempt (0: 30s).
	TxTimeout time.Duration
	// MaxAttempts bounds the attempts of one transaction (0: 10).
	MaxAttempts int
	// RetryBaseDelay and RetryMaxDelay shape the backoff between attempts
	// (0: 5ms and 1s).
	RetryBaseDelay time.Duration
	RetryMaxDelay  time.Duration

	hooks *testHooks
}

// testHooks let tests inject failures at chosen points of an append.
type testHooks struct {
	// beforeCommit runs before COMMIT of each attempt (numbered from 1); an error
	// fails that attempt as if the database had returned it.
	beforeCommit func(attempt int) error
}

const (
	defaultMaxConns    = 8
	defaultQueueSize   = 4096
	defaultTxTimeout   = 30 * time.Second
	defaultMaxAttempts = 10
	defaultRetryBase   = 5 * time.Millisecond
	defaultRetryMax    = time.Second
)

// Store is a chronicle.EventStore on CockroachDB or PostgreSQL. Any number of Stores,
// in one process or many, may share one database: appends serialize on its head row.
type Store struct {
	cfg     Config
	log     *slog.Logger
	pool    *pgxpool.Pool
	dialect dialect

	queue chan *request
	stop  chan struct{}
	// ctx is canceled by Close once the batcher has returned; it bounds the batcher's
	// transactions, so an in-flight one finishes rather than being cut off.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// broken is set when Apply reported a broken invariant: the store stops writing.
	broken atomic.Pointer[error]
	stats  struct {
		batches, commands, retries, ambiguous, answeredFromLog atomic.Uint64
	}

	closeOnce sync.Once
}

var _ chronicle.EventStore = (*Store)(nil)

// Stats counts what the write path did since Open.
type Stats struct {
	// Batches is the number of append transactions committed.
	Batches uint64
	// Commands is the number of commands those transactions answered.
	Commands uint64
	// Retries is the number of attempts rerun after a retryable failure.
	Retries uint64
	// AmbiguousCommits is the number of attempts whose COMMIT got no definite answer.
	AmbiguousCommits uint64
	// AnsweredFromLog is the number of commands found already committed under their id.
	AnsweredFromLog uint64
}

// Stats returns the write path's counters.
func (s *Store) Stats() Stats {
	return Stats{Batches: s.stats.batches.Load(), Commands: s.stats.commands.Load(),
		Retries: s.stats.retries.Load(), AmbiguousCommits: s.stats.ambiguous.Load(),
		AnsweredFromLog: s.stats.answeredFromLog.Load()}
}

// Open connects to cfg.URL, brings the schema up to date and starts the batcher.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URL == "" {
		return nil, errors.New("sqlstore: no database URL")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = defaultQueueSize
	}
	if cfg.TxTimeout <= 0 {
		cfg.TxTimeout = defaultTxTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = defaultMaxAttempts
	}
	if cfg.RetryBaseDelay <= 0 {
		cfg.RetryBaseDelay = defaultRetryBase
	}
	if cfg.RetryMaxDelay <= 0 {
		cfg.RetryMaxDelay = defaultRetryMax
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: parse database URL: %w", err)
	}
	switch {
	case cfg.MaxConns > 0:
		pcfg.MaxConns = cfg.MaxConns
	case !strings.Contains(cfg.URL, "pool_max_conns"):
		pcfg.MaxConns = defaultMaxConns
	}
	if pcfg.MaxConns < 2 {
		pcfg.MaxConns = 2 // one for the batcher, one for reads
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: connect: %w", err)
	}
	bctx, cancel := context.WithCancel(context.Background())
	s := &Store{cfg: cfg, log: cfg.Logger.With("component", "sqlstore"), pool: pool,
		queue: make(chan *request, cfg.QueueSize), stop: make(chan struct{}), ctx: bctx, cancel: cancel}
	if s.dialect, err = detectDialect(ctx, pool); err != nil {
		cancel()
		pool.Close()
		return nil, fmt.Errorf("sqlstore: %w", s.dbError(ctx, "detect database", err))
	}
	if err := s.migrate(ctx); err != nil {
		cancel()
		pool.Close()
		return nil, fmt.Errorf("sqlstore: %w", s.dbError(ctx, "migrate", err))
	}
	s.wg.Add(1)
	go s.batcher()
	return s, nil
}

// Close stops accepting commands, lets the batch in flight finish, answers the queued
// calls with an unavailable error and closes the pool.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.cancel()
		s.pool.Close()
	})
	return nil
}

// dialect is the database behind the URL: the few places where PostgreSQL and
// CockroachDB need different handling branch on it (see the package doc).
type dialect int

const (
	dialectPostgres dialect = iota
	dialectCockroach
)

func (d dialect) String() string {
	if d == dialectCockroach {
		return "cockroachdb"
	}
	return "postgresql"
}

func detectDialect(ctx context.Context, pool *pgxpool.Pool) (dialect, error) {
	var v string
	if err := pool.QueryRow(ctx, `SELECT version()`).Scan(&v); err != nil {
		return 0, err
	}
	if strings.Contains(v, "CockroachDB") {
		return dialectCockroach, nil
	}
	return dialectPostgres, nil
}

// dbError maps a failed database call: the caller's context ending is a timeout, a
// domain error passes through, anything else is the database being unavailable.
func (s *Store) dbError(ctx context.Context, what string, err error) error {
	var de *chronicle.Error
	if errors.As(err, &de) {
		return de
	}
	if ctx.Err() != nil {
		return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "%s: request ended: %v", what, ctx.Err())
	}
	return unavailable(what, err, false)
}

// nanos and fromNanos convert commit times; 0 stands for the zero time (the genesis head).
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
