// Package api is Chronicle's HTTP contract: the request and response bodies that httpapi
// serves and that client (and through it the CLI) sends and reads, and the OpenAPI
// document describing every route. It imports only the standard library and the domain.
//
// The JSON field names are the original system's and its clients depend on them; the
// shape of an event is the domain's (chronicle.Event, pinned by testdata/golden).
package api

import (
	_ "embed" // the OpenAPI document
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// CreateAccount is the body of POST /commands/create-account. The server also accepts
// the amounts as JSON numbers, and initial_balance as null.
type CreateAccount struct {
	AccountID      string `json:"account_id"`
	OwnerName      string `json:"owner_name"`
	Currency       string `json:"currency"`
	InitialBalance string `json:"initial_balance,omitempty"`
	OverdraftLimit string `json:"overdraft_limit,omitempty"`
	Description    string `json:"description,omitempty"`
}

// Money is the body of POST /commands/deposit and /commands/withdraw.
type Money struct {
	AccountID   string `json:"account_id"`
	Amount      string `json:"amount"`
	Currency    string `json:"currency,omitempty"`
	Description string `json:"description,omitempty"`
}

// Transfer is the body of POST /commands/transfer.
type Transfer struct {
	FromAccountID string `json:"from_account_id"`
	ToAccountID   string `json:"to_account_id"`
	Amount        string `json:"amount"`
	Currency      string `json:"currency,omitempty"`
	Description   string `json:"description,omitempty"`
	// Pending makes the transfer a hold (two-phase transfer): the amount is reserved on
	// the debit account until captured, voided or expired after TimeoutSeconds of commit
	// time (default 86400, at most 2592000).
	Pending        bool   `json:"pending,omitempty"`
	TimeoutSeconds *int64 `json:"timeout_seconds,omitempty"`
}

// CaptureTransfer is the body of POST /commands/capture-transfer: it posts a pending
// transfer, all of it or Amount (at most the amount held; the rest is released).
type CaptureTransfer struct {
	TransferID  string `json:"transfer_id"`
	Amount      string `json:"amount,omitempty"`
	Description string `json:"description,omitempty"`
}

// VoidTransfer is the body of POST /commands/void-transfer: it releases a pending
// transfer.
type VoidTransfer struct {
	TransferID  string `json:"transfer_id"`
	Reason      string `json:"reason,omitempty"`
	Description string `json:"description,omitempty"`
}

// AccountLifecycle is the body of POST /commands/freeze-account, /commands/unfreeze-account
// and /commands/close-account. Reason is required to freeze or close.
type AccountLifecycle struct {
	AccountID string `json:"account_id"`
	Reason    string `json:"reason,omitempty"`
}

// BatchItem is one command of POST /commands/batch: its type ("create-account",
// "deposit", "withdraw", "transfer", "freeze-account", "unfreeze-account",
// "close-account", "capture-transfer", "void-transfer"), an optional idempotency key, and that command's fields (a field the
// command does not take is refused).
type BatchItem struct {
	Type           string `json:"type"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	AccountID      string `json:"account_id,omitempty"`
	OwnerName      string `json:"owner_name,omitempty"`
	Currency       string `json:"currency,omitempty"`
	InitialBalance string `json:"initial_balance,omitempty"`
	OverdraftLimit string `json:"overdraft_limit,omitempty"`
	FromAccountID  string `json:"from_account_id,omitempty"`
	ToAccountID    string `json:"to_account_id,omitempty"`
	Amount         string `json:"amount,omitempty"`
	Description    string `json:"description,omitempty"`
	// Two-phase transfers: a transfer's pending and timeout_seconds; the transfer_id of a
	// capture-transfer or void-transfer, and a void's reason.
	Pending        bool   `json:"pending,omitempty"`
	TimeoutSeconds *int64 `json:"timeout_seconds,omitempty"`
	TransferID     string `json:"transfer_id,omitempty"`
	Reason         string `json:"reason,omitempty"`
}

// Batch is the body of POST /commands/batch.
type Batch struct {
	Commands []BatchItem `json:"commands"`
}

// JoinRequest is the body of POST /cluster/join. APIURL is required: the leader follows
// the joining node's catch-up there before it makes the node a voter.
type JoinRequest struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	APIURL   string `json:"api_url"`
}

// EventRef is an event as a command response lists it (the seed's {event_id, type}).
type EventRef struct {
	EventID     string `json:"event_id"`
	Type        string `json:"type"`
	AggregateID string `json:"aggregate_id"`
	Position    uint64 `json:"position"`
}

// CommandResult is the response to a command: 201 for a new effect, 200 for an
// idempotent replay.
type CommandResult struct {
	Success     bool       `json:"success"`
	EventID     string     `json:"event_id,omitempty"`
	TransferID  string     `json:"transfer_id,omitempty"`
	AccountID   string     `json:"account_id,omitempty"`
	Position    uint64     `json:"position"`
	CommittedAt time.Time  `json:"committed_at"`
	Replayed    bool       `json:"idempotent_replay,omitempty"`
	Events      []EventRef `json:"events"`
	// Status is the HTTP status the result came with, set by clients; never served.
	Status int `json:"-"`
}

// BatchResult is one command's outcome in a batch: its result, or its error.
type BatchResult struct {
	CommandResult
	Error string `json:"error,omitempty"`
	Code  string `json:"code,omitempty"`
	Field string `json:"field,omitempty"`
}

// BatchResponse is the response to POST /commands/batch; Position is the highest
// position any of its commands committed at.
type BatchResponse struct {
	Results  []BatchResult `json:"results"`
	Position uint64        `json:"position"`
}

// Account is an account as the seed's query API returned it, balances as strings.
type Account struct {
	AccountID      string    `json:"account_id"`
	OwnerName      string    `json:"owner_name"`
	Balance        string    `json:"balance"`
	Currency       string    `json:"currency"`
	OverdraftLimit string    `json:"overdraft_limit,omitempty"`
	Status         string    `json:"status"`
	CreatedAt      time.Time `json:"created_at"`
	LastUpdated    time.Time `json:"last_updated"`
	Version        uint64    `json:"version"`
	// Held is the total of the account's open pending transfers; Available is Balance
	// less Held, what debits may spend (down to -overdraft_limit).
	Held      string `json:"held"`
	Available string `json:"available"`
}

// Accounts is the response to GET /accounts; NextAfter is set when the page is full.
type Accounts struct {
	Accounts  []Account `json:"accounts"`
	Total     int       `json:"total"`
	NextAfter string    `json:"next_after,omitempty"`
}

// Transaction is one statement line, named as the seed's transactions table.
type Transaction struct {
	TransactionID string    `json:"transaction_id"`
	AccountID     string    `json:"account_id"`
	Type          string    `json:"type"`
	EventType     string    `json:"event_type"`
	Amount        string    `json:"amount"`
	BalanceAfter  string    `json:"balance_after"`
	Currency      string    `json:"currency"`
	Description   string    `json:"description,omitempty"`
	TransferID    string    `json:"transfer_id,omitempty"`
	Counterparty  string    `json:"counterparty,omitempty"`
	Position      uint64    `json:"position"`
	Version       uint64    `json:"version"`
	Timestamp     time.Time `json:"timestamp"`
}

// Transactions is the response to GET /accounts/{id}/transactions; NextBefore (a
// version) is set when the page is full and older lines remain.
type Transactions struct {
	AccountID    string        `json:"account_id"`
	Transactions []Transaction `json:"transactions"`
	Total        int           `json:"total"`
	NextBefore   uint64        `json:"next_before,omitempty"`
}

// Balance is the response to GET /accounts/{id}/balance-at.
type Balance struct {
	AccountID string `json:"account_id"`
	Balance   string `json:"balance"`
	Currency  string `json:"currency"`
	// At is the instant asked about, RFC 3339 in UTC.
	At string `json:"at"`
	// AsOf is the commit time of the last command at or before At.
	AsOf     time.Time `json:"as_of"`
	Position uint64    `json:"position"`
}

// Events is the response to GET /events; NextAfter is set when the page is full.
type Events struct {
	Events    []chronicle.Event `json:"events"`
	Total     int               `json:"total"`
	NextAfter uint64            `json:"next_after,omitempty"`
}

// Health is the response to GET /health.
type Health struct {
	Status  string `json:"status"`
	Service string `json:"service"`
	Version string `json:"version"`
}

// Ready is the response to GET /ready: status "ready" (200) or "not_ready" (503) with
// the reason; Node is the node's own description (role, term, positions).
type Ready struct {
	Status string `json:"status"`
	Node   any    `json:"node"`
	Error  string `json:"error,omitempty"`
}

// JoinResponse is the response to POST /cluster/join.
type JoinResponse struct {
	Success bool   `json:"success"`
	NodeID  string `json:"node_id"`
	Leader  string `json:"leader"`
}

// RemoveResponse is the response to DELETE /cluster/nodes/{id}.
type RemoveResponse struct {
	Success bool   `json:"success"`
	Removed string `json:"removed"`
}

// ErrorBody is the body of every error response: a message, a stable code (see the domain's
// Code constants) and, when one field is at fault, its name.
type ErrorBody struct {
	Message string `json:"error"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
}

//go:embed openapi.json
var openAPI string

// OpenAPI is the OpenAPI 3.0 document of the HTTP API, served at GET /openapi.json.
func OpenAPI() []byte { return []byte(openAPI) }

// TokenCreate is the body of POST /admin/tokens.
type TokenCreate struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Token describes an API token (never its secret).
type Token struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	RevokedBy string     `json:"revoked_by,omitempty"`
}

// TokenCreated is the response to POST /admin/tokens: the only time the secret is shown.
type TokenCreated struct {
	Token
	Secret string `json:"token"`
}

// Tokens is the response to GET /admin/tokens.
type Tokens struct {
	Tokens []Token `json:"tokens"`
}
