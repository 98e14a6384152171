package raftlog

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
)

// Config configures a Store.
type Config struct {
	// DataDir holds raft/ (log and stable store), state/ (ledger state) and snapshots/.
	DataDir string
	// NodeID names this node in the Raft configuration.
	NodeID string
	// RaftAddr is the host:port the Raft transport listens on and advertises.
	RaftAddr string
	// Bootstrap makes a node with no Raft state form a one-node cluster of itself.
	Bootstrap bool
	// IdempotencyWindow is how long, in commit time, idempotency keys are remembered.
	IdempotencyWindow time.Duration
	// SnapshotThreshold is the number of log entries between snapshots (0: default).
	SnapshotThreshold uint64
	// TrailingLogs is the number of entries kept behind a snapshot (0: default).
	TrailingLogs uint64
	// ApplyTimeout bounds how long a command waits to be enqueued into Raft.
	ApplyTimeout time.Duration
	// Faults, when set, lets tests cut this node's Raft traffic to chosen peers.
	Faults *Faults
	Logger *slog.Logger
}

// Store is a chronicle.EventStore on hashicorp/raft with Pebble for the log and state.
type Store struct {
	cfg       Config
	log       *slog.Logger
	logs      *LogStore
	fsm       *fsm
	raft      *raft.Raft
	transport *raft.NetworkTransport

	queue    chan *request
	inflight chan inflight
	stop     chan struct{}
	wg       sync.WaitGroup

	// applied tracks the last applied head so waiters can block until a position.
	appliedMu   sync.Mutex
	appliedCond *sync.Cond
	head        chronicle.Head
	appliedIdx  uint64

	// watchers are woken (without blocking) whenever the log grows.
	watchMu  sync.Mutex
	watchers map[chan struct{}]struct{}

	recent      tailCache
	barrierTerm atomic.Uint64 // last term whose leader barrier completed
	ready       atomic.Bool
	hadState    bool // Raft state existed at open: this node was already in a cluster

	closeOnce sync.Once
	closeErr  error
}

var _ chronicle.EventStore = (*Store)(nil)

// request is one Execute call waiting for its results.
type request struct {
	cmds []chronicle.Command
	done chan requestResult
}

type requestResult struct {
	results []chronicle.Result
	err     error
}

// inflight is a Raft entry proposed but not yet applied, with the calls it serves.
type inflight struct {
	future raft.ApplyFuture
	reqs   []*request
}

// Bounds on the write path: queued calls, and entries in Raft not yet applied.
const (
	queueSize   = 4096
	maxInflight = 2
)

// Open opens (creating when new) a store under cfg.DataDir and starts Raft.
func Open(cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeID == "" {
		return nil, errors.New("raftlog: node id is required")
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	log := cfg.Logger.With("component", "raftlog", "node", cfg.NodeID)
	for _, d := range []string{"raft", "state", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("raftlog: create data dir: %w", err)
		}
	}
	s := &Store{cfg: cfg, log: log, queue: make(chan *request, queueSize),
		inflight: make(chan inflight, maxInflight), stop: make(chan struct{})}
	s.appliedCond = sync.NewCond(&s.appliedMu)
	var err error
	if s.logs, err = OpenLogStore(filepath.Join(cfg.DataDir, "raft"), log); err != nil {
		return nil, err
	}
	db, err := pebble.Open(filepath.Join(cfg.DataDir, "state"), &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log},
	})
	if err != nil {
		_ = s.logs.Close()
		return nil, fmt.Errorf("raftlog: open state db: %w", err)
	}
	s.fsm = &fsm{log: log, db: db, onApply: s.noteApplied}
	rd := reader{db}
	if s.head, err = rd.head(); err != nil {
		s.closeStores()
		return nil, fmt.Errorf("raftlog: read head: %w", err)
	}
	if s.appliedIdx, err = rd.applied(); err != nil {
		s.closeStores()
		return nil, fmt.Errorf("raftlog: read applied index: %w", err)
	}
	log.Info("opening store", "position", s.head.Position, "applied_index", s.appliedIdx)
	if err := s.startRaft(); err != nil {
		s.closeStores()
		return nil, err
	}
	s.wg.Add(2)
	go s.batcher()
	go s.completer()

	return s, nil
}

func (s *Store) startRaft() error {
	cfg := s.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = newHCLogger(s.log)
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	// Detect a lost leader in about a second on a LAN without flapping under load.
	rc.HeartbeatTimeout = 700 * time.Millisecond
	rc.ElectionTimeout = 700 * time.Millisecond
	rc.LeaderLeaseTimeout = 500 * time.Millisecond
	// Check every 30 s (raft's default is 2 min) whether SnapshotThreshold entries have
	// accumulated, so the log and restart replay stay short.
	rc.SnapshotInterval = 30 * time.Second
	rc.SnapshotThreshold = 8192
	rc.TrailingLogs = 10240
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "snapshots"), 2, rc.Logger)
	if err != nil {
		return fmt.Errorf("raftlog: snapshot store: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return fmt.Errorf("raftlog: raft address %q: %w", cfg.RaftAddr, err)
	}
	var advertise net.Addr = addr
	if addr.Port == 0 {
		advertise = nil // an OS-chosen port (tests): advertise what the listener got
	}
	if cfg.Faults != nil {
		ln, err := net.Listen("tcp", cfg.RaftAddr)
		if err != nil {
			return fmt.Errorf("raftlog: listen for raft on %s: %w", cfg.RaftAddr, err)
		}
		s.transport = raft.NewNetworkTransportWithLogger(&faultyLayer{Listener: ln, advertise: advertise, faults: cfg.Faults}, 3, 10*time.Second, rc.Logger)
	} else if s.transport, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, advertise, 3, 10*time.Second, rc.Logger); err != nil {
		return fmt.Errorf("raftlog: listen for raft on %s: %w", cfg.RaftAddr, err)
	}
	existing, err := raft.HasExistingState(s.logs, s.logs, snaps)
	if err != nil {
		_ = s.transport.Close()
		return fmt.Errorf("raftlog: inspect raft state: %w", err)
	}
	s.hadState = existing
	if s.raft, err = raft.NewRaft(rc, s.fsm, s.logs, s.logs, snaps, s.transport); err != nil {
		_ = s.transport.Close()
		return fmt.Errorf("raftlog: start raft: %w", err)
	}
	if !existing && cfg.Bootstrap {
		f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: s.transport.LocalAddr(),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("raftlog: bootstrap: %w", err)
		}
		s.log.Info("bootstrapped a one-node cluster", "raft_addr", s.transport.LocalAddr())
	}
	return nil
}

// noteApplied records the new head, keeps the newest events for readers that follow the
// tail of the log, and wakes waiters.
func (s *Store) noteApplied(h chronicle.Head, idx uint64, events []chronicle.Event) {
	s.appliedMu.Lock()
	s.head, s.appliedIdx = h, idx
	s.appliedMu.Unlock()
	s.recent.add(h, events)
	s.appliedCond.Broadcast()
	s.watchMu.Lock()
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default: // already signalled; the watcher will read everything new anyway
		}
	}
	s.watchMu.Unlock()
}

// Changes returns a channel that receives a signal (coalesced) after the log grows, and a
// function that stops the signals. Watchers read the log themselves to see what is new.
func (s *Store) Changes() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.watchMu.Lock()
	if s.watchers == nil {
		s.watchers = map[chan struct{}]struct{}{}
	}
	s.watchers[ch] = struct{}{}
	s.watchMu.Unlock()
	return ch, func() {
		s.watchMu.Lock()
		delete(s.watchers, ch)
		s.watchMu.Unlock()
	}
}

// Close stops accepting commands, shuts Raft down and closes both Pebble instances.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		var errs []error
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
			}
		}
		if s.transport != nil {
			_ = s.transport.Close()
		}
		errs = append(errs, s.closeStores())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Store) closeStores() error {
	var errs []error
	if s.fsm != nil {
		s.fsm.mu.Lock()
		if err := s.fsm.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close state db: %w", err))
		}
		s.fsm.mu.Unlock()
	}
	if s.logs != nil {
		errs = append(errs, s.logs.Close())
	}
	return errors.Join(errs...)
}

// Execute implements chronicle.EventStore.
func (s *Store) Execute(ctx context.Context, cmds []chronicle.Command) ([]chronicle.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	if len(cmds) > chronicle.MaxBatchCommands {
		return nil, chronicle.Errorf(chronicle.KindTooLarge, chronicle.CodeBatchTooLarge, "at most %d commands per batch", chronicle.MaxBatchCommands)
	}
	if err := s.fsm.failed(); err != nil {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "node stopped applying: %v", err)
	}
	if s.raft.State() != raft.Leader {
		return nil, s.notLeader()
	}
	req := &request{cmds: cmds, done: make(chan requestResult, 1)}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		return nil, ctxError(ctx)
	case <-s.stop:
		return nil, errStopping()
	}
	select {
	case r := <-req.done:
		return r.results, r.err
	case <-s.stop:
		// The request may have been queued after the batcher drained the queue for the
		// last time. Once the batcher and the completer have returned, every request they
		// took has its answer; one still without an answer was never proposed.
		s.wg.Wait()
		select {
		case r := <-req.done:
			return r.results, r.err
		default:
			return nil, errStopping()
		}
	case <-ctx.Done():
		// The command may still commit: the caller must treat the outcome as unknown.
		return nil, ctxError(ctx)
	}
}

func ctxError(ctx context.Context) error {
	return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "request ended before the command was acknowledged: %v; it may still commit", ctx.Err())
}

func errStopping() error {
	return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "node is shutting down")
}

func (s *Store) notLeader() error {
	addr, id := s.raft.LeaderWithID()
	if addr == "" {
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNoLeader, "no leader is elected")
	}
	e := chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNotLeader, "this node is not the leader; leader is %s at %s", id, addr)
	e.Safe = true
	return e
}

// batcher is the group commit: it gathers whatever calls are queued into one Raft entry
// (up to MaxBatchCommands) and proposes it without waiting for the previous entry, so
// Raft's own pipeline writes many entries with one fsync.
func (s *Store) batcher() {
	defer s.wg.Done()
	defer close(s.inflight)
	var carry *request
	for {
		var reqs []*request
		n := 0
		if carry != nil {
			reqs, n, carry = append(reqs, carry), len(carry.cmds), nil
		} else {
			select {
			case r := <-s.queue:
				reqs, n = append(reqs, r), len(r.cmds)
			case <-s.stop:
				s.drainQueue()
				return
			}
		}
	gather:
		for n < chronicle.MaxBatchCommands {
			select {
			case r := <-s.queue:
				if n+len(r.cmds) > chronicle.MaxBatchCommands {
					carry = r
					break gather
				}
				reqs, n = append(reqs, r), n+len(r.cmds)
			default:
				break gather
			}
		}
		s.propose(reqs, n)
	}
}

func (s *Store) drainQueue() {
	for {
		select {
		case r := <-s.queue:
			r.done <- requestResult{err: errStopping()}
		default:
			return
		}
	}
}

func (s *Store) propose(reqs []*request, n int) {
	batch := chronicle.Batch{Time: time.Now().UTC(), IdempotencyWindow: s.cfg.IdempotencyWindow,
		Commands: make([]chronicle.Command, 0, n)}
	for _, r := range reqs {
		batch.Commands = append(batch.Commands, r.cmds...)
	}
	data, err := json.Marshal(batch)
	if err != nil {
		failAll(reqs, fmt.Errorf("encode batch: %w", err))
		return
	}
	f := s.raft.Apply(data, s.cfg.ApplyTimeout)
	// Hand the entry to the completer even when stopping: Raft may commit it, so only its
	// future can tell the callers how it ended. The completer runs until the batcher
	// returns and closes s.inflight, so this send cannot block forever.
	s.inflight <- inflight{future: f, reqs: reqs}
}

func failAll(reqs []*request, err error) {
	for _, r := range reqs {
		r.done <- requestResult{err: err}
	}
}

// completer hands each applied entry's results back to the calls it carried.
func (s *Store) completer() {
	defer s.wg.Done()
	for in := range s.inflight {
		if err := in.future.Error(); err != nil {
			failAll(in.reqs, s.applyError(err))
			continue
		}
		resp, ok := in.future.Response().(applyResponse)
		if !ok || resp.err != nil {
			err := resp.err
			if err == nil {
				err = errors.New("unexpected apply response")
			}
			failAll(in.reqs, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "apply failed: %v", err))
			continue
		}
		i := 0
		for _, r := range in.reqs {
			r.done <- requestResult{results: resp.results[i : i+len(r.cmds)]}
			i += len(r.cmds)
		}
	}
}

// applyError maps a Raft apply failure to what a client should be told.
func (s *Store) applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Raft refused the entry before appending it: nothing can commit.
		e := chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNotLeader, "this node stopped leading before the command was proposed (%v)", err)
		e.Safe = true
		return e
	case errors.Is(err, raft.ErrLeadershipLost):
		// ErrLeadershipLost: the entry may or may not commit under the next leader.
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeNotLeader, "leadership changed before the command was acknowledged (%v); its outcome is unknown", err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return errStopping()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "raft is overloaded: %v", err)
	default:
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "raft apply: %v", err)
	}
}

// WaitLeader blocks until some node is the leader (this one, for a single node).
func (s *Store) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := s.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leader: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// WaitReady blocks until this node's state includes every entry committed before it
// started: after a restart Raft re-applies the tail of the log only once a leader commits
// in its new term, and until then reads would miss acknowledged commands.
func (s *Store) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.raft.State() == raft.Leader {
			// A barrier returns once everything before it is applied to the FSM.
			if err := s.raft.Barrier(5 * time.Second).Error(); err == nil {
				s.ready.Store(true)
				return nil
			}
		} else if addr, _ := s.raft.LeaderWithID(); addr != "" {
			// Raft's own applied index counts the no-op and barrier entries a new term
			// starts with, which never reach the FSM.
			if commit := s.raft.CommitIndex(); commit > 0 && s.raft.AppliedIndex() >= commit {
				s.ready.Store(true)
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait until caught up: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// Ready reports whether WaitReady has seen this node caught up.
func (s *Store) Ready() bool { return s.ready.Load() }

// WaitApplied blocks until this node has applied at least position pos.
func (s *Store) WaitApplied(ctx context.Context, pos uint64) error {
	stop := context.AfterFunc(ctx, func() {
		s.appliedMu.Lock()
		defer s.appliedMu.Unlock()
		s.appliedCond.Broadcast()
	})
	defer stop()
	s.appliedMu.Lock()
	defer s.appliedMu.Unlock()
	for s.head.Position < pos {
		if ctx.Err() != nil {
			return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "position %d not reached: %v", pos, ctx.Err())
		}
		s.appliedCond.Wait()
	}
	return nil
}

// Status is a summary of this node for /ready and /cluster.
type Status struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	LeaderAddr   string `json:"leader_addr"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Position     uint64 `json:"position"`
	// RaftApplied is Raft's applied index, which also counts entries (no-ops, barriers,
	// configuration) that never reach the ledger state.
	RaftApplied uint64 `json:"raft_applied_index"`
	// LastContact is how long ago a follower last heard from the leader ("0" on the leader).
	LastContact string `json:"last_contact"`
	Fatal       string `json:"fatal,omitempty"`
}

// Status reports this node's Raft role and progress.
func (s *Store) Status() Status {
	addr, id := s.raft.LeaderWithID()
	st := s.raft.Stats()
	s.appliedMu.Lock()
	pos, applied := s.head.Position, s.appliedIdx
	s.appliedMu.Unlock()
	out := Status{NodeID: s.cfg.NodeID, State: s.raft.State().String(), Leader: string(id), LeaderAddr: string(addr),
		Term: parseUint(st["term"]), CommitIndex: parseUint(st["commit_index"]), AppliedIndex: applied, RaftApplied: s.raft.AppliedIndex(), Position: pos,
		LastContact: st["last_contact"]}
	if err := s.fsm.failed(); err != nil {
		out.Fatal = err.Error()
	}
	return out
}

func parseUint(s string) uint64 {
	var v uint64
	_, _ = fmt.Sscan(s, &v)
	return v
}

// Snapshot forces a Raft snapshot (and the log truncation behind it).
func (s *Store) Snapshot() error {
	if err := s.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("raftlog: snapshot: %w", err)
	}
	return nil
}

// read runs fn against the state DB under the restore lock.
func (s *Store) read(fn func(rd reader) error) error {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return fn(reader{s.fsm.db})
}

// Head implements chronicle.EventStore.
func (s *Store) Head(ctx context.Context) (chronicle.Head, error) {
	s.appliedMu.Lock()
	defer s.appliedMu.Unlock()
	return s.head, nil
}

// Account implements chronicle.EventStore.
func (s *Store) Account(ctx context.Context, id string) (chronicle.Account, error) {
	var a chronicle.Account
	err := s.read(func(rd reader) error {
		var ok bool
		var err error
		a, ok, err = rd.Account(id)
		if err != nil {
			return fmt.Errorf("raftlog: read account: %w", err)
		}
		if !ok || a.External() {
			return chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeAccountNotFound, "account %q not found", id)
		}
		return nil
	})
	return a, err
}

// Accounts implements chronicle.EventStore.
func (s *Store) Accounts(ctx context.Context, after string, limit int) ([]chronicle.Account, error) {
	out := []chronicle.Account{}
	err := s.read(func(rd reader) error {
		lower := []byte{prefixAccount}
		if after != "" {
			lower = append(accountKey(after), 0)
		}
		it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{prefixAccount + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for it.First(); it.Valid() && len(out) < limit; it.Next() {
			var a chronicle.Account
			if err := json.Unmarshal(it.Value(), &a); err != nil {
				return fmt.Errorf("raftlog: decode account: %w", err)
			}
			if !a.External() {
				out = append(out, a)
			}
		}
		return it.Error()
	})
	return out, err
}

// Transactions implements chronicle.EventStore.
func (s *Store) Transactions(ctx context.Context, id string, before uint64, limit int) ([]chronicle.Event, error) {
	if _, err := s.Account(ctx, id); err != nil {
		return nil, err
	}
	out := []chronicle.Event{}
	err := s.read(func(rd reader) error {
		prefix := streamPrefix(id)
		upper := prefixEnd(prefix)
		if before > 0 {
			upper = streamKey(id, before)
		}
		it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
		if err != nil {
			return err
		}
		defer it.Close()
		for it.Last(); it.Valid() && len(out) < limit; it.Prev() {
			e, ok, err := rd.event(binary.BigEndian.Uint64(it.Value()))
			if err != nil {
				return fmt.Errorf("raftlog: read event: %w", err)
			}
			if ok {
				out = append(out, e)
			}
		}
		return it.Error()
	})
	return out, err
}

// BalanceAt implements chronicle.EventStore.
func (s *Store) BalanceAt(ctx context.Context, id string, t time.Time) (chronicle.BalancePoint, error) {
	if _, err := s.Account(ctx, id); err != nil {
		return chronicle.BalancePoint{}, err
	}
	var p chronicle.BalancePoint
	err := s.read(func(rd reader) error {
		var ok bool
		var err error
		p, ok, err = rd.balanceAt(id, t)
		if err != nil {
			return fmt.Errorf("raftlog: balance history: %w", err)
		}
		if !ok {
			return chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeAccountNotFound, "account %q did not exist at %s", id, t.UTC().Format(time.RFC3339Nano))
		}
		return nil
	})
	return p, err
}

// Events implements chronicle.EventStore.
func (s *Store) Events(ctx context.Context, q chronicle.EventQuery) ([]chronicle.Event, error) {
	if q.Limit <= 0 || q.Limit > chronicle.MaxEventsPage {
		q.Limit = chronicle.MaxEventsPage
	}
	if !q.Descending && q.EventType == "" && q.AggregateID == "" {
		// The projector, the publisher and live streams all read just behind the head.
		if evs, ok := s.recent.after(q.After, q.Limit); ok {
			return evs, nil
		}
	}
	out := []chronicle.Event{}
	err := s.read(func(rd reader) error {
		// Pick the narrowest index: an account's stream, an event type, or the log itself.
		var lower, upper []byte
		var posOf func(k, v []byte) uint64
		switch {
		case q.AggregateID != "":
			lower, upper = streamPrefix(q.AggregateID), prefixEnd(streamPrefix(q.AggregateID))
			posOf = func(_, v []byte) uint64 { return binary.BigEndian.Uint64(v) }
		case q.EventType != "":
			n := len(typePrefix(q.EventType))
			lower, upper = typePrefix(q.EventType), prefixEnd(typePrefix(q.EventType))
			if q.Descending && q.After > 0 {
				upper = typeKey(q.EventType, q.After)
			} else if !q.Descending {
				lower = typeKey(q.EventType, q.After+1)
			}
			posOf = func(k, _ []byte) uint64 { return binary.BigEndian.Uint64(k[n:]) }
		default:
			lower, upper = []byte{prefixEvent}, []byte{prefixEvent + 1}
			if q.Descending && q.After > 0 {
				upper = eventKey(q.After)
			} else if !q.Descending {
				lower = eventKey(q.After + 1)
			}
			posOf = func(k, _ []byte) uint64 { return binary.BigEndian.Uint64(k[1:]) }
		}
		it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		defer it.Close()
		// Stream keys are ordered by version, which follows position within an account.
		valid := it.First()
		step := it.Next
		if q.Descending {
			valid, step = it.Last(), it.Prev
		}
		for ; valid && len(out) < q.Limit; valid = step() {
			pos := posOf(it.Key(), it.Value())
			if q.Descending && q.After > 0 && pos >= q.After || !q.Descending && pos <= q.After {
				continue
			}
			e, ok, err := rd.event(pos)
			if err != nil {
				return fmt.Errorf("raftlog: read event %d: %w", pos, err)
			}
			if !ok || q.EventType != "" && e.EventType != q.EventType {
				continue
			}
			out = append(out, e)
		}
		return it.Error()
	})
	return out, err
}

// hcLogger adapts hashicorp/raft's hclog output to slog, one line a record.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name: "raft", Level: hclog.Info, Output: slogWriter{l.With("component", "raft")},
		DisableTime: true,
	})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	switch {
	case strings.Contains(line, "[ERROR]"):
		level = slog.LevelError
	case strings.Contains(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.Contains(line, "[DEBUG]"), strings.Contains(line, "[TRACE]"):
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, line)
	return len(p), nil
}

var _ io.Writer = slogWriter{}
