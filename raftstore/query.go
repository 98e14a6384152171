package raftstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
)

// read runs fn against the state DB under the restore lock. After a storage fault it
// reads nothing; an error fn meets that is not a domain answer is one (readFault).
func (s *Store) read(fn func(rd reader) error) error {
	if err := s.faultErr(); err != nil {
		return err
	}
	s.fsm.mu.RLock()
	err := fn(reader{s.fsm.db, s.fsm.ev})
	s.fsm.mu.RUnlock()
	return s.readFault(err)
}

// Head implements chronicle.EventStore.
func (s *Store) Head(ctx context.Context) (chronicle.Head, error) {
	s.headMu.Lock()
	defer s.headMu.Unlock()
	return s.head, nil
}

// Account implements chronicle.EventStore. It reads the working state in memory, which
// the state machine updates once each batch has committed to the state DB.
func (s *Store) Account(ctx context.Context, id string) (chronicle.Account, error) {
	// Memory mirrors the state DB, but a node with damaged storage answers nothing: its
	// clients belong on a healthy node.
	if err := s.faultErr(); err != nil {
		return chronicle.Account{}, err
	}
	a, ok := s.fsm.mem.account(id)
	if !ok || a.External() {
		return chronicle.Account{}, chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeAccountNotFound, "account %q not found", id)
	}
	return a, nil
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
			return fmt.Errorf("raftstore: balance history: %w", err)
		}
		if !ok {
			return chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeAccountNotFound, "account %q did not exist at %s", id, t.UTC().Format(time.RFC3339Nano))
		}
		return nil
	})
	return p, err
}

// EncodedEvents implements chronicle.EncodedEventReader: the newest events come from the
// tail cache with the JSON its first reader encoded, others from the state DB, encoded
// here.
func (s *Store) EncodedEvents(ctx context.Context, q chronicle.EventQuery) ([]chronicle.EncodedEvent, error) {
	if q.Limit <= 0 || q.Limit > chronicle.MaxEventsPage {
		q.Limit = chronicle.MaxEventsPage
	}
	if err := s.faultErr(); err != nil {
		return nil, err
	}
	if !q.Descending && q.EventType == "" && q.AggregateID == "" {
		if evs, ok := s.recent.afterEncoded(q.After, q.Limit); ok {
			return evs, nil
		}
	}
	evs, err := s.Events(ctx, q)
	if err != nil {
		return nil, err
	}
	return chronicle.EncodeEvents(evs), nil
}

// Events implements chronicle.EventStore.
func (s *Store) Events(ctx context.Context, q chronicle.EventQuery) ([]chronicle.Event, error) {
	if q.Limit <= 0 || q.Limit > chronicle.MaxEventsPage {
		q.Limit = chronicle.MaxEventsPage
	}
	if err := s.faultErr(); err != nil {
		return nil, err
	}
	if !q.Descending && q.EventType == "" && q.AggregateID == "" {
		// The projector, the publisher and live streams all read just behind the head.
		if evs, ok := s.recent.after(q.After, q.Limit); ok {
			return evs, nil
		}
	}
	out := []chronicle.Event{}
	err := s.read(func(rd reader) error {
		// The events DB may hold events past the head (those of the batch being applied,
		// or after a crash those the replay is about to write again): never read them.
		// The head is read under the read lock, after the state it names.
		s.headMu.Lock()
		headPos := s.head.Position
		s.headMu.Unlock()
		if q.AggregateID == "" && q.EventType != "" {
			return rd.typePositions(q.EventType, q.Descending, q.After, headPos, func(pos uint64) (bool, error) {
				e, ok, err := rd.event(pos)
				if err != nil {
					return false, fmt.Errorf("raftstore: read event %d: %w", pos, err)
				}
				if !ok || e.EventType != q.EventType {
					// Written in the batch that moved the head past pos: this is damage.
					return false, fmt.Errorf("raftstore: the type index lists event %d as %s, but the events DB does not hold it as one", pos, q.EventType)
				}
				out = append(out, e)
				return len(out) < q.Limit, nil
			})
		}
		// Pick the narrowest index: an account's stream or the log itself.
		var lower, upper []byte
		var posOf func(k, v []byte) (uint64, bool)
		logScan := q.AggregateID == ""
		if logScan {
			lower, upper = []byte{prefixEvent}, []byte{prefixEvent + 1}
			if q.Descending && q.After > 0 {
				upper = eventKey(q.After)
			} else if !q.Descending {
				lower = eventKey(q.After + 1)
			}
			posOf = func(k, _ []byte) (uint64, bool) { return binary.BigEndian.Uint64(k[1:]), true }
		} else {
			var err error
			if lower, upper, err = rd.streamBounds(q.AggregateID, q.After, q.Descending); err != nil {
				return fmt.Errorf("raftstore: stream of %s: %w", q.AggregateID, err)
			}
			posOf = func(_, v []byte) (uint64, bool) {
				if len(v) != streamValueLen {
					return 0, false
				}
				return binary.BigEndian.Uint64(v), true
			}
		}
		src := rd.r
		if logScan {
			if !q.Descending && q.After >= headPos {
				return nil
			}
			if !q.Descending {
				// Up to Limit events, fewer only near the head: size for them (a
				// catching-up publisher reads full pages, and growing one copied it twice).
				out = make([]chronicle.Event, 0, min(uint64(q.Limit), headPos-q.After))
			}
			src = rd.evr()
			if end := eventKey(headPos + 1); bytes.Compare(upper, end) > 0 {
				upper = end
			}
		}
		it, err := src.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
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
		// A log scan sees every position from where it starts: the next one it expects.
		next := q.After + 1
		if q.Descending {
			next = headPos
			if q.After > 0 {
				next = min(headPos, q.After-1)
			}
		}
		for ; valid && len(out) < q.Limit; valid = step() {
			pos, sound := posOf(it.Key(), it.Value())
			if !sound {
				return fmt.Errorf("raftstore: stream entry %x: damaged", it.Key())
			}
			if pos > headPos || q.Descending && q.After > 0 && pos >= q.After || !q.Descending && pos <= q.After {
				continue
			}
			var e chronicle.Event
			if logScan {
				if pos != next {
					return fmt.Errorf("raftstore: the events DB holds event %d where event %d should be (below the head %d): events are missing", pos, next, headPos)
				}
				next = pos + 1
				if q.Descending {
					next = pos - 1
				}
				// The iterator stands on the event itself: decode it rather than look it
				// up again (a reader catching up would pay a point read per event).
				if err := e.UnmarshalBinary(it.Value()); err != nil {
					return fmt.Errorf("raftstore: read event %d: %w", pos, err)
				}
			} else {
				var ok bool
				if e, ok, err = rd.event(pos); err != nil {
					return fmt.Errorf("raftstore: read event %d: %w", pos, err)
				}
				// The stream was written in the batch that wrote its events.
				if !ok || e.AggregateID != q.AggregateID {
					return fmt.Errorf("raftstore: the stream of %s lists event %d, but the events DB does not hold it as one of that account's", q.AggregateID, pos)
				}
			}
			if q.EventType != "" && e.EventType != q.EventType {
				continue
			}
			out = append(out, e)
		}
		if err := it.Error(); err != nil {
			return err
		}
		// A page that ends short of its limit has read to the end of its range: in a log
		// scan that must be the head (ascending) or position 1 (descending; next never
		// starts above the head).
		if logScan && len(out) < q.Limit && (!q.Descending && next <= headPos || q.Descending && next >= 1) {
			return fmt.Errorf("raftstore: the events DB ends before event %d (head %d): events are missing", next, headPos)
		}
		return nil
	})
	return out, err
}
