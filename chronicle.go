// Package chronicle is the domain of Chronicle Ledger: accounts, exact money, commands,
// hash-chained events and the deterministic state machine that turns one into the other.
// It imports only the standard library (its ISO 4217 table is generated and checked in), so
// every store (Raft + Pebble, SQL) runs the same rules.
package chronicle

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// AccountStatus is the lifecycle state of an account.
type AccountStatus string

// Account statuses.
const (
	StatusActive AccountStatus = "active"
	StatusFrozen AccountStatus = "frozen"
	StatusClosed AccountStatus = "closed"
)

// AggregateAccount is the aggregate type of every account stream.
const AggregateAccount = "Account"

// ExternalPrefix starts the id of a currency's external account (e.g. "@world:USD"):
// the other side of deposits and withdrawals, the only accounts allowed to go negative
// without limit.
const ExternalPrefix = "@world:"

// Limits on client-supplied text, so that one request cannot bloat every replica.
const (
	MaxAccountIDLen   = 64
	MaxOwnerNameLen   = 200
	MaxDescriptionLen = 500
	// MaxBatchCommands bounds the commands of one batch (as TigerBeetle bounds its batches).
	MaxBatchCommands = 8190
)

// Account is the current state of one account. Amounts are minor units of Currency.
type Account struct {
	ID             string        `json:"account_id"`
	OwnerName      string        `json:"owner_name,omitempty"`
	Currency       string        `json:"currency"`
	Balance        int64         `json:"balance"`
	OverdraftLimit int64         `json:"overdraft_limit,omitempty"`
	Status         AccountStatus `json:"status"`
	CreatedAt      time.Time     `json:"created_at"`
	LastUpdated    time.Time     `json:"last_updated"`
	// Version is the number of events in the account's stream.
	Version uint64 `json:"version"`
	// Held is the total of the account's open pending transfers (holds): reserved, not
	// yet posted. Available is Balance - Held.
	Held int64 `json:"held,omitempty"`
}

// Available is what the account can still spend before its overdraft limit: the posted
// balance less its open holds.
func (a Account) Available() int64 { return a.Balance - a.Held }

// External reports whether a is a currency's external account.
func (a Account) External() bool { return IsExternal(a.ID) }

// IsExternal reports whether id names a currency's external account.
func IsExternal(id string) bool { return strings.HasPrefix(id, ExternalPrefix) }

// ExternalAccountID is the id of cur's external account.
func ExternalAccountID(cur string) string { return ExternalPrefix + cur }

// ValidateAccountID checks a client-chosen account id: 1-64 characters of [A-Za-z0-9._:-].
func ValidateAccountID(field, id string) error {
	if id == "" {
		return FieldErrorf(KindMalformed, CodeMissingField, field, "%s is required", field)
	}
	if len(id) > MaxAccountIDLen {
		return FieldErrorf(KindMalformed, CodeInvalidAccountID, field, "%s must be at most %d characters", field, MaxAccountIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return FieldErrorf(KindMalformed, CodeInvalidAccountID, field, "%s may contain only letters, digits and . _ : -", field)
		}
	}
	return nil
}

// validateText checks free text: valid UTF-8, no control characters, bounded length.
func validateText(field, s string, maxLen int, required bool) error {
	if s == "" {
		if required {
			return FieldErrorf(KindMalformed, CodeMissingField, field, "%s is required", field)
		}
		return nil
	}
	if !utf8.ValidString(s) {
		return FieldErrorf(KindMalformed, CodeInvalidField, field, "%s must be valid UTF-8", field)
	}
	if utf8.RuneCountInString(s) > maxLen {
		return FieldErrorf(KindMalformed, CodeInvalidField, field, "%s must be at most %d characters", field, maxLen)
	}
	if strings.TrimSpace(s) == "" {
		return FieldErrorf(KindMalformed, CodeInvalidField, field, "%s must not be blank", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return FieldErrorf(KindMalformed, CodeInvalidField, field, "%s must not contain control characters", field)
		}
	}
	return nil
}
