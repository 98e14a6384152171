package raftstore

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// The state DB is the embedded read model: the account records, the per-account stream
// index and the events themselves already hold everything a listing or a statement
// shows, so a Raft node keeps one copy of each event instead of projecting it into a
// second Pebble instance. A statement line is the event at a stream index entry, put
// through chronicle.Project (the one function every read model builds its lines with);
// the event carries its balance_after, so no index beyond the write side's is needed
// and the state DB's layout (data format 2) is unchanged.
//
// Answers are as of at least Position: the FSM commits a whole Raft batch atomically
// and moves the head after the commit, so a read sees every event up to Position (and
// possibly a few more), never a partial command.

var _ chronicle.ReadModel = (*Store)(nil)

// Position implements chronicle.ReadModel: the last position applied to the state DB,
// which is the read model's own.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	s.headMu.Lock()
	defer s.headMu.Unlock()
	return s.head.Position, nil
}

// Accounts implements chronicle.ReadModel: customer accounts in id order after the id
// given. The external accounts (one per currency used) share the key range and are
// skipped.
func (s *Store) Accounts(ctx context.Context, after string, limit int) ([]chronicle.Account, error) {
	out := []chronicle.Account{}
	if limit <= 0 {
		return out, nil
	}
	lower := []byte{prefixAccount}
	if after != "" {
		// The smallest key after after's own: ids are compared bytewise, as keys are.
		lower = append(accountKey(after), 0)
	}
	err := s.read(func(rd reader) error {
		it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{prefixAccount + 1}})
		if err != nil {
			return err
		}
		defer it.Close()
		for valid := it.First(); valid && len(out) < limit; valid = it.Next() {
			if chronicle.IsExternal(string(it.Key()[1:])) {
				continue
			}
			var a chronicle.Account
			if err := a.UnmarshalBinary(it.Value()); err != nil {
				return fmt.Errorf("decode account %q: %w", it.Key()[1:], err)
			}
			out = append(out, a)
		}
		return it.Error()
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: list accounts: %w", err)
	}
	return out, nil
}

// Transactions implements chronicle.ReadModel: the account's statement newest first,
// below version before (0: from the newest), one stream index entry and one event read
// per line.
func (s *Store) Transactions(ctx context.Context, id string, before uint64, limit int) ([]chronicle.StatementLine, error) {
	out := []chronicle.StatementLine{}
	err := s.read(func(rd reader) error {
		a, ok, err := rd.Account(id)
		if err != nil {
			return fmt.Errorf("raftstore: read account: %w", err)
		}
		if !ok || a.External() {
			return chronicle.ErrAccountNotFound(id)
		}
		out, err = rd.statement(id, before, limit)
		if err != nil {
			return fmt.Errorf("raftstore: statement of %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// statement reads up to limit statement lines of id, newest first, below version before
// (0: from the newest).
func (rd reader) statement(id string, before uint64, limit int) ([]chronicle.StatementLine, error) {
	out := []chronicle.StatementLine{}
	if limit <= 0 {
		return out, nil
	}
	prefix := streamPrefix(id)
	upper := pebbleutil.PrefixEnd(prefix)
	if before > 0 {
		upper = streamKey(id, before)
	}
	it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for valid := it.Last(); valid && len(out) < limit; valid = it.Prev() {
		if len(it.Value()) != streamValueLen {
			return nil, fmt.Errorf("stream entry %x: %d bytes, want %d", it.Key(), len(it.Value()), streamValueLen)
		}
		pos := binary.BigEndian.Uint64(it.Value())
		e, ok, err := rd.event(pos)
		if err != nil {
			return nil, fmt.Errorf("read event %d: %w", pos, err)
		}
		if !ok {
			// The index entry and the event are written in one batch: a missing event is
			// damage, and a statement with a hole in it would be a wrong answer.
			return nil, fmt.Errorf("event %d of the stream index is missing", pos)
		}
		line, err := statementLine(e)
		if err != nil {
			return nil, err
		}
		out = append(out, line)
	}
	return out, it.Error()
}

// statementLine is the line event e adds to its account's statement. Project only needs
// the account before e to check that e belongs to it; the line itself comes from e alone.
func statementLine(e chronicle.Event) (chronicle.StatementLine, error) {
	_, line, err := chronicle.Project(chronicle.Account{ID: e.AggregateID}, e)
	if err != nil {
		return chronicle.StatementLine{}, fmt.Errorf("statement line: %w", err)
	}
	return line, nil
}

// LineCount is the number of statement lines id has (what verify compares with the
// account's events in the log): its stream index entries.
func (s *Store) LineCount(ctx context.Context, id string) (int, error) {
	n := 0
	err := s.read(func(rd reader) error {
		prefix := streamPrefix(id)
		it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: pebbleutil.PrefixEnd(prefix)})
		if err != nil {
			return err
		}
		defer it.Close()
		for valid := it.First(); valid; valid = it.Next() {
			n++
		}
		return it.Error()
	})
	if err != nil {
		return 0, fmt.Errorf("raftstore: count statement lines of %s: %w", id, err)
	}
	return n, nil
}
