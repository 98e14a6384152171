package client

import (
	"context"

	"github.com/chronicle-ledger/chronicle/api"
)

// AccountLifecycle is the body of the freeze, unfreeze and close commands.
type AccountLifecycle = api.AccountLifecycle

// FreezeAccount freezes an account: it then refuses debits and accepts credits. The
// reason is required.
func (c *Client) FreezeAccount(ctx context.Context, req AccountLifecycle, idemKey string) (CommandResult, error) {
	return c.command(ctx, "freeze-account", req, idemKey)
}

// UnfreezeAccount makes a frozen account active again. The reason is optional.
func (c *Client) UnfreezeAccount(ctx context.Context, req AccountLifecycle, idemKey string) (CommandResult, error) {
	return c.command(ctx, "unfreeze-account", req, idemKey)
}

// CloseAccount closes an account whose balance is zero, for good. The reason is required.
func (c *Client) CloseAccount(ctx context.Context, req AccountLifecycle, idemKey string) (CommandResult, error) {
	return c.command(ctx, "close-account", req, idemKey)
}
