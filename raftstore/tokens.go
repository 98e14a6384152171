package raftstore

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"

	"github.com/chronicle-ledger/chronicle"
)

// ApplyToken implements chronicle.TokenStore: it replicates op as an EntryToken (leader
// only; others answer not_leader) and returns the record as applied.
func (s *Store) ApplyToken(ctx context.Context, op chronicle.TokenOp) (chronicle.Token, error) {
	if err := op.Validate(); err != nil {
		return chronicle.Token{}, err
	}
	if err := s.faultErr(); err != nil {
		return chronicle.Token{}, err
	}
	if s.raft.State() != raft.Leader {
		return chronicle.Token{}, s.notLeader()
	}
	if err := s.writeGuard(); err != nil {
		return chronicle.Token{}, err
	}
	data, err := op.MarshalBinary()
	if err != nil {
		return chronicle.Token{}, err
	}
	f := s.raft.Apply(chronicle.EncodeEntry(chronicle.EntryToken, data), timeoutOf(ctx, s.cfg.ApplyTimeout))
	if err := s.await(f); err != nil {
		return chronicle.Token{}, s.applyError(err)
	}
	r, ok := f.Response().(applyResponse)
	switch {
	case !ok:
		return chronicle.Token{}, fmt.Errorf("raftstore: token entry answered %T", f.Response())
	case r.err != nil:
		return chronicle.Token{}, r.err
	case r.tokenErr != nil:
		return chronicle.Token{}, r.tokenErr
	}
	return r.token, nil
}

// Tokens implements chronicle.TokenStore from this node's state: a follower knows every
// token the leader has applied to it.
func (s *Store) Tokens(ctx context.Context) ([]chronicle.Token, error) {
	var out []chronicle.Token
	err := s.read(func(rd reader) error {
		it, err := rd.r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixToken}, UpperBound: []byte{prefixToken + 1}})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			var t chronicle.Token
			if err := t.UnmarshalBinary(it.Value()); err != nil {
				_ = it.Close()
				return fmt.Errorf("token %q: %w", it.Key()[1:], err)
			}
			out = append(out, t)
		}
		return it.Close()
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: read tokens: %w", err)
	}
	return out, nil
}
