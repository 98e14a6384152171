package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle/internal/pebbleutil"
)

// typeBlock is the newest record of the type index for one event type: the only one an
// apply can change, since positions only grow. Working memory keeps it per type
// (working.types), so the apply never reads the state DB for the index.
type typeBlock struct {
	block uint64
	bits  [typeBlockBytes]byte
}

// typeStage gathers one apply's additions to the type index, starting from the blocks in
// working memory, and writes each block it touched once, whole.
type typeStage struct {
	w      *working
	blocks map[string]*typeBlock // the newest block of each type this apply touched
	types  []string              // the types touched, in the order first touched
	done   []typeBlockRecord     // blocks the apply moved past
}

type typeBlockRecord struct {
	eventType string
	typeBlock
}

func newTypeStage(w *working) *typeStage {
	return &typeStage{w: w, blocks: map[string]*typeBlock{}}
}

// add marks pos as holding an event of eventType.
func (s *typeStage) add(eventType string, pos uint64) error {
	block, i, bit := typeBlockOf(pos)
	tb, ok := s.blocks[eventType]
	if !ok {
		tb = &typeBlock{block: block}
		if cur, ok := s.w.types[eventType]; ok && cur.block == block {
			*tb = *cur
		} else if ok && cur.block > block {
			return fmt.Errorf("type index: position %d (%s) is below block %d, the newest", pos, eventType, cur.block)
		}
		s.blocks[eventType] = tb
		s.types = append(s.types, eventType)
	} else if tb.block != block {
		if tb.block > block {
			return fmt.Errorf("type index: position %d (%s) is below block %d", pos, eventType, tb.block)
		}
		// Past the end of the block: it is written as it stands, and a new one begins.
		s.done = append(s.done, typeBlockRecord{eventType, *tb})
		*tb = typeBlock{block: block}
	}
	tb.bits[i] |= bit
	return nil
}

// write stages every block touched in b.
func (s *typeStage) write(b *pebble.Batch) error {
	var key []byte
	set := func(eventType string, tb *typeBlock) error {
		key = appendTypeBlockKey(key[:0], eventType, tb.block)
		return b.Set(key, tb.bits[:], nil)
	}
	for i := range s.done {
		if err := set(s.done[i].eventType, &s.done[i].typeBlock); err != nil {
			return err
		}
	}
	for _, t := range s.types {
		if err := set(t, s.blocks[t]); err != nil {
			return err
		}
	}
	return nil
}

// fold makes the newest blocks part of working memory, once the batch has committed.
func (s *typeStage) fold() {
	for t, tb := range s.blocks {
		s.w.types[t] = tb
	}
}

// loadTypeBlocks reads the newest type index record of every type: one seek per type.
func loadTypeBlocks(r pebble.Reader) (map[string]*typeBlock, error) {
	out := map[string]*typeBlock{}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixTypeBlock}, UpperBound: []byte{prefixTypeBlock + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for valid := it.First(); valid; {
		k := it.Key()
		end := bytes.IndexByte(k, 0)
		if end < 0 {
			return nil, fmt.Errorf("type index record %x: damaged", k)
		}
		prefix := append([]byte(nil), k[:end+1]...)
		if !it.SeekLT(pebbleutil.PrefixEnd(prefix)) {
			return nil, errors.Join(it.Error(), fmt.Errorf("type index %x: vanished", prefix))
		}
		k, v := it.Key(), it.Value()
		if len(k) != len(prefix)+8 || len(v) != typeBlockBytes {
			return nil, fmt.Errorf("type index record %x: damaged", k)
		}
		tb := &typeBlock{block: binary.BigEndian.Uint64(k[len(prefix):])}
		copy(tb.bits[:], v)
		out[string(prefix[1:end])] = tb
		valid = it.SeekGE(pebbleutil.PrefixEnd(prefix))
	}
	return out, it.Error()
}

// typePositions calls fn with the positions of eventType's events up to and including
// head, until fn returns false: in ascending order above after or, with descending, in
// descending order below after (from the newest when after is 0).
func (rd reader) typePositions(eventType string, descending bool, after uint64, head uint64, fn func(pos uint64) (bool, error)) error {
	prefix := typeBlockPrefix(eventType)
	lower, upper := prefix, pebbleutil.PrefixEnd(prefix)
	if !descending {
		lower = typeBlockKey(eventType, (after+1)/typeBlockSize)
	} else if after > 0 {
		upper = typeBlockKey(eventType, (after-1)/typeBlockSize+1)
	}
	it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()
	valid, step := it.First(), it.Next
	if descending {
		valid, step = it.Last(), it.Prev
	}
	for ; valid; valid = step() {
		k, bits := it.Key(), it.Value()
		if len(k) != len(prefix)+8 || len(bits) != typeBlockBytes {
			return fmt.Errorf("type index record %x: damaged", k)
		}
		base := binary.BigEndian.Uint64(k[len(prefix):]) * typeBlockSize
		for j := range typeBlockSize {
			if descending {
				j = typeBlockSize - 1 - j
			}
			if bits[j/8]&(1<<(j%8)) == 0 {
				continue
			}
			pos := base + uint64(j)
			if pos > head {
				if descending {
					continue
				}
				return it.Error()
			}
			if !descending && pos <= after || descending && after > 0 && pos >= after {
				continue
			}
			more, err := fn(pos)
			if err != nil || !more {
				return err
			}
		}
	}
	return it.Error()
}
