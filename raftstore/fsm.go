package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// fsm applies committed command batches to the state DB through the domain's state
// machine. Each raft.BatchingFSM call is one Pebble batch, so many entries share a write.
type fsm struct {
	log *slog.Logger

	// mu guards db against a restore swapping its contents under readers.
	mu sync.RWMutex
	db *pebble.DB

	// fatal is set when the state machine reported a broken invariant; from then on the
	// node refuses to apply anything rather than diverge.
	fatalMu sync.Mutex
	fatal   error

	// onApply is called after each applied batch with the new head, applied index and
	// the events the batch appended (nil after a restore: the log was replaced).
	onApply func(chronicle.Head, uint64, []chronicle.Event)
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

// applyResponse is what a raft.ApplyFuture returns for one command entry.
type applyResponse struct {
	results []chronicle.Result
	// token is the token record after an EntryToken; tokenErr a refusal of its operation
	// (a business error, not a failure of the state machine).
	token    chronicle.Token
	tokenErr error
	err      error
}

func (f *fsm) failed() error {
	f.fatalMu.Lock()
	defer f.fatalMu.Unlock()
	return f.fatal
}

func (f *fsm) setFatal(err error) {
	f.fatalMu.Lock()
	defer f.fatalMu.Unlock()
	if f.fatal == nil {
		f.fatal = err
	}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	resp := make([]any, len(logs))
	if err := f.failed(); err != nil {
		for i := range resp {
			resp[i] = applyResponse{err: err}
		}
		return resp
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	b := f.db.NewIndexedBatch()
	defer b.Close()
	rd := reader{b}
	applied, err := rd.applied()
	if err != nil {
		return f.fail(resp, fmt.Errorf("read applied index: %w", err))
	}
	head, err := rd.head()
	if err != nil {
		return f.fail(resp, fmt.Errorf("read head: %w", err))
	}
	last := applied
	var appended []chronicle.Event
	for i, l := range logs {
		if l.Index <= applied {
			// Already in the state DB: a restart replays the log from the snapshot on.
			resp[i] = applyResponse{err: errors.New("entry already applied before restart")}
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		// Only this package proposes entries, so an entry that does not decode is a bug,
		// corruption or a newer build's format: stop rather than skip it.
		kind, payload, err := chronicle.DecodeEntry(l.Data)
		if err != nil {
			return f.fail(resp, fmt.Errorf("entry %d: %w", l.Index, err))
		}
		switch kind {
		case chronicle.EntryCommandBatch:
		case chronicle.EntryNodeMeta:
			var m NodeMeta
			if err := m.UnmarshalBinary(payload); err != nil {
				return f.fail(resp, fmt.Errorf("entry %d: %w", l.Index, err))
			}
			if err := b.Set(nodeKey(m.ID), payload, nil); err != nil {
				return f.fail(resp, err)
			}
			resp[i] = applyResponse{}
			continue
		case chronicle.EntryToken:
			r, err := applyToken(b, payload)
			if err != nil {
				return f.fail(resp, fmt.Errorf("entry %d: %w", l.Index, err))
			}
			resp[i] = r
			continue
		default:
			return f.fail(resp, fmt.Errorf("entry %d: unknown entry kind %v (written by a newer build?)", l.Index, kind))
		}
		var batch chronicle.Batch
		if err := batch.UnmarshalBinary(payload); err != nil {
			return f.fail(resp, fmt.Errorf("entry %d: %w", l.Index, err))
		}
		out, err := chronicle.Apply(rd, head, batch)
		if err != nil {
			return f.fail(resp, fmt.Errorf("apply entry %d: %w", l.Index, err))
		}
		if err := writeOutcome(b, out); err != nil {
			return f.fail(resp, fmt.Errorf("stage entry %d: %w", l.Index, err))
		}
		head = out.Head
		appended = append(appended, out.Events...)
		// Purge per entry, not per apply call, so every replica's state DB holds the same
		// bytes at the same index however Raft grouped the entries.
		if err := purgeExpired(b, head.CommitTime, batch.IdempotencyWindow); err != nil {
			return f.fail(resp, fmt.Errorf("purge idempotency keys: %w", err))
		}
		// A replayed result names its events by position; read them back (the batch
		// sees its own writes, so the original may even be in this same entry).
		for j := range out.Results {
			if r := &out.Results[j]; r.Replayed {
				evs, err := rd.events(r.FirstPosition(), r.Position)
				if err != nil {
					return f.fail(resp, fmt.Errorf("entry %d: events of a replayed result: %w", l.Index, err))
				}
				r.SetEvents(evs)
			}
		}
		resp[i] = applyResponse{results: out.Results}
	}
	if last == applied {
		return resp
	}
	if err := b.Set(metaKey(metaApplied), pebbleutil.U64(last), nil); err != nil {
		return f.fail(resp, err)
	}
	// NoSync: the Raft log is fsynced before an entry is applied, and a restart replays
	// whatever the state DB lost from it (entries at or below the applied index are
	// skipped). Snapshots sync the state DB before the log behind them is truncated.
	if err := b.Commit(pebble.NoSync); err != nil {
		return f.fail(resp, fmt.Errorf("commit state batch: %w", err))
	}
	if f.onApply != nil {
		f.onApply(head, last, appended)
	}
	return resp
}

// applyToken applies a TokenOp entry to the token table in b. A refused operation (a
// name in use, say) is answered to its proposer and changes nothing; only an entry that
// does not decode or a failed read stops the state machine.
func applyToken(b *pebble.Batch, payload []byte) (applyResponse, error) {
	var op chronicle.TokenOp
	if err := op.UnmarshalBinary(payload); err != nil {
		return applyResponse{}, err
	}
	var existing chronicle.Token
	found, err := pebbleutil.GetBinary(b, tokenKey(op.Name), &existing)
	if err != nil {
		return applyResponse{}, fmt.Errorf("read token %q: %w", op.Name, err)
	}
	anyExists := found
	if !found && op.IfNone {
		if anyExists, err = anyKey(b, prefixToken); err != nil {
			return applyResponse{}, fmt.Errorf("read tokens: %w", err)
		}
	}
	t, write, err := chronicle.ApplyTokenOp(op, existing, found, anyExists)
	if err != nil {
		return applyResponse{tokenErr: err}, nil
	}
	if write {
		data, err := t.MarshalBinary()
		if err != nil {
			return applyResponse{}, err
		}
		if err := b.Set(tokenKey(t.Name), data, nil); err != nil {
			return applyResponse{}, err
		}
	}
	return applyResponse{token: t}, nil
}

// anyKey reports whether r holds a key with the one-byte prefix p.
func anyKey(r pebble.Reader, p byte) (bool, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		return false, err
	}
	found := it.First()
	if err := it.Close(); err != nil {
		return false, err
	}
	return found, nil
}

func (f *fsm) fail(resp []any, err error) []any {
	f.log.Error("state machine stopped: refusing to apply further entries", "err", err)
	f.setFatal(err)
	for i := range resp {
		resp[i] = applyResponse{err: err}
	}
	return resp
}
