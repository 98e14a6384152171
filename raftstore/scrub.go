package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// The scrubber. With the working state in memory, most of the state DB is read only by
// queries and by snapshots sent to followers, so damage to it (or to the Raft log behind
// the state) could sit unnoticed until the day it is needed. A pass re-reads the whole
// Raft log (GetLog checks every record's CRC) and the state DB (every event, its hash
// chain re-computed; every account, compared with memory; every hold record, against
// the deadline index start-up loads the open holds from), and the first problem is a
// storage fault: the node stops serving and /ready says where.

// DefaultScrubInterval is how often a pass starts when Config.ScrubInterval is 0: often
// enough that damage is found within a working day, rarely enough to cost nothing
// measurable.
const DefaultScrubInterval = 6 * time.Hour

// A pass reads scrubChunk records, then pauses scrubPause, so that it takes a small
// share of the disk and the CPU from the command path (about 2 ms per 1,000 records on
// this machine kind, against the pause's 1 ms per 512).
const (
	scrubChunk = 512
	scrubPause = time.Millisecond
)

// ScrubStatus is the background scrub's last complete or failed pass.
type ScrubStatus struct {
	// Passes counts the passes run since start; LastPass is when the last one ended.
	Passes   uint64    `json:"passes"`
	LastPass time.Time `json:"last_pass,omitzero"`
	// OK is true when the last pass found nothing; Problem names the first bad position
	// or key it found.
	OK      bool   `json:"ok"`
	Problem string `json:"problem,omitempty"`
	// What the last pass read.
	LogEntries uint64 `json:"log_entries"`
	Events     uint64 `json:"events"`
	Accounts   uint64 `json:"accounts"`
}

type scrubber struct {
	pass sync.Mutex // one pass at a time

	mu   sync.Mutex
	last ScrubStatus
}

func (sc *scrubber) status() ScrubStatus {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.last
}

// errScrubStopped: the store closed or the caller gave up during a pass.
var errScrubStopped = errors.New("scrub stopped before the pass ended")

// scrubLoop runs a pass every Config.ScrubInterval until the store closes.
func (s *Store) scrubLoop() {
	defer s.wg.Done()
	every := s.cfg.ScrubInterval
	if every == 0 {
		every = DefaultScrubInterval
	}
	if every < 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if s.fault.Load() != nil {
				continue // already not serving; the first fault is the one reported
			}
			if _, err := s.Scrub(context.Background()); err != nil && !errors.Is(err, errScrubStopped) {
				s.log.Error("scrub found damage", "err", err)
			}
		}
	}
}

// Scrub runs one pass now (waiting for one in progress to end first) and returns its
// result; a problem found is also recorded as a storage fault (see integrity.go) and
// returned as an error.
func (s *Store) Scrub(ctx context.Context) (ScrubStatus, error) {
	s.scrub.pass.Lock()
	defer s.scrub.pass.Unlock()
	st := ScrubStatus{}
	problem := s.scrubLog(ctx, &st)
	if problem == nil {
		problem = s.scrubState(ctx, &st)
	}
	if errors.Is(problem, errScrubStopped) {
		return s.scrub.status(), problem
	}
	s.scrub.mu.Lock()
	st.Passes = s.scrub.last.Passes + 1
	st.LastPass = time.Now().UTC()
	st.OK = problem == nil
	if problem != nil {
		st.Problem = problem.Error()
	}
	s.scrub.last = st
	s.scrub.mu.Unlock()
	if problem != nil {
		return st, fmt.Errorf("raftstore: scrub: %w", problem)
	}
	s.log.Info("scrub pass found no damage", "log_entries", st.LogEntries, "events", st.Events, "accounts", st.Accounts)
	return st, nil
}

// pause yields between chunks; it fails when the store closes or ctx ends.
func (s *Store) scrubYield(ctx context.Context) error {
	t := time.NewTimer(scrubPause)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.stop:
		return errScrubStopped
	case <-ctx.Done():
		return errScrubStopped
	}
}

// scrubLog reads every entry of the Raft log through GetLog, which verifies each record.
// A damaged record is noted as a fault by guardedLogs.
func (s *Store) scrubLog(ctx context.Context, st *ScrubStatus) error {
	first, err := s.logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("the Raft log's first index: %w", err)
	}
	last, err := s.logs.LastIndex()
	if err != nil {
		return fmt.Errorf("the Raft log's last index: %w", err)
	}
	var l raft.Log
	for i := max(first, 1); i <= last && first > 0; i++ {
		if err := s.logs.GetLog(i, &l); err != nil {
			if errors.Is(err, raft.ErrLogNotFound) {
				// Compacted behind a snapshot (or cut by a conflict) during the pass.
				continue
			}
			return fmt.Errorf("the Raft log's entry %d: %w", i, err)
		}
		st.LogEntries++
		if st.LogEntries%scrubChunk == 0 {
			if err := s.scrubYield(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// scrubState checks the state DB as of one Pebble snapshot: the hash chain of every
// event up to the snapshot's head, and every account against memory. The snapshot is
// taken with the state machine held off, so memory is then exactly as the snapshot; it
// may move on during the pass, but only forwards (a newer version of an account).
func (s *Store) scrubState(ctx context.Context, st *ScrubStatus) error {
	if s.fault.Load() != nil {
		return s.fault.Load().err
	}
	problem := func(format string, args ...any) error {
		err := fmt.Errorf(format, args...)
		s.noteFault(storeStateDB, err)
		return err
	}
	s.fsm.mu.Lock()
	vw := takeViews(s.fsm.db, s.fsm.ev)
	external, err := s.externalAccounts(vw.state)
	s.fsm.mu.Unlock()
	defer vw.Close()
	if err != nil {
		return problem("state DB external accounts: %w", err)
	}
	snap := vw.state
	rd := vw.reader()
	head, err := rd.head()
	if err != nil {
		return problem("state DB head record: %w", err)
	}
	it, err := vw.events.NewIter(&pebble.IterOptions{LowerBound: eventKey(1), UpperBound: eventKey(head.Position + 1)})
	if err != nil {
		return problem("state DB events: %w", err)
	}
	v := chronicle.NewChainVerifier()
	for valid := it.First(); valid; valid = it.Next() {
		var e chronicle.Event
		if err := e.UnmarshalBinary(it.Value()); err != nil {
			_ = it.Close()
			return problem("state DB event under key %x: %w", it.Key(), err)
		}
		if err := v.Check(e); err != nil {
			_ = it.Close()
			return problem("state DB event chain: %w", err)
		}
		st.Events++
		if st.Events%scrubChunk == 0 {
			if err := s.scrubYield(ctx); err != nil {
				_ = it.Close()
				return err
			}
		}
	}
	if err := it.Close(); err != nil {
		return problem("state DB events after position %d: %w", st.Events, err)
	}
	if pos, hash := v.Head(); pos != head.Position || head.Position > 0 && hash != head.Hash {
		return problem("state DB event chain ends at position %d (hash %s), the head record names position %d (hash %s)", pos, hash, head.Position, head.Hash)
	}
	if err := s.scrubAccounts(ctx, snap, external, st, problem); err != nil {
		return err
	}
	return s.scrubHolds(ctx, snap, problem)
}

// externalAccounts copies, from memory, the external accounts snap holds. Called with the
// state machine held off, so the copies are as of snap: an external account's version
// stays 0 while its balance moves, and a pass could not otherwise tell a later apply
// from damage.
func (s *Store) externalAccounts(snap *pebble.Snapshot) (map[string]chronicle.Account, error) {
	lower := accountKey(chronicle.ExternalPrefix)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: pebbleutil.PrefixEnd(lower)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]chronicle.Account{}
	for valid := it.First(); valid; valid = it.Next() {
		id := string(it.Key()[1:])
		if a, ok := s.fsm.mem.account(id); ok {
			out[id] = a
		}
	}
	return out, it.Error()
}

// scrubAccounts checks every account in snap against memory; external accounts against
// their copies as of snap (externalAccounts).
func (s *Store) scrubAccounts(ctx context.Context, snap *pebble.Snapshot, external map[string]chronicle.Account, st *ScrubStatus, problem func(string, ...any) error) error {
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixAccount}, UpperBound: []byte{prefixAccount + 1}})
	if err != nil {
		return problem("state DB accounts: %w", err)
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		id := string(it.Key()[1:])
		var a chronicle.Account
		if err := a.UnmarshalBinary(it.Value()); err != nil {
			return problem("state DB account %q: %w", id, err)
		}
		mem, ok := external[id]
		if !chronicle.IsExternal(id) {
			mem, ok = s.fsm.mem.account(id)
		}
		switch {
		case !ok:
			return problem("state DB account %q (version %d) is not in the working state", id, a.Version)
		case mem.Version < a.Version:
			return problem("state DB account %q is at version %d, the working state at %d", id, a.Version, mem.Version)
		case mem.Version == a.Version:
			want, err1 := a.MarshalBinary()
			got, err2 := mem.MarshalBinary()
			if err := errors.Join(err1, err2); err != nil {
				return problem("encode account %q: %w", id, err)
			}
			if !bytes.Equal(want, got) {
				return problem("state DB account %q differs from the working state at version %d (balance %d there, %d in memory)", id, a.Version, a.Balance, mem.Balance)
			}
		}
		// mem.Version > a.Version: applied after the snapshot; the next pass checks it.
		st.Accounts++
		if st.Accounts%scrubChunk == 0 {
			if err := s.scrubYield(ctx); err != nil {
				return err
			}
		}
	}
	if err := it.Error(); err != nil {
		return problem("state DB accounts after %d: %w", st.Accounts, err)
	}
	return nil
}

// scrubHolds checks the hold records against their deadline index, both in the
// snapshot: every open record has its key, and every key names an open record at that
// deadline. Start-up loads the open holds from the index alone (loadHolds), which refuses
// a key without its open record but cannot see an open record without its key; this is
// where that is found.
func (s *Store) scrubHolds(ctx context.Context, snap *pebble.Snapshot, problem func(string, ...any) error) error {
	n := 0
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHold}, UpperBound: []byte{prefixHold + 1}})
	if err != nil {
		return problem("state DB pending transfers: %w", err)
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		id := string(it.Key()[1:])
		var p chronicle.PendingTransfer
		if err := p.UnmarshalBinary(it.Value()); err != nil {
			return problem("state DB pending transfer %q: %w", id, err)
		}
		if p.ID != id {
			return problem("state DB pending transfer record under %q holds id %q", id, p.ID)
		}
		if p.Open() {
			_, closer, err := snap.Get(holdDueKey(p.ExpiresAt, id))
			if errors.Is(err, pebble.ErrNotFound) {
				return problem("state DB pending transfer %q is open and missing from the deadline index", id)
			}
			if err != nil {
				return problem("state DB deadline index key of pending transfer %q: %w", id, err)
			}
			_ = closer.Close()
		}
		if n++; n%scrubChunk == 0 {
			if err := s.scrubYield(ctx); err != nil {
				return err
			}
		}
	}
	if err := it.Error(); err != nil {
		return problem("state DB pending transfers: %w", err)
	}
	// Every open record has its key; now every key must name an open record at its
	// deadline, as start-up requires.
	var stopped error // a stop while yielding is not damage
	err = walkDueHolds(snap, func(chronicle.PendingTransfer) error {
		if n++; n%scrubChunk == 0 {
			stopped = s.scrubYield(ctx)
		}
		return stopped
	})
	if err != nil && stopped == nil {
		return problem("state DB %w", err)
	}
	return err
}
