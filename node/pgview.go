package node

import (
	"context"
	"fmt"

	"github.com/chronicle-ledger/chronicle/projector"
)

func openPostgresView(ctx context.Context, cfg Config) (projector.View, error) {
	v, err := projector.OpenPostgresView(ctx, cfg.ReadModel, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return v, nil
}
