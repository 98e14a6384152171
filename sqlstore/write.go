package sqlstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/groupcommit"
)

// request is one Execute call waiting for its results.
type request struct {
	ctx  context.Context
	cmds []chronicle.Command
	done chan requestResult
}

type requestResult struct {
	results []chronicle.Result
	err     error
}

// Execute implements chronicle.EventStore. Commands should carry an ID (the node gives
// each one): it is what lets a retry after an ambiguous commit find the command's events
// instead of applying it again. A command without one is not protected that way.
func (s *Store) Execute(ctx context.Context, cmds []chronicle.Command) ([]chronicle.Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	if len(cmds) > chronicle.MaxBatchCommands {
		return nil, chronicle.Errorf(chronicle.KindTooLarge, chronicle.CodeBatchTooLarge, "at most %d commands per batch", chronicle.MaxBatchCommands)
	}
	if err := s.brokenErr(); err != nil {
		return nil, err
	}
	req := &request{ctx: ctx, cmds: cmds, done: make(chan requestResult, 1)}
	select {
	case <-s.stop:
		return nil, errStopping()
	default:
	}
	// The batcher answers every request it took before returning; one still without an
	// answer once it has returned was never in a transaction.
	r, status := groupcommit.Submit(ctx, s.queue, req, req.done, s.stop, s.wg.Wait)
	switch status {
	case groupcommit.Answered:
		return r.results, r.err
	case groupcommit.Canceled:
		return nil, ctxError(ctx, false)
	case groupcommit.Unknown:
		return nil, ctxError(ctx, true)
	default:
		return nil, errStopping()
	}
}

func ctxError(ctx context.Context, queued bool) error {
	if queued {
		// The batch may still commit: the caller must treat the outcome as unknown.
		return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "request ended before the command was acknowledged: %v; it may still commit", ctx.Err())
	}
	return chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "request ended before the command was queued: %v; nothing was committed", ctx.Err())
}

func errStopping() error {
	return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "store is shutting down")
}

func (s *Store) brokenErr() error {
	if p := s.broken.Load(); p != nil {
		return chronicle.Errorf(chronicle.KindUnavailable, chronicle.CodeUnavailable, "store stopped writing: %v", *p)
	}
	return nil
}

// batcher is the group commit: it gathers whatever calls are queued (up to
// MaxBatchCommands commands) into one transaction. Only one append transaction runs at
// a time per store: they all lock the head row, so more would only wait on each other.
func (s *Store) batcher() {
	defer s.wg.Done()
	g := groupcommit.Gatherer[*request]{Queue: s.queue, Size: func(r *request) int { return len(r.cmds) },
		Limit: chronicle.MaxBatchCommands}
	for {
		reqs, _, ok := g.Next(s.stop)
		if !ok {
			s.drainQueue()
			return
		}
		s.commit(reqs)
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

// commit runs one append transaction for reqs and answers each of them.
func (s *Store) commit(reqs []*request) {
	// A caller that already gave up has been told nothing was acknowledged; leaving its
	// commands out is safe (nothing of them was written) and saves the work.
	live := reqs[:0]
	for _, r := range reqs {
		if r.ctx.Err() != nil {
			r.done <- requestResult{err: ctxError(r.ctx, false)}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	var cmds []chronicle.Command
	for _, r := range live {
		cmds = append(cmds, r.cmds...)
	}
	results, err := s.appendBatch(cmds)
	if err != nil {
		for _, r := range live {
			r.done <- requestResult{err: err}
		}
		return
	}
	i := 0
	for _, r := range live {
		r.done <- requestResult{results: results[i : i+len(r.cmds)]}
		i += len(r.cmds)
	}
}

// appendBatch commits cmds and returns a result per command, or the error every caller
// of the batch gets.
func (s *Store) appendBatch(cmds []chronicle.Command) ([]chronicle.Result, error) {
	var results []chronicle.Result
	var fromLog int
	// unknown: an attempt's COMMIT got no definite answer and no later attempt has yet
	// read the command ids back to settle it.
	unknown := false
	err := s.runTx(s.ctx, func(ctx context.Context, tx pgx.Tx, _ int) error {
		var err error
		results, fromLog, err = s.appendTx(ctx, tx, cmds, func() { unknown = false })
		return err
	}, func(err error) {
		if ambiguous(err) {
			unknown = true
			s.stats.ambiguous.Add(1)
			s.log.Warn("commit outcome unknown; the retry will look the commands up by id", "err", err)
		}
	})
	if err == nil {
		s.stats.batches.Add(1)
		s.stats.commands.Add(uint64(len(cmds)))
		s.stats.answeredFromLog.Add(uint64(fromLog))
		return results, nil
	}
	if inv, ok := asInvariant(err); ok {
		s.broken.CompareAndSwap(nil, &err)
		s.log.Error("ledger invariant violated; this store stops writing", "err", inv)
		return nil, s.brokenErr()
	}
	if s.ctx.Err() != nil {
		if unknown {
			return nil, unavailable("store closed", err, true)
		}
		return nil, errStopping()
	}
	return nil, unavailable(fmt.Sprintf("append of %d commands", len(cmds)), err, unknown)
}
