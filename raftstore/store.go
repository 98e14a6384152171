// Package raftstore is the Raft-backed chronicle.EventStore: hashicorp/raft orders command
// batches, raftlog keeps Raft's log, and an FSM applies them to a Pebble state DB.
package raftstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/metrics"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
	"github.com/chronicle-ledger/chronicle/internal/position"
	"github.com/chronicle-ledger/chronicle/raftlog"
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
	// TLS, when set, runs Raft traffic over mutual TLS against the cluster CA; nil keeps
	// plain TCP.
	TLS *TLSConfig
	// Faults, when set, lets tests cut this node's Raft traffic to chosen peers.
	Faults *Faults
	// Probe checks, before a node is admitted, that it answers on its Raft address, the
	// way Raft will reach it. nil: a TCP connection (DialProbe). A transport with TLS
	// sets a probe that completes the handshake, so that a peer without a valid
	// certificate is refused before it enters the configuration.
	Probe func(ctx context.Context, raftAddr string) error
	// Progress asks a joining node how far it has applied the log (see JoinProgress);
	// the leader promotes it to voter only once it has caught up. Join refuses every
	// new member without it.
	Progress func(ctx context.Context, id, apiURL string) (JoinProgress, error)
	// CatchUpTimeout bounds how long a joining node may take to catch up before its
	// admission is rolled back (default DefaultCatchUpTimeout).
	CatchUpTimeout time.Duration
	// Pebble tunes the state DB (zero fields: pebbleutil's defaults).
	Pebble pebbleutil.Tuning
	// LogStore forces the Raft log store of a new data directory (raftlog.KindPebble
	// or raftlog.KindSegment); the default keeps what raft/ holds and gives a new
	// directory a raftlog.SegmentStore.
	LogStore raftlog.Kind
	// WriteGuard, when set, is asked before anything is proposed to Raft (commands,
	// tokens, node metadata); a non-nil error (the disk guard's 507
	// insufficient_storage) is returned as is and nothing is proposed.
	WriteGuard func() error
	// ScrubInterval is how often the background scrub re-reads the Raft log and the
	// state DB (0: DefaultScrubInterval; negative: never, though Scrub still runs a pass).
	ScrubInterval time.Duration
	// Metrics records the write path (commands per entry, entry and log store latency);
	// nil records nothing.
	Metrics *metrics.Raft
	Logger  *slog.Logger
	// Clock is the leader's clock that commit times come from (nil: time.Now); tests of
	// commit-time deadlines (pending transfers) move it.
	Clock func() time.Time
}

// Store is a chronicle.EventStore on hashicorp/raft with Pebble for the log and state.
type Store struct {
	cfg       Config
	log       *slog.Logger
	logs      raftlog.Store
	fsm       *fsm
	raft      *raft.Raft
	transport *heartbeatGate

	queue    chan *request
	inflight chan inflight
	stop     chan struct{}
	wg       sync.WaitGroup

	// headMu guards the last applied head and Raft index, as the FSM reported them.
	headMu     sync.Mutex
	head       chronicle.Head
	appliedIdx uint64
	// applied is the head's position, for WaitApplied and Changes. It moves after head,
	// so whoever it wakes reads a head (and state) at least that far.
	applied position.Waiter

	recent      tailCache
	barrierTerm atomic.Uint64 // last term whose leader barrier completed
	// proposedEntries and proposedCommands count this node's command entries and the
	// commands in them: their ratio is how well group commit fills entries.
	proposedEntries, proposedCommands atomic.Uint64
	// joining admits one node at a time: two joins of the same node (its own retry and
	// the operator's) must not interleave their add, wait and promote steps.
	joining chan struct{}
	ready   atomic.Bool
	// dbFatal receives the state DB's fatal errors (a failed WAL write, e.g. on a full
	// disk) instead of a panic; see pebbleutil.Fatal and Status.Fatal.
	dbFatal  *pebbleutil.Fatal
	hadState bool // Raft state existed at open: this node was already in a cluster

	// fault is the first storage fault met at run time (nil: none); see integrity.go.
	fault atomic.Pointer[storageFault]
	scrub scrubber
	// backups are the online backups in flight (backup.go).
	backups backupGate

	closeOnce sync.Once
	closeErr  error
}

var _ chronicle.EventStore = (*Store)(nil)

// Open opens (creating when new) a store under cfg.DataDir and starts Raft.
func Open(cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeID == "" {
		return nil, errors.New("raftstore: node id is required")
	}
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.CatchUpTimeout <= 0 {
		cfg.CatchUpTimeout = DefaultCatchUpTimeout
	}
	if cfg.Probe == nil {
		cfg.Probe = DialProbe
		if cfg.TLS != nil {
			cfg.Probe = tlsProbe(cfg.TLS.Client)
		}
	}
	log := cfg.Logger.With("component", "raftstore", "node", cfg.NodeID)
	if err := checkDataDir(cfg.DataDir, log); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	for _, d := range []string{"raft", "state", eventsDir, "snapshots"} {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, d), 0o755); err != nil {
			return nil, fmt.Errorf("raftstore: create data dir: %w", err)
		}
	}
	s := &Store{cfg: cfg, log: log, queue: make(chan *request, queueSize),
		inflight: make(chan inflight, maxInflight), stop: make(chan struct{}), joining: make(chan struct{}, 1)}
	s.dbFatal = pebbleutil.NewFatal(func(err error) {
		log.Error("state DB failed: this node stops applying and reports not ready; commands in flight are answered with an unknown outcome; "+
			"restart it once the cause (e.g. a full disk) is fixed: the Raft log holds every acknowledged command", "err", err)
	})
	// The Raft log and the state DB are independent until Raft starts, and each open
	// reads a lot (the log's checks every record; the state DB's loads the working
	// state): open them side by side. A data dir whose raft/ holds a Pebble store keeps
	// it; a new one gets segment files.
	type opened struct {
		logs raftlog.Store
		err  error
	}
	logsc := make(chan opened, 1)
	go func() {
		logs, err := raftlog.Open(filepath.Join(cfg.DataDir, "raft"), cfg.LogStore, log)
		logsc <- opened{logs, err}
	}()
	// stateFailed reports a failure to open the state DB, after the log's own failure if
	// it has one (the log is the truth, its damage the first thing to fix).
	stateFailed := func(err error) error {
		r := <-logsc
		if r.err != nil {
			return r.err
		}
		_ = r.logs.Close()
		return err
	}
	if err := cfg.Pebble.Validate(); err != nil {
		return nil, stateFailed(fmt.Errorf("raftstore: %w", err))
	}
	db, ev, err := openState(cfg.DataDir, cfg.Pebble, log, s.dbFatal)
	if err != nil {
		if isStorageFault(err) {
			return nil, stateFailed(fmt.Errorf("raftstore: %w; this node cannot start from its own files: %s", err, recoverAdvice))
		}
		return nil, stateFailed(fmt.Errorf("raftstore: %w", err))
	}
	closeDBs := func() {
		_ = db.Close()
		_ = ev.Close()
	}
	// The working state is loaded before Raft starts: Raft then restores a newer snapshot
	// (reloading it) or replays the log tail on top of it.
	if s.fsm, err = newFSM(log, db, ev, s.noteApplied); err != nil {
		closeDBs()
		if isStorageFault(err) {
			return nil, stateFailed(fmt.Errorf("raftstore: the state DB in %s is damaged: %w; this node cannot start from its own files: %s",
				filepath.Join(cfg.DataDir, "state"), err, recoverAdvice))
		}
		return nil, stateFailed(fmt.Errorf("raftstore: %w", err))
	}
	r := <-logsc
	if r.err != nil {
		closeDBs()
		return nil, r.err
	}
	s.logs = &guardedLogs{Store: r.logs, onFault: func(err error) { s.noteFault(storeRaftLog, err) }, metrics: cfg.Metrics}
	s.fsm.onFault = func(err error) { s.noteFault(storeStateDB, err) }
	if err := checkHead(reader{db, ev}, s.fsm.mem.head, stateDirs(cfg.DataDir)); err != nil {
		s.closeStores()
		return nil, fmt.Errorf("raftstore: %w", err)
	}
	s.head, s.appliedIdx = s.fsm.mem.head, s.fsm.mem.applied
	s.applied.Reset(s.head.Position)
	log.Info("opening store", "position", s.head.Position, "applied_index", s.appliedIdx)
	if err := s.startRaft(); err != nil {
		s.closeStores()
		return nil, err
	}
	s.wg.Add(3)
	go s.batcher()
	go s.completer()
	go s.scrubLoop()

	return s, nil
}

// noteApplied records the new head, keeps the newest events for readers that follow the
// tail of the log, and wakes waiters.
func (s *Store) noteApplied(h chronicle.Head, idx uint64, events []chronicle.Event) {
	s.headMu.Lock()
	s.head, s.appliedIdx = h, idx
	s.headMu.Unlock()
	s.recent.add(h, events)
	if events == nil {
		// A restore replaced the state (or nothing was appended): the head is whatever
		// the state now says, as it was before the waiter existed.
		s.applied.Reset(h.Position)
	} else {
		s.applied.Advance(h.Position)
	}
}

// Changes returns a channel that receives a signal (coalesced) after the log grows, and a
// function that stops the signals. Watchers read the log themselves to see what is new.
func (s *Store) Changes() (<-chan struct{}, func()) { return s.applied.Changes() }

// Close stops accepting commands, shuts Raft down and closes both Pebble instances.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.wg.Wait()
		s.backups.close()
		// Goroutines parked in the state DB's Fatalf (Raft's FSM among them) end now, so
		// that Raft's shutdown does not wait for them forever.
		s.dbFatal.Release()
		var errs []error
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
			}
		}
		if s.transport != nil {
			// Heartbeats run on the transport's goroutines, outside raft's shutdown: let
			// those in flight finish before the log store they write to closes.
			s.transport.drain()
			_ = s.transport.Close()
		}
		errs = append(errs, s.closeStores())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Store) closeStores() error {
	var errs []error
	if err := s.dbFatal.Err(); err != nil {
		// Pebble's commit pipeline is unusable after a fatal error and Close could hang
		// in it: leave the DB to the OS; the next start replays its WAL and the Raft log.
		s.log.Error("state DB not closed after its fatal error; restart the node once the cause (e.g. a full disk) is fixed", "err", err)
	} else if s.fsm != nil {
		s.fsm.mu.Lock()
		if err := closeState(s.fsm.db, s.fsm.ev); err != nil {
			errs = append(errs, err)
		}
		s.fsm.mu.Unlock()
	}
	if s.logs != nil {
		errs = append(errs, s.logs.Close())
	}
	return errors.Join(errs...)
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
	if err := s.applied.Wait(ctx, pos); err != nil {
		return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "position %d not reached: %v", pos, err)
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
	// StorageFault is the first storage fault met at run time: which store, where, the
	// error and the way out. A node with one serves nothing and has left Raft.
	StorageFault string `json:"storage_fault,omitempty"`
	// Scrub is the background scrub's last pass.
	Scrub ScrubStatus `json:"scrub"`
	// ProposedEntries and ProposedCommands count the command entries this node proposed
	// (as leader) and the commands they carried, since it started.
	ProposedEntries  uint64 `json:"proposed_entries"`
	ProposedCommands uint64 `json:"proposed_commands"`
}

// Status reports this node's Raft role and progress.
func (s *Store) Status() Status {
	addr, id := s.raft.LeaderWithID()
	st := s.raft.Stats()
	s.headMu.Lock()
	pos, applied := s.head.Position, s.appliedIdx
	s.headMu.Unlock()
	out := Status{NodeID: s.cfg.NodeID, State: s.raft.State().String(), Leader: string(id), LeaderAddr: string(addr),
		Term: parseUint(st["term"]), CommitIndex: parseUint(st["commit_index"]), AppliedIndex: applied, RaftApplied: s.raft.AppliedIndex(), Position: pos,
		LastContact: st["last_contact"], ProposedEntries: s.proposedEntries.Load(), ProposedCommands: s.proposedCommands.Load()}
	if err := s.fsm.failed(); err != nil {
		out.Fatal = err.Error()
	}
	if err := s.dbFatal.Err(); err != nil && out.Fatal == "" {
		out.Fatal = "state DB write failed, restart the node once the cause is fixed: " + err.Error()
	}
	out.StorageFault = s.StorageFault()
	out.Scrub = s.scrub.status()
	return out
}

func parseUint(s string) uint64 {
	var v uint64
	_, _ = fmt.Sscan(s, &v)
	return v
}
