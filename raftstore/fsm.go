package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// fsm applies committed command batches through the domain's state machine. It reads
// the working state in memory (mem) and writes the state DB; each raft.BatchingFSM call
// is one Pebble batch, so many entries share a write.
type fsm struct {
	log *slog.Logger

	// mu guards db and ev against a restore swapping their contents under readers.
	mu sync.RWMutex
	db *pebble.DB // the state DB
	ev *pebble.DB // the events DB (events.go)

	// mem mirrors the state DB's accounts, idempotency records, head and applied index;
	// it has its own lock (see working).
	mem *working

	// ops is keyOrder's scratch list, reused by every apply (applies run one at a time).
	ops []batchOp

	// running is set once Raft has started (its start-up restore is over): from then on
	// a snapshot arrives only from a leader, and one the state already covers is refused.
	running atomic.Bool

	// fatal is set when the state machine reported a broken invariant; from then on the
	// node refuses to apply anything rather than diverge.
	fatalMu sync.Mutex
	fatal   error

	// onApply is called after each applied batch with the new head, applied index and
	// the events the batch appended (nil after a restore: the log was replaced).
	onApply func(chronicle.Head, uint64, []chronicle.Event)
	// loadBatchBytes, when set, is the batch size of a snapshot load (tests make it small
	// to commit partway; see stateLoad).
	loadBatchBytes int
	// onFault, when set, is told of a storage fault that stopped the state machine, so
	// the node reports it and stops serving (see integrity.go).
	onFault func(error)
}

// newFSM builds the state machine over an open state DB, loading its working state.
func newFSM(log *slog.Logger, db, ev *pebble.DB, onApply func(chronicle.Head, uint64, []chronicle.Event)) (*fsm, error) {
	start := time.Now()
	mem, err := loadWorking(db)
	if err != nil {
		return nil, fmt.Errorf("load working state: %w", err)
	}
	log.Info("loaded working state from the state DB", "accounts", mem.accounts.len(),
		"idempotency_keys", len(mem.keys), "position", mem.head.Position, "took", time.Since(start))
	return &fsm{log: log, db: db, ev: ev, mem: mem, onApply: onApply}, nil
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
	// The state machine reads memory through o, never the state DB, so the batch needs no
	// index to read its own writes: o holds them until the batch commits.
	b := f.db.NewBatch()
	defer b.Close()
	// Event records go to the events DB (events.go), committed before b.
	events := f.ev.NewBatch()
	defer events.Close()
	o := newOverlay(f.mem)
	o.db = f.db
	types := newTypeStage(f.mem)
	applied, head := f.mem.applied, f.mem.head
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
			r, err := f.applyToken(b, o, payload)
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
		out, err := chronicle.Apply(o, head, batch)
		if err != nil {
			return f.fail(resp, fmt.Errorf("apply entry %d: %w", l.Index, err))
		}
		if err := writeOutcome(b, events, types, out); err != nil {
			return f.fail(resp, fmt.Errorf("stage entry %d: %w", l.Index, err))
		}
		o.stage(out)
		// As stored, so that the next entry sees what it would after a restart.
		head = storedHead(out.Head)
		appended = append(appended, out.Events...)
		// Purge per entry, not per apply call, so every replica's state DB holds the same
		// bytes at the same index however Raft grouped the entries.
		if err := o.purgeExpired(b, head.CommitTime, batch.IdempotencyWindow); err != nil {
			return f.fail(resp, fmt.Errorf("purge idempotency keys: %w", err))
		}
		// A replayed result names its events by position; the leader that answers it reads
		// them back (Store.fillReplayed), off this path: followers never answer.
		resp[i] = applyResponse{results: out.Results}
	}
	if last == applied {
		return resp
	}
	if err := types.write(b); err != nil {
		return f.fail(resp, fmt.Errorf("stage the type index: %w", err))
	}
	if err := b.Set(metaKey(metaApplied), pebbleutil.U64(last), nil); err != nil {
		return f.fail(resp, err)
	}
	// Copied in key order before anything commits, so a failure here commits nothing.
	sorted, err := keyOrder(f.db, b, &f.ops)
	if err != nil {
		return f.fail(resp, err)
	}
	if sorted != b {
		defer sorted.Close()
	}
	// NoSync (and the state DB has no WAL): the Raft log is fsynced before an entry is
	// applied, and a restart replays whatever the state DB lost from it (entries at or
	// below the applied index are skipped). Snapshots flush the state DB before the log
	// behind them is truncated. The events first: the state DB never names an event the
	// events DB lacks (events.go).
	if err := events.Commit(pebble.NoSync); err != nil {
		return f.fail(resp, fmt.Errorf("commit events: %w", err))
	}
	if err := sorted.Commit(pebble.NoSync); err != nil {
		return f.fail(resp, fmt.Errorf("commit state batch: %w", err))
	}
	// Only now does memory change: a failure above left it as the state DB still is.
	o.fold(head, last)
	types.fold()
	if f.onApply != nil {
		f.onApply(head, last, appended)
	}
	return resp
}

// applyToken applies a TokenOp entry to the token table in b. A refused operation (a
// name in use, say) is answered to its proposer and changes nothing; only an entry that
// does not decode or a failed read stops the state machine. Tokens are not in memory:
// token operations are rare and are not ledger commands, so they read the committed state
// DB and, for this call's own writes, the overlay.
func (f *fsm) applyToken(b *pebble.Batch, o *overlay, payload []byte) (applyResponse, error) {
	var op chronicle.TokenOp
	if err := op.UnmarshalBinary(payload); err != nil {
		return applyResponse{}, err
	}
	existing, found := o.tokens[op.Name]
	if !found {
		var err error
		if found, err = pebbleutil.GetBinary(f.db, tokenKey(op.Name), &existing); err != nil {
			return applyResponse{}, fmt.Errorf("read token %q: %w", op.Name, err)
		}
	}
	anyExists := found
	if !found && op.IfNone {
		anyExists = len(o.tokens) > 0
		if !anyExists {
			var err error
			if anyExists, err = anyKey(f.db, prefixToken); err != nil {
				return applyResponse{}, fmt.Errorf("read tokens: %w", err)
			}
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
		if o.tokens == nil {
			o.tokens = map[string]chronicle.Token{}
		}
		o.tokens[t.Name] = t
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
	if f.onFault != nil && isStorageFault(err) {
		f.onFault(err)
	}
	for i := range resp {
		resp[i] = applyResponse{err: err}
	}
	return resp
}
