package client

import (
	"context"

	"github.com/chronicle-ledger/chronicle/api"
)

// Two-phase transfers: Transfer with Pending set holds the amount; these finish the hold.
type (
	CaptureTransfer = api.CaptureTransfer
	VoidTransfer    = api.VoidTransfer
)

// CaptureTransfer posts a pending transfer (all of it, or req.Amount).
func (c *Client) CaptureTransfer(ctx context.Context, req CaptureTransfer, idemKey string) (CommandResult, error) {
	return c.command(ctx, "capture-transfer", req, idemKey)
}

// VoidTransfer releases a pending transfer.
func (c *Client) VoidTransfer(ctx context.Context, req VoidTransfer, idemKey string) (CommandResult, error) {
	return c.command(ctx, "void-transfer", req, idemKey)
}
