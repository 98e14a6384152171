package node

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/chronicle-ledger/chronicle/httpapi"
	"github.com/chronicle-ledger/chronicle/internal/holdsweep"
)

// sweepHolds expires pending transfers past their deadline that no command touches: in
// Raft mode the leader proposes the expire-transfers commands, in SQL mode the command
// process holding the "hold-sweep" lease (one at a time per database; a second sweeper
// would only be refused with no_transfer_due). It returns when ctx ends.
func (n *Node) sweepHolds(ctx context.Context) {
	if n.cfg.HoldSweepInterval < 0 {
		return
	}
	cfg := holdsweep.Config{Interval: n.cfg.HoldSweepInterval, Logger: n.log.With("component", "hold-sweep")}
	if n.store != nil {
		cfg.Active, cfg.NextDeadline, cfg.Execute = n.store.IsLeader, n.store.NextHoldDeadline, n.store.Execute
		holdsweep.Run(ctx, cfg)
		return
	}
	if n.cfg.Role == httpapi.RoleQuery {
		return // a query process never writes
	}
	var held atomic.Bool
	leaseDone := make(chan struct{})
	go func() {
		defer close(leaseDone)
		n.sql.holdLease(ctx, "hold-sweep", &held)
	}()
	defer func() { <-leaseDone }()
	cfg.Active = held.Load
	cfg.Execute = n.sql.Execute
	cfg.NextDeadline = func(ctx context.Context) (time.Time, bool, error) {
		st, err := n.sql.store()
		if err != nil {
			return time.Time{}, false, err
		}
		ctx, cancel := context.WithTimeout(ctx, n.sql.callTimeout)
		defer cancel()
		return st.NextHoldDeadline(ctx)
	}
	holdsweep.Run(ctx, cfg)
}
