package node

import (
	"context"
	"errors"

	"github.com/chronicle-ledger/chronicle/projector"
)

// openPostgresView is replaced when the PostgreSQL view lands.
func openPostgresView(ctx context.Context, cfg Config) (projector.View, error) {
	return nil, errors.New("node: postgres read model not built in yet")
}
