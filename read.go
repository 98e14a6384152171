package chronicle

import (
	"context"
	"fmt"
	"time"
)

// Statement line types, as the seed's transactions table named them.
const (
	LineOpening     = "opening_balance"
	LineDeposit     = "deposit"
	LineWithdrawal  = "withdrawal"
	LineTransferIn  = "transfer_in"
	LineTransferOut = "transfer_out"
	// Two-phase transfers: a hold and its release leave the posted balance unchanged;
	// a capture's legs are transfer_out and transfer_in.
	LineHold        = "hold"
	LineHoldVoided  = "hold_voided"
	LineHoldExpired = "hold_expired"
)

// StatementLine is one line of an account's statement: one event of its stream.
type StatementLine struct {
	TransactionID string    `json:"transaction_id"`
	AccountID     string    `json:"account_id"`
	Type          string    `json:"type"`
	EventType     string    `json:"event_type"`
	Amount        int64     `json:"amount"`
	BalanceAfter  int64     `json:"balance_after"`
	Currency      string    `json:"currency"`
	Description   string    `json:"description,omitempty"`
	TransferID    string    `json:"transfer_id,omitempty"`
	Counterparty  string    `json:"counterparty,omitempty"`
	Position      uint64    `json:"position"`
	Version       uint64    `json:"version"`
	Timestamp     time.Time `json:"timestamp"`
}

// Project applies event e to the account it belongs to (acc is the zero Account before
// its AccountCreated) and returns the account after it and the statement line it adds.
// Every read model is built with this one function, so views cannot disagree on rules.
func Project(acc Account, e Event) (Account, StatementLine, error) {
	d := e.Data
	cur, err := LookupCurrency(d.Currency)
	if err != nil {
		return acc, StatementLine{}, fmt.Errorf("position %d: %w", e.Position, err)
	}
	line := StatementLine{TransactionID: e.EventID, AccountID: e.AggregateID, EventType: e.EventType,
		Currency: cur.Code, Description: d.Description, TransferID: d.TransferID, Counterparty: d.Counterparty,
		Position: e.Position, Version: e.EventVersion, Timestamp: e.CreatedAt, Amount: d.Amount, BalanceAfter: d.BalanceAfter}
	switch e.EventType {
	case EventAccountCreated:
		acc = Account{ID: e.AggregateID, OwnerName: d.OwnerName, Currency: cur.Code, Status: StatusActive,
			CreatedAt: e.CreatedAt, OverdraftLimit: d.OverdraftLimit}
		line.Type, line.Amount = LineOpening, d.InitialBalance
	case EventMoneyDeposited:
		line.Type = LineDeposit
		if d.TransferID != "" {
			line.Type = LineTransferIn
		}
	case EventMoneyWithdrawn:
		line.Type = LineWithdrawal
		if d.TransferID != "" {
			line.Type = LineTransferOut
		}
	case EventAccountFrozen, EventAccountUnfrozen, EventAccountClosed:
		// No money moves; the line records the status change and its reason.
		line.Type, line.Amount, line.Description = lifecycleLine(e.EventType), 0, d.Reason
		acc.Status = lifecycleStatus(e.EventType)
	case EventTransferPending, EventTransferCaptured, EventTransferVoided, EventTransferExpired:
		line.Type = holdLineType(e)
		acc.Held = d.HeldAfter
	default:
		return acc, line, fmt.Errorf("position %d: unknown event type %s", e.Position, e.EventType)
	}
	if acc.ID != e.AggregateID {
		return acc, line, fmt.Errorf("position %d: %s for account %s, which has no AccountCreated", e.Position, e.EventType, e.AggregateID)
	}
	acc.Balance, acc.Version, acc.LastUpdated = line.BalanceAfter, e.EventVersion, e.CreatedAt
	return acc, line, nil
}

// ReadModel is a query-side view of the ledger, built from the log by a projector. Its
// answers are as of Position: they include every event up to it and none after.
type ReadModel interface {
	// Position is the last log position the view has applied (0: none).
	Position(ctx context.Context) (uint64, error)
	Account(ctx context.Context, id string) (Account, error)
	// Accounts lists customer accounts ordered by id, starting after the id given.
	Accounts(ctx context.Context, after string, limit int) ([]Account, error)
	// Transactions lists an account's statement newest first, below version before
	// (0: from the newest).
	Transactions(ctx context.Context, id string, before uint64, limit int) ([]StatementLine, error)
}

// ErrAccountNotFound builds the error for an unknown account.
func ErrAccountNotFound(id string) *Error {
	return Errorf(KindNotFound, CodeAccountNotFound, "account %q not found", id)
}
