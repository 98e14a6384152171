package raftstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/groupcommit"
)

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
	future   raft.ApplyFuture
	reqs     []*request
	proposed time.Time // zero when not measured
}

// Bounds on the write path: queued calls, and entries in Raft not yet applied.
// maxInflight is the buffer between the batcher and the completer: with none, at most
// two entries are in Raft at once (one the completer awaits, one being handed to it),
// so while one is fsynced and applied the next gathers every command that arrives
// meanwhile. Measured at concurrency 64 on 2 cores: 12-15 commands per entry and about
// 1.2x the transfers/s of a buffer of 2 (7-9 commands per entry).
const (
	queueSize   = 4096
	maxInflight = 0
)

// Execute implements chronicle.EventStore.
func (s *Store) Execute(ctx context.Context, cmds []chronicle.Command) ([]chronicle.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	if len(cmds) > chronicle.MaxBatchCommands {
		return nil, chronicle.Errorf(chronicle.KindTooLarge, chronicle.CodeBatchTooLarge, "at most %d commands per batch", chronicle.MaxBatchCommands)
	}
	if err := s.faultErr(); err != nil {
		return nil, err
	}
	if err := s.fsm.failed(); err != nil {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "node stopped applying: %v", err)
	}
	if err := s.dbFatal.Err(); err != nil {
		return nil, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "node stopped applying: %v", err)
	}
	if s.raft.State() != raft.Leader {
		return nil, s.notLeader()
	}
	// After the leader check: a follower forwards to the leader, whose disk decides.
	if err := s.writeGuard(); err != nil {
		return nil, err
	}
	req := &request{cmds: cmds, done: make(chan requestResult, 1)}
	// Once the batcher and the completer have returned, every request they took has its
	// answer; one still without an answer was never proposed.
	r, status := groupcommit.Submit(ctx, s.queue, req, req.done, s.stop, s.wg.Wait)
	switch status {
	case groupcommit.Answered:
		return r.results, r.err
	case groupcommit.Stopped:
		return nil, errStopping()
	default:
		// Queued or not, the caller cannot tell: it treats the outcome as unknown.
		return nil, ctxError(ctx)
	}
}

func ctxError(ctx context.Context) error {
	return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "request ended before the command was acknowledged: %v; it may still commit", ctx.Err())
}

func errStopping() error {
	return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "node is shutting down")
}

// writeGuard asks Config.WriteGuard (the disk guard) whether anything may be proposed.
func (s *Store) writeGuard() error {
	if s.cfg.WriteGuard == nil {
		return nil
	}
	return s.cfg.WriteGuard()
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
// (up to MaxBatchCommands) and proposes it; with at most two entries in flight
// (maxInflight), the next one fills while the previous is fsynced and applied.
func (s *Store) batcher() {
	defer s.wg.Done()
	defer close(s.inflight)
	g := groupcommit.Gatherer[*request]{Queue: s.queue, Size: func(r *request) int { return len(r.cmds) },
		Limit: chronicle.MaxBatchCommands}
	for {
		reqs, n, ok := g.Next(s.stop)
		if !ok {
			s.drainQueue()
			return
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
	// Checked again here: the disk may have crossed the reserve while these waited.
	if err := s.writeGuard(); err != nil {
		failAll(reqs, err)
		return
	}
	now := time.Now
	if s.cfg.Clock != nil {
		now = s.cfg.Clock
	}
	batch := chronicle.Batch{Time: now().UTC(), IdempotencyWindow: s.cfg.IdempotencyWindow,
		Commands: make([]chronicle.Command, 0, n)}
	for _, r := range reqs {
		batch.Commands = append(batch.Commands, r.cmds...)
	}
	payload, err := batch.MarshalBinary()
	if err != nil {
		failAll(reqs, fmt.Errorf("encode batch: %w", err))
		return
	}
	var proposed time.Time
	if s.cfg.Metrics != nil {
		proposed = time.Now()
	}
	f := s.raft.Apply(chronicle.EncodeEntry(chronicle.EntryCommandBatch, payload), s.cfg.ApplyTimeout)
	s.proposedEntries.Add(1)
	s.proposedCommands.Add(uint64(n))
	s.cfg.Metrics.EntryProposed(n)
	// Hand the entry to the completer even when stopping: Raft may commit it, so only its
	// future can tell the callers how it ended. The completer runs until the batcher
	// returns and closes s.inflight, so this send cannot block forever.
	s.inflight <- inflight{future: f, reqs: reqs, proposed: proposed}
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
		if err := s.await(in.future); err != nil {
			if ferr := s.faultErr(); ferr != nil {
				// Raft left because of the fault: say why, not just that it stopped.
				err = ferr
			} else {
				err = s.applyError(err)
			}
			failAll(in.reqs, err)
			continue
		}
		resp, ok := in.future.Response().(applyResponse)
		if !ok || resp.err != nil {
			err := resp.err
			if err == nil {
				err = errors.New("unexpected apply response")
			}
			if ferr := s.faultErr(); ferr != nil {
				failAll(in.reqs, ferr)
				continue
			}
			failAll(in.reqs, chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "apply failed: %v", err))
			continue
		}
		if !in.proposed.IsZero() {
			s.cfg.Metrics.EntryApplied(time.Since(in.proposed))
		}
		i := 0
		for _, r := range in.reqs {
			res := resp.results[i : i+len(r.cmds)]
			i += len(r.cmds)
			if err := s.fillReplayed(res); err != nil {
				if ferr := s.faultErr(); ferr != nil {
					r.done <- requestResult{err: ferr}
					continue
				}
				r.done <- requestResult{err: chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "read back the events of a replayed command: %v", err)}
				continue
			}
			r.done <- requestResult{results: res}
		}
	}
}

// errRaftGone: Raft shut down (a removed leader shuts itself down) while an entry waited
// in its apply queue, where nothing will ever answer it.
var errRaftGone = errors.New("raft shut down before the entry was answered")

// errStateDBFailed: the state DB reported a fatal error while the entry waited.
var errStateDBFailed = errors.New("the state DB failed before the entry was applied")

// await waits for f like f.Error(), but gives up once Raft has shut down: hashicorp/raft
// leaves entries still in its apply queue unanswered then, and Close would wait forever.
func (s *Store) await(f raft.ApplyFuture) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if s.dbFatal.Err() != nil {
				// The state DB failed and the FSM is parked: this entry will not be
				// answered until a restart applies it from the log.
				select {
				case err := <-done:
					return err
				default:
					return errStateDBFailed
				}
			}
			if s.raft.State() == raft.Shutdown {
				// One last look: the answer may have raced the shutdown.
				select {
				case err := <-done:
					return err
				default:
					return errRaftGone
				}
			}
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
	case errors.Is(err, errStateDBFailed):
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable,
			"the state DB failed (%v) before the command was applied; its outcome is unknown: it applies when the node restarts if it reached the Raft log", s.dbFatal.Err())
	case errors.Is(err, errRaftGone):
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "raft shut down before the command was acknowledged; its outcome is unknown")
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "raft is overloaded: %v", err)
	default:
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "raft apply: %v", err)
	}
}

// fillReplayed gives each replayed result its events, read back from the log by position:
// an idempotency record keeps positions, not events. This runs here, on the leader that
// answers, rather than in the state machine, which every replica runs and which reads
// only memory. The entry has been applied, so its events (even those of an original in
// the same entry) are in the state DB, and usually still in the tail cache.
func (s *Store) fillReplayed(results []chronicle.Result) error {
	for i := range results {
		r := &results[i]
		if !r.Replayed || r.EventCount == 0 {
			continue
		}
		first := r.FirstPosition()
		evs, ok := s.recent.after(first-1, r.EventCount)
		if !ok || len(evs) != r.EventCount || evs[len(evs)-1].Position != r.Position {
			if err := s.read(func(rd reader) error {
				var err error
				evs, err = rd.events(first, r.Position)
				return err
			}); err != nil {
				return fmt.Errorf("events %d to %d: %w", first, r.Position, err)
			}
		}
		r.SetEvents(evs)
	}
	return nil
}
