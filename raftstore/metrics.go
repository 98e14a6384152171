package raftstore

import (
	"github.com/cockroachdb/pebble/v2"

	"github.com/chronicle-ledger/chronicle/internal/metrics"
)

// RaftMetrics is this node's Raft state for the metrics collector, read at each scrape
// (Raft's own stats: its commit and applied index, no-ops and configuration entries
// included, and its last log index).
func (s *Store) RaftMetrics() metrics.RaftStatus {
	st := s.raft.Stats()
	return metrics.RaftStatus{State: s.raft.State().String(), Term: parseUint(st["term"]), CommitIndex: parseUint(st["commit_index"]),
		AppliedIndex: parseUint(st["applied_index"]), LastLogIndex: parseUint(st["last_log_index"])}
}

// StateDBMetrics is the state DB's Pebble metrics, nil once the store is closing.
func (s *Store) StateDBMetrics() *pebble.Metrics { return s.dbMetrics(s.fsm.db) }

// EventsDBMetrics is the events DB's Pebble metrics, nil once the store is closing.
func (s *Store) EventsDBMetrics() *pebble.Metrics { return s.dbMetrics(s.fsm.ev) }

func (s *Store) dbMetrics(db *pebble.DB) *pebble.Metrics {
	select {
	case <-s.stop:
		return nil
	default:
	}
	return db.Metrics()
}
