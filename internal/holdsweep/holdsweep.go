// Package holdsweep expires pending transfers (holds) whose deadline has passed when no
// client command touches them: the process that may write alone (the Raft leader, or in
// SQL mode the holder of the publisher lease) proposes an expire-transfers command once
// the earliest deadline has passed by its clock. The command's commit time decides what
// expires, so every replica (and a replay) expires exactly the same holds.
package holdsweep

import (
	"context"
	"log/slog"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// DefaultInterval is how often the sweep looks at the earliest deadline.
const DefaultInterval = time.Second

// Config is what a sweep needs from its store and node.
type Config struct {
	// Active reports whether this process is the one that sweeps now (the Raft leader,
	// the publisher-lease holder).
	Active func() bool
	// NextDeadline is the earliest deadline of an open hold (ok false: none).
	NextDeadline func(ctx context.Context) (t time.Time, ok bool, err error)
	// Execute commits commands (the store's).
	Execute func(ctx context.Context, cmds []chronicle.Command) ([]chronicle.Result, error)
	// Interval between looks (0: DefaultInterval).
	Interval time.Duration
	// Now is the clock compared with deadlines (nil: time.Now); the commit time of the
	// command comes from the store's own clock.
	Now    func() time.Time
	Logger *slog.Logger
}

// Run sweeps until ctx ends.
func Run(ctx context.Context, cfg Config) {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Several rounds while holds stay due: one command expires at most
		// chronicle.MaxExpirePerCommand of them.
		for i := 0; i < 16 && ctx.Err() == nil; i++ {
			if !Once(ctx, cfg) {
				break
			}
		}
	}
}

// Once proposes one expire-transfers command if this process is active and a hold is
// due by its clock; it reports whether the command expired anything.
func Once(ctx context.Context, cfg Config) bool {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.Active() {
		return false
	}
	at, ok, err := cfg.NextDeadline(ctx)
	if err != nil {
		cfg.Logger.Warn("hold sweep: read the next deadline", "err", err)
		return false
	}
	if !ok || cfg.Now().Before(at) {
		return false
	}
	res, err := cfg.Execute(ctx, []chronicle.Command{{Type: chronicle.CmdExpireTransfers, ID: chronicle.NewID(), CreatedBy: "hold-sweep"}})
	if err != nil {
		// Lost leadership, shutting down, a full disk: the next round (or the next
		// leader) tries again.
		cfg.Logger.Debug("hold sweep: expire-transfers not committed", "err", err)
		return false
	}
	if len(res) != 1 || res[0].Err != nil {
		// no_transfer_due: the store's commit time is still before the deadline (clocks
		// differ) or a command expired the hold first.
		return false
	}
	cfg.Logger.Info("hold sweep: expired pending transfers", "count", res[0].EventCount, "position", res[0].Position)
	return true
}
