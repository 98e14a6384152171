package raftstore

import (
	"encoding"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// reader reads ledger state from anything Pebble can read: the DB, an indexed batch
// (which sees its own pending writes), or a snapshot; r is the state DB, ev the events
// DB (events.go; nil when only state records are read).
type reader struct{ r, ev pebble.Reader }

// evr is where events are read.
func (rd reader) evr() pebble.Reader {
	if rd.ev == nil {
		return rd.r
	}
	return rd.ev
}

var _ chronicle.State = reader{}

// Account implements chronicle.State.
func (rd reader) Account(id string) (chronicle.Account, bool, error) {
	var a chronicle.Account
	ok, err := pebbleutil.GetBinary(rd.r, accountKey(id), &a)
	return a, ok, err
}

// Idempotency implements chronicle.State.
func (rd reader) Idempotency(key string) (chronicle.IdempotencyRecord, bool, error) {
	var r chronicle.IdempotencyRecord
	ok, err := pebbleutil.GetBinary(rd.r, idemKey(key), &r)
	return r, ok, err
}

func (rd reader) head() (chronicle.Head, error) {
	h := chronicle.GenesisHead()
	_, err := pebbleutil.GetBinary(rd.r, metaKey(metaHead), &h)
	return h, err
}

func (rd reader) applied() (uint64, error) {
	v, _, err := pebbleutil.GetUint64(rd.r, metaKey(metaApplied))
	if err != nil {
		return 0, fmt.Errorf("applied index: %w", err)
	}
	return v, nil
}

func (rd reader) event(pos uint64) (chronicle.Event, bool, error) {
	var e chronicle.Event
	ok, err := pebbleutil.GetBinary(rd.evr(), eventKey(pos), &e)
	return e, ok, err
}

// events reads the events at positions first to last, inclusive; a missing one is an
// error (the log has no gaps).
func (rd reader) events(first, last uint64) ([]chronicle.Event, error) {
	out := make([]chronicle.Event, 0, last-first+1)
	for pos := first; pos <= last && first > 0; pos++ {
		e, ok, err := rd.event(pos)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("event %d is missing", pos)
		}
		out = append(out, e)
	}
	return out, nil
}

// setBinary stages v's encoding under key.
func setBinary(b *pebble.Batch, key []byte, v encoding.BinaryMarshaler) error {
	data, err := v.MarshalBinary()
	if err != nil {
		return err
	}
	return b.Set(key, data, nil)
}

// balanceAt finds the last entry of id's stream committed at or before t: from the last
// checkpoint at or before t (keys.go), it reads forward while the entries are. Commit
// times never decrease along a stream, and the next checkpoint is after t, so that is
// at most checkpointEvery+1 entries.
func (rd reader) balanceAt(id string, t time.Time) (chronicle.BalancePoint, bool, error) {
	from, err := rd.checkpointBefore(id, t)
	if err != nil {
		return chronicle.BalancePoint{}, false, err
	}
	prefix := streamPrefix(id)
	it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: streamKey(id, from), UpperBound: pebbleutil.PrefixEnd(prefix)})
	if err != nil {
		return chronicle.BalancePoint{}, false, err
	}
	defer it.Close()
	var p chronicle.BalancePoint
	found := false
	for valid := it.First(); valid; valid = it.Next() {
		pos, when, bal, err := streamEntry(it.Value())
		if err != nil {
			return chronicle.BalancePoint{}, false, fmt.Errorf("stream entry %x: %w", it.Key(), err)
		}
		if when.After(t) {
			break
		}
		p, found = chronicle.BalancePoint{AccountID: id, Time: when, Balance: bal, Position: pos}, true
	}
	if err := it.Error(); err != nil {
		return chronicle.BalancePoint{}, false, err
	}
	if from > 0 && !found {
		// The checkpoint's own entry is at or before t.
		return chronicle.BalancePoint{}, false, fmt.Errorf("checkpoint of %s at version %d names an entry after %s", id, from, t)
	}
	return p, found, nil
}

// checkpointBefore is the version of id's last checkpoint at or before t, 0 when there
// is none.
func (rd reader) checkpointBefore(id string, t time.Time) (uint64, error) {
	prefix := checkpointPrefix(id)
	it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: pebbleutil.PrefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	// Just past t's own key: the newest checkpoint at or before t.
	if !it.SeekLT(append(appendCheckpointKey(nil, id, t), 0)) {
		return 0, it.Error()
	}
	if len(it.Value()) != 8 {
		return 0, fmt.Errorf("checkpoint %x: %d bytes, want 8", it.Key(), len(it.Value()))
	}
	return binary.BigEndian.Uint64(it.Value()), nil
}

// streamBounds are the iterator bounds of a page of id's stream: positions above after
// or, descending, below it (after 0: the whole stream). The page starts at its first
// version, not at the stream's: a page deep into a long stream read every entry before it.
func (rd reader) streamBounds(id string, after uint64, descending bool) (lower, upper []byte, err error) {
	lower, upper = streamPrefix(id), pebbleutil.PrefixEnd(streamPrefix(id))
	if after == 0 {
		return lower, upper, nil
	}
	if !descending {
		v, err := rd.streamVersionAbove(id, after)
		return streamKey(id, v), upper, err
	}
	// Below the first version at or above after.
	v, err := rd.streamVersionAbove(id, after-1)
	return lower, streamKey(id, v), err
}

// streamVersionAbove is a version v of id's stream such that the entries before v are
// at or below position pos and those from v on above it (one past the last version when
// all are at or below). Positions grow with versions, so it binary-searches: O(log n)
// seeks.
func (rd reader) streamVersionAbove(id string, pos uint64) (uint64, error) {
	prefix := streamPrefix(id)
	it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: pebbleutil.PrefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	entry := func() (version, at uint64, err error) {
		k, v := it.Key(), it.Value()
		if len(k) != len(prefix)+8 || len(v) != streamValueLen {
			return 0, 0, fmt.Errorf("stream entry %x: damaged", k)
		}
		return binary.BigEndian.Uint64(k[len(prefix):]), binary.BigEndian.Uint64(v), nil
	}
	if !it.Last() {
		return 1, it.Error()
	}
	last, at, err := entry()
	if err != nil || at <= pos {
		return last + 1, err
	}
	// Every version up to lo is at or below pos, every one from hi on above it.
	lo, hi := uint64(0), last
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if !it.SeekGE(streamKey(id, mid)) {
			return 0, fmt.Errorf("stream of %s ends before version %d: %w", id, hi, it.Error())
		}
		v, at, err := entry()
		switch {
		case err != nil:
			return 0, err
		case v >= hi: // no version in [mid, hi)
			hi = mid
		case at > pos:
			hi = v
		default:
			lo = v
		}
	}
	// No version lies between lo and hi: the first above pos is the first from hi on.
	return hi, nil
}

// writeOutcome stages everything one applied batch changed. Keys and values are built in
// two reused buffers (Batch.Set copies them): an entry of transfers stages about a dozen
// records per transfer, and allocating each was a fifth of the apply path's garbage.
func writeOutcome(b, events *pebble.Batch, types *typeStage, out chronicle.Outcome) error {
	var key, val []byte
	var err error
	for i := range out.Events {
		e := &out.Events[i]
		if val, err = e.AppendBinary(val[:0]); err != nil {
			return fmt.Errorf("stage event %d: %w", e.Position, err)
		}
		if err := events.Set(appendEventKey(key[:0], e.Position), val, nil); err != nil {
			return fmt.Errorf("stage event %d: %w", e.Position, err)
		}
		if e.EventVersion%checkpointEvery == 0 {
			key = appendCheckpointKey(key[:0], e.AggregateID, e.CreatedAt)
			if err := b.Set(key, binary.BigEndian.AppendUint64(val[:0], e.EventVersion), nil); err != nil {
				return err
			}
		}
		key = appendStreamKey(key[:0], e.AggregateID, e.EventVersion)
		if err := b.Set(key, appendStreamValue(val[:0], e.Position, e.CreatedAt, e.Data.BalanceAfter), nil); err != nil {
			return err
		}
		if err := types.add(e.EventType, e.Position); err != nil {
			return err
		}
	}
	for _, a := range out.Accounts {
		if val, err = a.AppendBinary(val[:0]); err != nil {
			return fmt.Errorf("stage account %s: %w", a.ID, err)
		}
		if err := b.Set(appendAccountKey(key[:0], a.ID), val, nil); err != nil {
			return fmt.Errorf("stage account %s: %w", a.ID, err)
		}
	}
	for _, r := range out.Idempotency {
		if err := setBinary(b, idemKey(r.Key), r); err != nil {
			return fmt.Errorf("stage idempotency record: %w", err)
		}
		if err := b.Set(idemExpiryKey(r.CommitTime, r.Key), nil, nil); err != nil {
			return err
		}
	}
	if err := writeHolds(b, out.Holds); err != nil {
		return err
	}
	return setBinary(b, metaKey(metaHead), out.Head)
}
