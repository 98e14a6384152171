package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/eventbus"
	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/position"
	"github.com/chronicle-ledger/chronicle/projector"
	"github.com/chronicle-ledger/chronicle/raftstore"
	"github.com/chronicle-ledger/chronicle/sqlstore"
)

// sqlSide is the node's write side in SQL mode: a sqlstore opened in the background (a
// database that is down at start costs readiness, never a crash loop) and a position that
// moves when this process appends (at once) or another does (polled: CockroachDB has no
// LISTEN/NOTIFY).
type sqlSide struct {
	cfg  sqlstore.Config
	log  *slog.Logger
	poll time.Duration
	// openTimeout bounds one attempt to open the store, checkTimeout one health check
	// (a head read), callTimeout one read for a caller: a network that silently drops
	// packets leaves a connection waiting for ever (TCP keepalive aside), and nothing of
	// this process may wait with it.
	openTimeout, checkTimeout, callTimeout time.Duration

	st  atomic.Pointer[sqlstore.Store]
	pos position.Waiter

	mu      sync.Mutex
	lastErr error // the last failure to open or to read the head; nil when healthy
}

var _ chronicle.EventStore = (*sqlSide)(nil)

func newSQLSide(cfg sqlstore.Config, log *slog.Logger) *sqlSide {
	return &sqlSide{cfg: cfg, log: log.With("component", "sql-event-store"), poll: 200 * time.Millisecond,
		openTimeout: 30 * time.Second, checkTimeout: 5 * time.Second, callTimeout: 10 * time.Second,
		lastErr: errors.New("event store not opened yet")}
}

// run opens the store (retrying with backoff, saying why in the log) and then follows the
// head until ctx ends.
func (s *sqlSide) run(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for s.st.Load() == nil {
		octx, cancel := context.WithTimeout(ctx, s.openTimeout)
		st, err := sqlstore.Open(octx, s.cfg)
		if err != nil && octx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no answer within %s: %w", s.openTimeout, err)
		}
		cancel()
		if err == nil {
			s.st.Store(st)
			s.setErr(nil)
			s.log.Info("event store open")
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.setErr(fmt.Errorf("open event store: %w", err))
		s.log.Error("event store unreachable; not ready, retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	for {
		h, err := s.check(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if s.setErr(err) {
				s.log.Error("event store unreachable; not ready", "err", err)
			}
		} else {
			if s.setErr(nil) {
				s.log.Info("event store reachable again")
			}
			s.pos.Advance(h.Position)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check reads the head within checkTimeout: the health check behind /ready.
func (s *sqlSide) check(ctx context.Context) (chronicle.Head, error) {
	cctx, cancel := context.WithTimeout(ctx, s.checkTimeout)
	defer cancel()
	h, err := s.st.Load().Head(cctx)
	if err != nil && cctx.Err() != nil && ctx.Err() == nil {
		return h, fmt.Errorf("the event store did not answer a head read within %s: %w", s.checkTimeout, err)
	}
	return h, err
}

// setErr records the health of the connection; it reports whether it changed.
func (s *sqlSide) setErr(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := (s.lastErr == nil) != (err == nil)
	s.lastErr = err
	return changed
}

// health is nil when the store is open and its last head read succeeded.
func (s *sqlSide) health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// store returns the store when it is open and its last health check passed. While the
// check fails, callers are answered unavailable at once instead of each waiting on the
// database (for a silently dropped network, until their deadline); the check itself goes
// on, and the first one that passes lets them through again.
func (s *sqlSide) store() (*sqlstore.Store, error) {
	st := s.st.Load()
	if st == nil {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "the event store is not reachable yet")
	}
	if err := s.health(); err != nil {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "the event store is unreachable: %v", err)
	}
	return st, nil
}

// read runs one read for a caller within callTimeout. When that bound, not the caller's
// context, ends it, the database did not answer: unavailable, not the caller's timeout.
func (s *sqlSide) read(ctx context.Context, what string, f func(ctx context.Context, st *sqlstore.Store) error) error {
	st, err := s.store()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	err = f(cctx, st)
	if err != nil && cctx.Err() != nil && ctx.Err() == nil {
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "the event store did not answer %s within %s", what, s.callTimeout)
	}
	return err
}

// Execute implements chronicle.EventStore; what it committed moves the position at once,
// so this process reads its own writes without waiting for the poll. It is bounded by the
// caller's context (the API's request timeout) and the store's own attempt timeout.
func (s *sqlSide) Execute(ctx context.Context, cmds []chronicle.Command) ([]chronicle.Result, error) {
	st, err := s.store()
	if err != nil {
		return nil, err
	}
	res, err := st.Execute(ctx, cmds)
	var top uint64
	for _, r := range res {
		top = max(top, r.Position)
	}
	s.pos.Advance(top)
	return res, err
}

// Account implements chronicle.EventStore.
func (s *sqlSide) Account(ctx context.Context, id string) (a chronicle.Account, err error) {
	err = s.read(ctx, "an account read", func(ctx context.Context, st *sqlstore.Store) (err error) {
		a, err = st.Account(ctx, id)
		return err
	})
	return a, err
}

// BalanceAt implements chronicle.EventStore.
func (s *sqlSide) BalanceAt(ctx context.Context, id string, t time.Time) (p chronicle.BalancePoint, err error) {
	err = s.read(ctx, "a balance read", func(ctx context.Context, st *sqlstore.Store) (err error) {
		p, err = st.BalanceAt(ctx, id, t)
		return err
	})
	return p, err
}

// Events implements chronicle.EventStore.
func (s *sqlSide) Events(ctx context.Context, q chronicle.EventQuery) (evs []chronicle.Event, err error) {
	err = s.read(ctx, "an event read", func(ctx context.Context, st *sqlstore.Store) (err error) {
		evs, err = st.Events(ctx, q)
		return err
	})
	return evs, err
}

// Head implements chronicle.EventStore.
func (s *sqlSide) Head(ctx context.Context) (h chronicle.Head, err error) {
	err = s.read(ctx, "a head read", func(ctx context.Context, st *sqlstore.Store) (err error) {
		h, err = st.Head(ctx)
		return err
	})
	if err == nil {
		s.pos.Advance(h.Position)
	}
	return h, err
}

// Changes signals (coalesced) whenever the known head moves.
func (s *sqlSide) Changes() (<-chan struct{}, func()) { return s.pos.Changes() }

// WaitApplied blocks until the known head reaches pos.
func (s *sqlSide) WaitApplied(ctx context.Context, pos uint64) error {
	if err := s.pos.Wait(ctx, pos); err != nil {
		return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "position %d not reached: %v", pos, err)
	}
	return nil
}

// Close closes the store if it was opened.
func (s *sqlSide) Close() error {
	if st := s.st.Load(); st != nil {
		return st.Close()
	}
	return nil
}

// status describes the event store for /ready.
func (s *sqlSide) status() map[string]any {
	out := map[string]any{"open": s.st.Load() != nil, "position": s.pos.Current()}
	if err := s.health(); err != nil {
		out["error"] = err.Error()
	}
	if st := s.st.Load(); st != nil {
		out["stats"] = st.Stats()
	}
	return out
}

// eventSource is what the node needs of its write side, whichever store it is.
type eventSource interface {
	chronicle.EventStore
	Changes() (<-chan struct{}, func())
	WaitApplied(ctx context.Context, pos uint64) error
	Close() error
}

var (
	_ eventSource = (*sqlSide)(nil)
	_ eventSource = (*raftstore.Store)(nil)
)

// newSQL builds a node on a SQL event store: the store opens in the background (Run), a
// command process serves commands and publishes to NATS, a query process keeps a read
// model with its own projector and serves reads, and "all" does both.
func newSQL(ctx context.Context, n *Node) (*Node, error) {
	cfg := n.cfg
	if err := checkProtected(cfg, nil); err != nil {
		return nil, err
	}
	if cfg.EventStoreURL == "" {
		return nil, errors.New("node: --store sql needs --event-store (a postgres:// URL of CockroachDB or PostgreSQL)")
	}
	switch cfg.Role {
	case httpapi.RoleAll, httpapi.RoleCommand, httpapi.RoleQuery:
	default:
		return nil, fmt.Errorf("node: role %q: want all, command or query", cfg.Role)
	}
	n.sql = newSQLSide(sqlstore.Config{URL: cfg.EventStoreURL, IdempotencyWindow: cfg.IdempotencyWindow, Logger: cfg.Logger}, n.log)
	n.events = n.sql
	var view projector.View
	if cfg.Role != httpapi.RoleCommand {
		var err error
		if view, err = openView(ctx, cfg); err != nil {
			return nil, err
		}
		n.proj = projector.New(n.sql, view, cfg.Logger)
	}
	var err error
	n.bus, err = eventbus.Open(ctx, cfg.busConfig())
	if err != nil {
		if view != nil {
			_ = view.Close()
		}
		return nil, fmt.Errorf("node: event bus: %w", err)
	}
	var reads chronicle.ReadModel
	if view != nil {
		reads = view
	}
	n.api = httpapi.New(n.apiConfig(httpapi.Config{Store: n.sql, Tokens: n.sql, Reads: reads, Node: n}))
	if err := n.registerMetrics(); err != nil {
		_ = n.bus.Close()
		if view != nil {
			_ = view.Close()
		}
		return nil, err
	}
	ln, err := n.listen()
	if err != nil {
		_ = n.bus.Close()
		if view != nil {
			_ = view.Close()
		}
		return nil, fmt.Errorf("node: listen on %s: %w", cfg.HTTPAddr, err)
	}
	n.ln = ln
	n.srv = n.httpServer()
	return n, nil
}

// leaseTTL is how long a publisher lease lasts unrenewed; it is renewed at a third of it.
const leaseTTL = 5 * time.Second

// holdLease keeps trying to take or renew lease name for this process and says in held
// whether it has it, until ctx ends.
func (s *sqlSide) holdLease(ctx context.Context, name string, held *atomic.Bool) {
	holder := chronicle.NewID() // process-unique: every process of a topology may be "n1"
	defer held.Store(false)
	for {
		wait := leaseTTL / 3
		if st := s.st.Load(); st == nil {
			wait = 100 * time.Millisecond // the store is still opening: try again soon
		} else {
			ok, err := st.TryLease(ctx, name, holder, leaseTTL)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("publisher lease", "err", err)
			}
			if was := held.Swap(ok && err == nil); was != held.Load() {
				s.log.Info("publisher lease", "name", name, "held", held.Load())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// open reports whether the store has been opened.
func (s *sqlSide) open() bool { return s.st.Load() != nil }

// ApplyToken implements chronicle.TokenStore on the SQL store once it is open.
func (s *sqlSide) ApplyToken(ctx context.Context, op chronicle.TokenOp) (chronicle.Token, error) {
	st, err := s.store()
	if err != nil {
		return chronicle.Token{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	return st.ApplyToken(ctx, op)
}

// Tokens implements chronicle.TokenStore on the SQL store once it is open.
func (s *sqlSide) Tokens(ctx context.Context) ([]chronicle.Token, error) {
	st, err := s.store()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	return st.Tokens(ctx)
}
