package raftstore

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
)

// working is the ledger's working state in memory: every account, every idempotency
// record with the expiry index that purges them, the head and the applied index. It is an
// exact mirror of those records in the state DB: the state machine reads only this (a
// Pebble point read per account and key cost a block read, a decode and often a syscall),
// writes the state DB, and folds what it wrote in here once the write has committed. The
// state DB, not memory, is what survives a restart: load rebuilds this from it, and Raft
// re-applies the log tail on top.
//
// The FSM goroutine is the only writer (apply, restore, and load before Raft starts), so
// it reads without the lock; it takes mu to change the state, and queries take it to read.
type working struct {
	mu       sync.RWMutex
	accounts *accountTable
	keys     map[string]chronicle.IdempotencyRecord
	// expiry mirrors the state DB's x keys in their key order (commit time, then key),
	// including entries whose record was since replaced by a reuse of its key. Commit
	// times only grow, so new entries go at the end and purges take from the front.
	expiry  []expiryEntry
	head    chronicle.Head
	applied uint64
	// holds are the open pending transfers (holds.go).
	holds openHolds
	// types holds the newest type index block of each event type (typeindex.go); only
	// the FSM goroutine reads or writes it.
	types map[string]*typeBlock
}

// expiryEntry is one x key: x | at | key.
type expiryEntry struct {
	at  uint64 // timeOrder of the record's commit time, as the key orders it
	key string
}

// less orders entries as Pebble orders their keys: at is the key's big-endian prefix and
// Go compares strings bytewise.
func (e expiryEntry) less(o expiryEntry) bool {
	if e.at != o.at {
		return e.at < o.at
	}
	return e.key < o.key
}

func newWorking() *working {
	return &working{accounts: newAccountTable(), keys: map[string]chronicle.IdempotencyRecord{},
		head: chronicle.GenesisHead(), holds: newOpenHolds(), types: map[string]*typeBlock{}}
}

// loadWorking reads the working state from the state DB: one scan of the account,
// idempotency and expiry ranges and two point reads. It runs when the state DB opens and
// after a snapshot replaced its contents, never on the command path.
func loadWorking(r pebble.Reader) (*working, error) {
	w := newWorking()
	rd := reader{r: r}
	var err error
	if w.head, err = rd.head(); err != nil {
		return nil, fmt.Errorf("read head: %w", err)
	}
	if w.applied, err = rd.applied(); err != nil {
		return nil, err
	}
	err = scanPrefix(r, prefixAccount, func(k, v []byte) error {
		var a chronicle.Account
		if err := a.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("account %q: %w", k[1:], err)
		}
		if string(k[1:]) != a.ID {
			return fmt.Errorf("account record under %q holds id %q", k[1:], a.ID)
		}
		w.accounts.put(a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load accounts: %w", err)
	}
	err = scanPrefix(r, prefixIdem, func(k, v []byte) error {
		var rec chronicle.IdempotencyRecord
		if err := rec.UnmarshalBinary(v); err != nil {
			return fmt.Errorf("idempotency record %q: %w", k[1:], err)
		}
		if string(k[1:]) != rec.Key {
			return fmt.Errorf("idempotency record under %q holds key %q", k[1:], rec.Key)
		}
		w.keys[rec.Key] = rec
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load idempotency records: %w", err)
	}
	err = scanPrefix(r, prefixIdemExpiry, func(k, _ []byte) error {
		if len(k) < 9 {
			return fmt.Errorf("expiry key %q is too short", k)
		}
		key := string(k[9:])
		if rec, ok := w.keys[key]; ok {
			key = rec.Key // share the string with the record
		}
		// The scan is in key order, which is the slice's order.
		w.expiry = append(w.expiry, expiryEntry{at: binary.BigEndian.Uint64(k[1:9]), key: key})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load idempotency expiry index: %w", err)
	}
	if w.holds, err = loadHolds(r); err != nil {
		return nil, err
	}
	if w.types, err = loadTypeBlocks(r); err != nil {
		return nil, fmt.Errorf("load the type index: %w", err)
	}
	return w, nil
}

func scanPrefix(r pebble.Reader, p byte, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// replace swaps in the contents of n (a fresh load after a restore).
func (w *working) replace(n *working) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.accounts, w.keys, w.expiry, w.head, w.applied = n.accounts, n.keys, n.expiry, n.head, n.applied
	w.holds, w.types = n.holds, n.types
}

// account is a query's read.
func (w *working) account(id string) (chronicle.Account, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.accounts.get(id)
}

// insertExpiry adds e in order; commit times only grow, so this is almost always an append.
func insertExpiry(s []expiryEntry, e expiryEntry) []expiryEntry {
	if n := len(s); n == 0 || s[n-1].less(e) {
		return append(s, e)
	}
	i := sort.Search(len(s), func(i int) bool { return !s[i].less(e) })
	if i < len(s) && s[i] == e {
		return s // the same key twice is one key in Pebble
	}
	return slices.Insert(s, i, e)
}

// overlay is the working state as one ApplyBatch call sees it: memory plus what the
// call's entries changed so far. The Pebble batch of the call holds the same changes;
// memory is changed only by fold, after that batch has committed, so an apply that fails
// anywhere leaves memory as it was.
type overlay struct {
	w        *working
	accounts map[string]chronicle.Account
	keys     map[string]keySlot
	// popped entries were purged from the front of w.expiry; added holds the call's new
	// entries not purged again, sorted.
	popped int
	added  []expiryEntry
	// tokens written by this call: token entries read the state DB (they are rare and
	// not ledger commands), which does not see the call's uncommitted batch.
	tokens map[string]chronicle.Token
	// holds written by this call; db is the committed state DB, read for finished holds.
	holds map[string]chronicle.PendingTransfer
	db    pebble.Reader
}

// keySlot is a record this call wrote or (deleted) purged.
type keySlot struct {
	rec     chronicle.IdempotencyRecord
	deleted bool
}

var _ chronicle.State = (*overlay)(nil)

func newOverlay(w *working) *overlay {
	return &overlay{w: w, accounts: map[string]chronicle.Account{}, keys: map[string]keySlot{}}
}

// Account implements chronicle.State.
func (o *overlay) Account(id string) (chronicle.Account, bool, error) {
	if a, ok := o.accounts[id]; ok {
		return a, true, nil
	}
	a, ok := o.w.accounts.get(id)
	return a, ok, nil
}

// Idempotency implements chronicle.State.
func (o *overlay) Idempotency(key string) (chronicle.IdempotencyRecord, bool, error) {
	if s, ok := o.keys[key]; ok {
		return s.rec, !s.deleted, nil
	}
	r, ok := o.w.keys[key]
	return r, ok, nil
}

// stage records what one entry's outcome wrote to the batch.
func (o *overlay) stage(out chronicle.Outcome) {
	for _, a := range out.Accounts {
		a.CreatedAt, a.LastUpdated = storedTime(a.CreatedAt), storedTime(a.LastUpdated)
		o.accounts[a.ID] = a
	}
	for _, r := range out.Idempotency {
		r.CommitTime = storedTime(r.CommitTime)
		o.keys[r.Key] = keySlot{rec: r}
		o.addExpiry(expiryEntry{at: timeOrder(r.CommitTime), key: r.Key})
	}
	o.stageHolds(out.Holds)
}

func (o *overlay) addExpiry(e expiryEntry) {
	base := o.w.expiry[o.popped:]
	if n := len(base); n > 0 && !base[n-1].less(e) {
		// Out of order (a clamped commit time): an entry Pebble already holds is not a
		// second one.
		if i := sort.Search(n, func(i int) bool { return !base[i].less(e) }); i < n && base[i] == e {
			return
		}
	}
	o.added = insertExpiry(o.added, e)
}

// firstExpiry returns the smallest expiry entry, as a Pebble iterator over the batch
// would see it first.
func (o *overlay) firstExpiry() (expiryEntry, bool, bool) {
	base, add := o.w.expiry[o.popped:], o.added
	switch {
	case len(base) == 0 && len(add) == 0:
		return expiryEntry{}, false, false
	case len(add) == 0 || len(base) > 0 && base[0].less(add[0]):
		return base[0], true, true
	default:
		return add[0], false, true
	}
}

// purgeExpired deletes idempotency records older than the window, a bounded number per
// entry so that one apply never stalls, in the expiry index's key order: exactly the
// keys a scan of the state DB's index would delete, so every replica's state DB holds
// the same bytes. Expired records are already ignored by the state machine, so when this
// runs changes only the space they take.
func (o *overlay) purgeExpired(b *pebble.Batch, now time.Time, window time.Duration) error {
	if window <= 0 {
		return nil
	}
	// The index's scan stops at the key x | timeKey(now-window): entries at an earlier
	// time sort before it, entries at that time after it (their key is longer).
	upper := timeOrder(now.Add(-window))
	for n := 0; n < maxPurgePerCommit; n++ {
		e, fromBase, ok := o.firstExpiry()
		if !ok || e.at >= upper {
			break
		}
		if fromBase {
			o.popped++
		} else {
			o.added = o.added[1:]
		}
		// Only delete the record if it is the one this index entry points at: the key may
		// have been reused after it expired.
		if rec, ok, _ := o.Idempotency(e.key); ok && rec.CommitTime.Equal(orderTime(e.at)) {
			o.keys[e.key] = keySlot{deleted: true}
			if err := b.Delete(idemKey(e.key), nil); err != nil {
				return err
			}
		}
		if err := b.Delete(expiryKey(e.at, e.key), nil); err != nil {
			return err
		}
	}
	return nil
}

// fold makes the call's changes part of memory, once its batch has committed.
func (o *overlay) fold(head chronicle.Head, applied uint64) {
	w := o.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range o.accounts {
		w.accounts.put(a)
	}
	for k, s := range o.keys {
		if s.deleted {
			delete(w.keys, k)
		} else {
			w.keys[k] = s.rec
		}
	}
	// Dropping the front keeps the array; append copies only what is live when it next
	// grows, so the queue does not keep purged entries for long.
	clear(w.expiry[:o.popped])
	w.expiry = w.expiry[o.popped:]
	for _, e := range o.added {
		w.expiry = insertExpiry(w.expiry, e)
	}
	o.foldHolds()
	w.head, w.applied = head, applied
}

// storedTime is t as the state DB gives it back. Memory must hold what a restart would
// load, or a node that restarted could decide differently from one that did not.
func storedTime(t time.Time) time.Time {
	return chronicle.TimeFromStoredNanos(chronicle.StoredNanos(t))
}

// storedHead is h with its commit time as stored.
func storedHead(h chronicle.Head) chronicle.Head {
	h.CommitTime = storedTime(h.CommitTime)
	return h
}
