package chronicle

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// CommandType names a command; the values are the seed's command paths.
type CommandType string

// Command types.
const (
	CmdCreateAccount CommandType = "create-account"
	CmdDeposit       CommandType = "deposit"
	CmdWithdraw      CommandType = "withdraw"
	CmdTransfer      CommandType = "transfer"

	// Account lifecycle.
	CmdFreezeAccount   CommandType = "freeze-account"
	CmdUnfreezeAccount CommandType = "unfreeze-account"
	CmdCloseAccount    CommandType = "close-account"

	// Two-phase transfers: a transfer with Pending set holds the amount; these finish it.
	// CmdExpireTransfers is proposed by the node itself, never by a client.
	CmdCaptureTransfer CommandType = "capture-transfer"
	CmdVoidTransfer    CommandType = "void-transfer"
	CmdExpireTransfers CommandType = "expire-transfers"
)

// Command is one request to change the ledger. The request fields keep the seed's JSON
// names; ID and the metadata fields are set by the node that accepts it.
type Command struct {
	Type CommandType `json:"type"`

	AccountID      string  `json:"account_id,omitempty"`
	OwnerName      string  `json:"owner_name,omitempty"`
	Currency       string  `json:"currency,omitempty"`
	InitialBalance Decimal `json:"initial_balance,omitempty"`
	OverdraftLimit Decimal `json:"overdraft_limit,omitempty"`
	Amount         Decimal `json:"amount,omitempty"`
	Description    string  `json:"description,omitempty"`
	FromAccountID  string  `json:"from_account_id,omitempty"`
	ToAccountID    string  `json:"to_account_id,omitempty"`
	// Reason says why (freeze, unfreeze, close, void).
	Reason string `json:"reason,omitempty"`
	// TransferID names the pending transfer a capture or void finishes.
	TransferID string `json:"transfer_id,omitempty"`
	// Pending makes a transfer a hold on the debit account until captured, voided or
	// expired; TimeoutSeconds is its lifetime in commit time.
	Pending        bool  `json:"pending,omitempty"`
	TimeoutSeconds int64 `json:"timeout_seconds,omitempty"`

	// ID is a random id given when the command is accepted; event ids and the transfer id
	// derive from it, so replaying the log yields the same ids on every replica.
	ID             string `json:"id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	RequestID      string `json:"request_id,omitempty"`
	CreatedBy      string `json:"created_by,omitempty"`
}

// MaxIdempotencyKeyLen bounds the Idempotency-Key a client may send.
const MaxIdempotencyKeyLen = 255

// NewID returns a random RFC 4122 version 4 UUID.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

// derivedID is a deterministic UUID (version 8, RFC 9562) for the n-th id of command id.
func derivedID(id string, n int) string {
	// The bytes of fmt.Sprintf("%s/%d", id, n), built without fmt: this runs for every
	// event on the apply path.
	var buf [96]byte
	in := append(append(buf[:0], id...), '/')
	in = strconv.AppendInt(in, int64(n), 10)
	sum := sha256.Sum256(in)
	var b [16]byte
	copy(b[:], sum[:16])
	b[6] = b[6]&0x0f | 0x80
	b[8] = b[8]&0x3f | 0x80
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Fingerprint identifies what the command asks for, leaving out the ids and metadata
// a retry changes, so a reused idempotency key can be told apart from a true retry.
func (c Command) Fingerprint() string {
	body := c
	body.ID, body.IdempotencyKey, body.RequestID, body.CreatedBy = "", "", "", ""
	var buf [256]byte
	sum := sha256.Sum256(body.appendBinary(buf[:0], body.extended())) // version-1 commands keep their fingerprints
	return hex.EncodeToString(sum[:])
}

// Validate checks everything about c that needs no ledger state. The state machine runs
// it again, so a command that skipped it (a bug, an old client of the log) still cannot
// write anything invalid.
func (c Command) Validate() error {
	if len(c.IdempotencyKey) > MaxIdempotencyKeyLen {
		return FieldErrorf(KindMalformed, CodeInvalidIdempotency, "Idempotency-Key", "idempotency key must be at most %d bytes", MaxIdempotencyKeyLen)
	}
	switch c.Type {
	case CmdCreateAccount:
		if err := ValidateAccountID("account_id", c.AccountID); err != nil {
			return err
		}
		if err := validateText("owner_name", c.OwnerName, MaxOwnerNameLen, true); err != nil {
			return err
		}
		if c.Currency == "" {
			return FieldErrorf(KindMalformed, CodeMissingField, "currency", "currency is required")
		}
		cur, err := LookupCurrency(c.Currency)
		if err != nil {
			return err
		}
		if c.InitialBalance != "" {
			if _, err := nonNegative("initial_balance", c.InitialBalance, cur); err != nil {
				return err
			}
		}
		if c.OverdraftLimit != "" {
			if _, err := nonNegative("overdraft_limit", c.OverdraftLimit, cur); err != nil {
				return err
			}
		}
		return validateText("description", c.Description, MaxDescriptionLen, false)
	case CmdDeposit, CmdWithdraw:
		if err := ValidateAccountID("account_id", c.AccountID); err != nil {
			return err
		}
		if err := c.validateAmount(); err != nil {
			return err
		}
		if c.Currency != "" {
			if _, err := LookupCurrency(c.Currency); err != nil {
				return err
			}
		}
		return validateText("description", c.Description, MaxDescriptionLen, false)
	case CmdTransfer:
		if err := ValidateAccountID("from_account_id", c.FromAccountID); err != nil {
			return err
		}
		if err := ValidateAccountID("to_account_id", c.ToAccountID); err != nil {
			return err
		}
		if c.FromAccountID == c.ToAccountID {
			return FieldErrorf(KindRejected, CodeSameAccount, "to_account_id", "cannot transfer to the same account")
		}
		if err := c.validateAmount(); err != nil {
			return err
		}
		if c.Currency != "" {
			if _, err := LookupCurrency(c.Currency); err != nil {
				return err
			}
		}
		if err := c.validatePending(); err != nil {
			return err
		}
		return validateText("description", c.Description, MaxDescriptionLen, false)
	case CmdFreezeAccount, CmdUnfreezeAccount, CmdCloseAccount:
		return c.validateLifecycle()
	case CmdCaptureTransfer, CmdVoidTransfer, CmdExpireTransfers:
		return c.validatePending()
	case "":
		return FieldErrorf(KindMalformed, CodeMissingField, "type", "command type is required")
	default:
		return FieldErrorf(KindMalformed, CodeInvalidField, "type", "unknown command type %q", string(c.Type))
	}
}

// validateAmount checks that the amount is present and a positive decimal; its precision
// is checked against the account's currency by the state machine.
func (c Command) validateAmount() error {
	if c.Amount == "" {
		return FieldErrorf(KindMalformed, CodeMissingField, "amount", "amount is required")
	}
	d, err := ParseDecimal(string(c.Amount))
	if err != nil {
		return err
	}
	if decimalSign(d) <= 0 {
		return FieldErrorf(KindRejected, CodeInvalidAmount, "amount", "amount must be greater than zero")
	}
	return nil
}

// nonNegative converts d to minor units of cur and rejects negative values.
func nonNegative(field string, d Decimal, cur Currency) (int64, error) {
	v, err := d.MinorUnits(cur)
	if err != nil {
		if e, ok := err.(*Error); ok {
			e2 := *e
			e2.Field = field
			return 0, &e2
		}
		return 0, err
	}
	if v < 0 {
		return 0, FieldErrorf(KindRejected, CodeInvalidAmount, field, "%s must not be negative", field)
	}
	return v, nil
}

// positive converts d to minor units of cur and rejects zero and negative values.
func positive(field string, d Decimal, cur Currency) (int64, error) {
	v, err := nonNegative(field, d, cur)
	if err != nil {
		return 0, err
	}
	if v == 0 {
		return 0, FieldErrorf(KindRejected, CodeInvalidAmount, field, "%s must be greater than zero", field)
	}
	return v, nil
}

// decimalSign is -1, 0 or 1 for a decimal that ParseDecimal accepted.
func decimalSign(d Decimal) int {
	s := string(d)
	neg := strings.HasPrefix(s, "-")
	if strings.Trim(strings.TrimPrefix(s, "-"), "0.") == "" {
		return 0
	}
	if neg {
		return -1
	}
	return 1
}
