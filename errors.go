package chronicle

import (
	"errors"
	"fmt"
)

// Kind classifies an error by who must act on it; the HTTP layer maps kinds to statuses
// (httpapi), so the domain knows nothing of transports.
type Kind int

const (
	// KindInternal is a bug or an infrastructure failure: the caller did nothing wrong.
	KindInternal Kind = iota
	// KindMalformed is a request that cannot be understood (400).
	KindMalformed
	// KindNotFound names something that does not exist (404).
	KindNotFound
	// KindConflict collides with existing state, such as an account id in use (409).
	KindConflict
	// KindRejected is well formed but refused by a business rule (422).
	KindRejected
	// KindTooLarge exceeds a size limit (413).
	KindTooLarge
	// KindUnavailable means the node cannot serve the request now; retry later (503).
	KindUnavailable
	// KindTimeout means a bounded wait ran out (504).
	KindTimeout
	// KindUnauthenticated is a request without a valid token where one is needed (401).
	KindUnauthenticated
	// KindForbidden is a request whose token's role does not allow it (403).
	KindForbidden
	// KindTooMany is a request refused by a rate or concurrency limit; retry later (429).
	KindTooMany
	// KindInsufficientStorage means the node refuses writes because its disk is below
	// the free-space reserve; reads still work and writes resume once space is freed (507).
	KindInsufficientStorage
)

// Stable error codes. Clients branch on these, so they never change once released.
const (
	CodeInvalidJSON          = "invalid_json"
	CodeUnknownField         = "unknown_field"
	CodeMissingField         = "missing_field"
	CodeInvalidField         = "invalid_field"
	CodeInvalidAccountID     = "invalid_account_id"
	CodeInvalidAmount        = "invalid_amount"
	CodeUnknownCurrency      = "unknown_currency"
	CodeCurrencyMismatch     = "currency_mismatch"
	CodeSameAccount          = "same_account"
	CodeInsufficientFunds    = "insufficient_funds"
	CodeAccountNotFound      = "account_not_found"
	CodeAccountExists        = "account_exists"
	CodeAccountFrozen        = "account_frozen"
	CodeAccountClosed        = "account_closed"
	CodeBalanceNotZero       = "balance_not_zero"
	CodeTransferNotFound     = "transfer_not_found"
	CodeTransferNotPending   = "transfer_not_pending"
	CodeTransferExpired      = "transfer_expired"
	CodeInvalidTimestamp     = "invalid_timestamp"
	CodeInvalidQuery         = "invalid_query"
	CodeIdempotencyMismatch  = "idempotency_key_reused"
	CodeInvalidIdempotency   = "invalid_idempotency_key"
	CodeBodyTooLarge         = "body_too_large"
	CodeBatchTooLarge        = "batch_too_large"
	CodeUnsupportedMediaType = "unsupported_media_type"
	CodeForbiddenOrigin      = "forbidden_origin"
	CodeForbiddenHost        = "forbidden_host"
	CodeNotFound             = "not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeNotLeader            = "not_leader"
	CodeNoLeader             = "no_leader"
	CodeUnavailable          = "unavailable"
	CodeTimeout              = "timeout"
	CodeTooManyStreams       = "too_many_streams"
	CodeTooManyRequests      = "too_many_requests"
	CodeStreamLagging        = "stream_lagging"
	// Cluster membership: a joining node that does not answer on its Raft address, one
	// that did not catch up in time (its admission was rolled back), and a join that
	// would replace the leader itself.
	CodeJoinUnreachable  = "join_unreachable"
	CodeJoinCatchUp      = "join_catch_up_timeout"
	CodeJoinConflict     = "join_conflict"
	CodeInternal         = "internal"
	CodeUnauthorized     = "unauthorized"
	CodeForbiddenRole    = "forbidden_role"
	CodeRateLimited      = "rate_limited"
	CodeInvalidTokenName = "invalid_token_name"
	CodeInvalidRole      = "invalid_role"
	CodeTokenExists      = "token_exists"
	CodeTokenNotFound    = "token_not_found"
	// CodeInsufficientStorage: the data dir's filesystem is below the free-space reserve
	// (--disk-reserve); nothing was proposed.
	CodeInsufficientStorage = "insufficient_storage"
	// CodeStorageFault: this node's own storage failed a checksum or a read; it serves
	// nothing until repaired (503, retry on another node).
	CodeStorageFault = "storage_fault"
)

// Error is the domain's error: a kind, a stable code and a message safe to show a client.
type Error struct {
	Kind    Kind   `json:"kind"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
	// Safe marks a refusal that happened before anything was proposed, so the request
	// may be sent to another node without risking a second effect.
	Safe bool `json:"-"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldErrorf builds an *Error that names the request field at fault.
func FieldErrorf(kind Kind, code, field, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// AsError finds the *Error in err's chain; anything else is reported as internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindInternal, Code: CodeInternal, Message: "internal error"}
}
