package node

import (
	"context"
	"fmt"

	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/metrics"
)

// raftMetrics is the Raft store's recorder (nil with metrics off).
func (n *Node) raftMetrics() *metrics.Raft {
	if n.metrics == nil {
		return nil
	}
	return n.metrics.Raft
}

// registerMetrics adds the collectors that read this node's state at scrape time: Raft
// and the state DB where Raft runs, the head, read model, NATS publisher and streams
// everywhere.
func (n *Node) registerMetrics() error {
	if n.metrics == nil {
		return nil
	}
	if n.store != nil {
		if err := n.metrics.RegisterRaft(n.store.RaftMetrics); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
		if err := n.metrics.RegisterPebble("state", n.store.StateDBMetrics); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
		if err := n.metrics.RegisterPebble("events", n.store.EventsDBMetrics); err != nil {
			return fmt.Errorf("node: metrics: %w", err)
		}
	}
	if err := n.metrics.RegisterLog(n.logMetrics); err != nil {
		return fmt.Errorf("node: metrics: %w", err)
	}
	return nil
}

// logMetrics is where the log, the read model and the NATS publisher stand.
func (n *Node) logMetrics() metrics.LogStatus {
	st := metrics.LogStatus{SSEClients: n.api.StreamStats().Open}
	if n.store != nil {
		st.Head, _ = n.store.Position(context.Background()) // in memory: never fails
	} else {
		st.Head = n.sql.pos.Current()
	}
	if n.proj != nil || n.store != nil {
		v := n.ViewStatus()
		st.View, st.ViewPosition, st.ViewLagEvents, st.ViewLagSeconds = v.View, v.Position, v.LagEvents, v.LagSeconds
	}
	// A query process publishes nothing; every other process runs a publisher (into a
	// NATS shared by a cluster, only the leader or lease holder publishes at a time).
	if n.sql == nil || n.cfg.Role != httpapi.RoleQuery {
		st.Publishing, st.Published, st.Connected = true, n.bus.Published(), n.bus.Connected()
	}
	return st
}
