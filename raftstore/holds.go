package raftstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// Pending transfers (holds) in the state DB and the working state.
//
// State DB: p | transfer id -> chronicle.PendingTransfer (binary), open or finished; and
// d | expires_at | transfer id -> (empty) for every open hold: the deadline index the
// expire-transfers sweep scans. Memory keeps the open holds only (by id, by debit
// account, and in deadline order); a finished hold is read from the state DB, which only
// a capture or void of an already finished transfer needs.
const (
	prefixHold    = 'p'
	prefixHoldDue = 'd'
)

func holdKey(id string) []byte { return join([]byte{prefixHold}, []byte(id)) }
func holdDueKey(at time.Time, id string) []byte {
	return join([]byte{prefixHoldDue}, timeKey(at), []byte(id))
}

// dueEntry is one d key: the deadline (timeOrder) and the transfer id.
type dueEntry struct {
	at uint64
	id string
}

func (e dueEntry) less(o dueEntry) bool {
	if e.at != o.at {
		return e.at < o.at
	}
	return e.id < o.id
}

// openHolds is the working state's view of the open holds.
type openHolds struct {
	byID      map[string]chronicle.PendingTransfer
	byAccount map[string]map[string]struct{}
	due       []dueEntry // sorted
}

func newOpenHolds() openHolds {
	return openHolds{byID: map[string]chronicle.PendingTransfer{}, byAccount: map[string]map[string]struct{}{}}
}

func (h *openHolds) add(p chronicle.PendingTransfer) {
	h.remove(p.ID)
	h.byID[p.ID] = p
	ids := h.byAccount[p.FromAccountID]
	if ids == nil {
		ids = map[string]struct{}{}
		h.byAccount[p.FromAccountID] = ids
	}
	ids[p.ID] = struct{}{}
	e := dueEntry{at: timeOrder(p.ExpiresAt), id: p.ID}
	i := sort.Search(len(h.due), func(i int) bool { return !h.due[i].less(e) })
	h.due = slices.Insert(h.due, i, e)
}

func (h *openHolds) remove(id string) {
	p, ok := h.byID[id]
	if !ok {
		return
	}
	delete(h.byID, id)
	if ids := h.byAccount[p.FromAccountID]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(h.byAccount, p.FromAccountID)
		}
	}
	e := dueEntry{at: timeOrder(p.ExpiresAt), id: id}
	if i := sort.Search(len(h.due), func(i int) bool { return !h.due[i].less(e) }); i < len(h.due) && h.due[i] == e {
		h.due = slices.Delete(h.due, i, i+1)
	}
}

// loadHolds reads the open holds from the state DB: a walk of the deadline index and a
// point read of each record it names. The p records of finished holds stay forever, so a
// scan of them would make start-up grow with every hold ever made; the index names
// exactly the open ones, as writeHolds keeps it in the batch that writes the record.
//
// An index that disagrees with the records refuses the load: a key naming a missing or
// finished hold, or at another deadline than the record's (so two keys for one hold).
// Memory built from either side alone would silently differ from the other. (An open
// record with no key cannot be seen without the scan this avoids; the scrub looks for
// it.)
func loadHolds(r pebble.Reader) (openHolds, error) {
	h := newOpenHolds()
	if err := walkDueHolds(r, func(p chronicle.PendingTransfer) error { h.add(p); return nil }); err != nil {
		return h, fmt.Errorf("load pending transfers: %w", err)
	}
	return h, nil
}

// walkDueHolds calls fn with the open hold each deadline index key names, in key order,
// after checking it against its record (dueHold): start-up loads them so, and the scrub
// checks them so.
func walkDueHolds(r pebble.Reader, fn func(chronicle.PendingTransfer) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHoldDue}, UpperBound: []byte{prefixHoldDue + 1}})
	if err != nil {
		return fmt.Errorf("deadline index: %w", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		p, err := dueHold(r, it.Key())
		if err == nil {
			err = fn(p)
		}
		if err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("deadline index: %w", err)
	}
	return nil
}

// dueHold reads the hold that the deadline index key k names, refusing one that does not
// agree with it.
func dueHold(r pebble.Reader, k []byte) (chronicle.PendingTransfer, error) {
	var p chronicle.PendingTransfer
	if len(k) < 9 {
		return p, fmt.Errorf("deadline index key %q is too short", k)
	}
	at, id := binary.BigEndian.Uint64(k[1:9]), string(k[9:])
	ok, err := pebbleutil.GetBinary(r, holdKey(id), &p)
	switch {
	case err != nil:
		return p, fmt.Errorf("pending transfer %q: %w", id, err)
	case !ok:
		return p, fmt.Errorf("deadline index names pending transfer %q, which has no record", id)
	case p.ID != id:
		return p, fmt.Errorf("pending transfer record under %q holds id %q", id, p.ID)
	case !p.Open():
		return p, fmt.Errorf("deadline index names pending transfer %q, whose record is %s", id, p.State)
	case timeOrder(p.ExpiresAt) != at:
		return p, fmt.Errorf("deadline index names pending transfer %q at %s, its record expires at %s",
			id, orderTime(at).Format(time.RFC3339Nano), p.ExpiresAt.Format(time.RFC3339Nano))
	}
	return p, nil
}

// storedHold is p with its times as the state DB gives them back.
func storedHold(p chronicle.PendingTransfer) chronicle.PendingTransfer {
	p.CreatedAt, p.ExpiresAt, p.FinishedAt = storedTime(p.CreatedAt), storedTime(p.ExpiresAt), storedTime(p.FinishedAt)
	return p
}

// writeHolds stages the holds one applied batch created or finished.
func writeHolds(b *pebble.Batch, holds []chronicle.PendingTransfer) error {
	for _, p := range holds {
		if err := setBinary(b, holdKey(p.ID), p); err != nil {
			return fmt.Errorf("stage pending transfer %s: %w", p.ID, err)
		}
		var err error
		if p.Open() {
			err = b.Set(holdDueKey(p.ExpiresAt, p.ID), nil, nil)
		} else {
			err = b.Delete(holdDueKey(p.ExpiresAt, p.ID), nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// PendingTransfer implements chronicle.State: this call's changes, then the open holds in
// memory, then the state DB for a finished one.
func (o *overlay) PendingTransfer(id string) (chronicle.PendingTransfer, bool, error) {
	if p, ok := o.holds[id]; ok {
		return p, true, nil
	}
	if p, ok := o.w.holds.byID[id]; ok {
		return p, true, nil
	}
	if o.db == nil {
		return chronicle.PendingTransfer{}, false, nil
	}
	return reader{r: o.db}.PendingTransfer(id)
}

// AccountHolds implements chronicle.State.
func (o *overlay) AccountHolds(accountID string) ([]chronicle.PendingTransfer, error) {
	var out []chronicle.PendingTransfer
	for id := range o.w.holds.byAccount[accountID] {
		if _, changed := o.holds[id]; !changed {
			out = append(out, o.w.holds.byID[id])
		}
	}
	for _, p := range o.holds {
		if p.Open() && p.FromAccountID == accountID {
			out = append(out, p)
		}
	}
	return out, nil
}

// DueHolds implements chronicle.State.
func (o *overlay) DueHolds(t time.Time, limit int) ([]chronicle.PendingTransfer, error) {
	upto := timeOrder(t)
	var out []chronicle.PendingTransfer
	for _, e := range o.w.holds.due {
		if e.at > upto || len(out) >= limit+len(o.holds) {
			break
		}
		if _, changed := o.holds[e.id]; !changed {
			out = append(out, o.w.holds.byID[e.id])
		}
	}
	for _, p := range o.holds {
		if p.Open() && !p.ExpiresAt.After(t) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, chronicle.HoldCompare)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// stageHolds records the holds one entry's outcome wrote.
func (o *overlay) stageHolds(holds []chronicle.PendingTransfer) {
	for _, p := range holds {
		if o.holds == nil {
			o.holds = map[string]chronicle.PendingTransfer{}
		}
		o.holds[p.ID] = storedHold(p)
	}
}

// foldHolds makes the call's hold changes part of memory (w.mu held).
func (o *overlay) foldHolds() {
	for id, p := range o.holds {
		if p.Open() {
			o.w.holds.add(p)
		} else {
			o.w.holds.remove(id)
		}
	}
}

// PendingTransfer implements chronicle.State from the state DB.
func (rd reader) PendingTransfer(id string) (chronicle.PendingTransfer, bool, error) {
	var p chronicle.PendingTransfer
	ok, err := pebbleutil.GetBinary(rd.r, holdKey(id), &p)
	return p, ok, err
}

// AccountHolds implements chronicle.State from the state DB: a scan of the deadline
// index (reader is for offline checks, not the command path).
func (rd reader) AccountHolds(accountID string) ([]chronicle.PendingTransfer, error) {
	all, err := rd.DueHolds(time.Unix(0, math.MaxInt64), math.MaxInt32)
	if err != nil {
		return nil, err
	}
	var out []chronicle.PendingTransfer
	for _, p := range all {
		if p.FromAccountID == accountID {
			out = append(out, p)
		}
	}
	return out, nil
}

// DueHolds implements chronicle.State from the state DB's deadline index.
func (rd reader) DueHolds(t time.Time, limit int) ([]chronicle.PendingTransfer, error) {
	it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHoldDue}, UpperBound: []byte{prefixHoldDue + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	upto := timeOrder(t)
	var out []chronicle.PendingTransfer
	for valid := it.First(); valid && len(out) < limit; valid = it.Next() {
		k := it.Key()
		if len(k) < 9 {
			return nil, fmt.Errorf("deadline index key %q is too short", k)
		}
		if at := binary.BigEndian.Uint64(k[1:9]); at > upto {
			break
		}
		p, ok, err := rd.PendingTransfer(string(k[9:]))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("deadline index names unknown pending transfer %q", k[9:])
		}
		out = append(out, p)
	}
	return out, it.Error()
}

// NextHoldDeadline is the earliest deadline of an open hold (ok false: none), for the
// expiry sweep (internal/holdsweep).
func (s *Store) NextHoldDeadline(context.Context) (time.Time, bool, error) {
	w := s.fsm.mem
	w.mu.RLock()
	defer w.mu.RUnlock()
	if len(w.holds.due) == 0 {
		return time.Time{}, false, nil
	}
	return orderTime(w.holds.due[0].at), true, nil
}

// PendingTransfer returns the record of a hold, open or finished, as this node has
// applied it.
func (s *Store) PendingTransfer(ctx context.Context, id string) (chronicle.PendingTransfer, bool, error) {
	w := s.fsm.mem
	w.mu.RLock()
	p, ok := w.holds.byID[id]
	w.mu.RUnlock()
	if ok {
		return p, true, nil
	}
	var err error
	rerr := s.read(func(rd reader) error {
		p, ok, err = rd.PendingTransfer(id)
		return err
	})
	if rerr != nil {
		return p, false, fmt.Errorf("raftstore: read pending transfer: %w", rerr)
	}
	return p, ok, nil
}
