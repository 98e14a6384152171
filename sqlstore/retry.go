package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chronicle-ledger/chronicle"
)

// SQLSTATEs the retry loop acts on.
const (
	codeSerialization = "40001" // both: serialization failure, rerun the transaction
	codeDeadlock      = "40P01" // PostgreSQL: deadlock detected
	codeAmbiguous     = "40003" // CockroachDB: "result is ambiguous", it may have committed
)

// commitError is a failure of COMMIT itself.
type commitError struct{ err error }

func (e *commitError) Error() string { return "commit: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

// permanentError is a failure no retry can fix (a bug, a broken invariant).
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// connLostError marks an attempt whose connection was found closed after a failure.
type connLostError struct{ err error }

func (e *connLostError) Error() string { return "connection lost: " + e.err.Error() }
func (e *connLostError) Unwrap() error { return e.err }

// retryable reports whether rerunning the whole transaction may succeed.
func retryable(err error) bool {
	var perm *permanentError
	if errors.As(err, &perm) {
		return false
	}
	var lost *connLostError
	if errors.As(err, &lost) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case codeSerialization, codeDeadlock, codeAmbiguous:
			return true
		}
		// 08: connection exceptions; 57P01-57P03: the server is shutting down or starting.
		return pg.Code[:2] == "08" || pg.Code == "57P01" || pg.Code == "57P02" || pg.Code == "57P03"
	}
	return connectionFailure(err)
}

// connectionFailure reports a transport failure: the server could not be reached or the
// connection broke.
func connectionFailure(err error) bool {
	var lost *connLostError
	var connect *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &lost) || errors.As(err, &connect) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}

// ambiguous reports whether err leaves it unknown whether the transaction committed:
// COMMIT was sent and no definite answer came back.
func ambiguous(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == codeAmbiguous {
		return true
	}
	var ce *commitError
	if !errors.As(err, &ce) {
		return false
	}
	// A server error or pgx's "rolled back" answer to COMMIT is definite: not committed.
	return !errors.As(err, &pg) && !errors.Is(err, pgx.ErrTxCommitRollback)
}

// attemptFunc runs one attempt's statements in tx; the caller commits.
type attemptFunc func(ctx context.Context, tx pgx.Tx, attempt int) error

// runTx runs fn in a SERIALIZABLE transaction and commits, rerunning everything on a
// retryable failure with jittered exponential backoff, at most cfg.MaxAttempts times.
// onFailure, when set, sees every failed attempt's error (the append path tracks
// ambiguous commits with it). The error returned is the last attempt's.
func (s *Store) runTx(ctx context.Context, fn attemptFunc, onFailure func(error)) error {
	for attempt := 1; ; attempt++ {
		err := s.attempt(ctx, fn, attempt)
		if err == nil {
			return nil
		}
		if onFailure != nil {
			onFailure(err)
		}
		if !retryable(err) || attempt >= s.cfg.MaxAttempts {
			return err
		}
		s.stats.retries.Add(1)
		d := s.backoff(attempt)
		s.log.Debug("retrying transaction", "attempt", attempt, "delay", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (while waiting to retry after: %v)", ctx.Err(), err)
		}
	}
}

// backoff is "full jitter": a random delay up to base·2^(attempt-1), capped.
func (s *Store) backoff(attempt int) time.Duration {
	ceil := s.cfg.RetryMaxDelay
	if attempt < 30 {
		if d := s.cfg.RetryBaseDelay << (attempt - 1); d > 0 && d < ceil {
			ceil = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceil))) + 1
}

func (s *Store) attempt(ctx context.Context, fn attemptFunc, n int) (err error) {
	actx, cancel := context.WithTimeout(ctx, s.cfg.TxTimeout)
	defer cancel()
	tx, err := s.pool.BeginTx(actx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			// Ask before Rollback: Rollback hands the connection back to the pool, and
			// another goroutine may be using it the moment after.
			closed := tx.Conn().IsClosed()
			// Rollback is a no-op after a failed COMMIT; on a broken connection pgx
			// closes it and the pool drops it.
			_ = tx.Rollback(actx)
			switch {
			case actx.Err() != nil && ctx.Err() == nil:
				// This attempt ran out of time, not the caller: another may succeed.
				err = &connLostError{fmt.Errorf("attempt timed out after %s: %w", s.cfg.TxTimeout, err)}
			case closed && !connectionFailure(err):
				err = &connLostError{err}
			}
		}
	}()
	if err := fn(actx, tx, n); err != nil {
		return err
	}
	if h := s.cfg.hooks; h != nil && h.beforeCommit != nil {
		if err := h.beforeCommit(n); err != nil {
			return err
		}
	}
	if err := tx.Commit(actx); err != nil {
		return &commitError{err}
	}
	return nil
}

// unavailable turns a database failure into what a client should see. unknown says
// that a commit may have happened that no later attempt could confirm.
func unavailable(what string, err error, unknown bool) *chronicle.Error {
	if unknown {
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable,
			"database connection lost while committing; the outcome is unknown, retry with the same command id to learn it (%s: %v)", what, err)
	}
	return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "database unavailable (%s: %v)", what, err)
}
