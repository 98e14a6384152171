package chronicle

import (
	"slices"
	"strings"
	"time"
)

// Two-phase (pending) transfers. A transfer sent with Pending set does not post: it holds
// the amount on the debit account (Account.Held grows, Balance stays) until a capture
// posts all or part of it, a void releases it, or its deadline passes in commit time and
// it expires. PendingTransfer is the state record of one hold, kept by every store.

// TransferState is where a pending transfer is in its life.
type TransferState string

// Pending transfer states. Every state but TransferStatePending is final.
const (
	TransferStatePending  TransferState = "pending"
	TransferStateCaptured TransferState = "captured"
	TransferStateVoided   TransferState = "voided"
	TransferStateExpired  TransferState = "expired"
)

// Bounds of a hold's lifetime, in seconds of commit time.
const (
	DefaultHoldTimeoutSeconds = 86400
	MaxHoldTimeoutSeconds     = 30 * 86400
	// MaxExpirePerCommand bounds the holds one expire-transfers command finishes, so one
	// command's events stay bounded; the sweep proposes another while holds are due.
	MaxExpirePerCommand = 1000
)

// Error codes of two-phase transfers beyond the shared ones (errors.go).
const (
	// CodeNoTransferDue refuses an expire-transfers command when no hold is past its
	// deadline (the node proposes them; a client never sees this code).
	CodeNoTransferDue = "no_transfer_due"
)

// PendingTransfer is the record of one hold.
type PendingTransfer struct {
	ID            string        `json:"transfer_id"`
	FromAccountID string        `json:"from_account_id"`
	ToAccountID   string        `json:"to_account_id"`
	Currency      string        `json:"currency"`
	Amount        int64         `json:"amount"`
	CreatedAt     time.Time     `json:"created_at"`
	ExpiresAt     time.Time     `json:"expires_at"`
	State         TransferState `json:"state"`
	// CapturedAmount is what a capture posted (the rest was released).
	CapturedAmount int64 `json:"captured_amount,omitempty"`
	// FinishedAt is the commit time of the capture, void or expiry (zero while pending).
	FinishedAt time.Time `json:"finished_at"`
}

// Open reports whether the hold still reserves its amount.
func (p PendingTransfer) Open() bool { return p.State == TransferStatePending }

// HoldState is what the state machine reads about holds; part of State.
type HoldState interface {
	// PendingTransfer returns the record of a hold, open or finished.
	PendingTransfer(id string) (PendingTransfer, bool, error)
	// AccountHolds returns the open holds that debit accountID, in any order. The state
	// machine calls it only for an account whose Held is not zero.
	AccountHolds(accountID string) ([]PendingTransfer, error)
	// DueHolds returns up to limit open holds whose ExpiresAt is at or before t, ordered
	// by (ExpiresAt, ID).
	DueHolds(t time.Time, limit int) ([]PendingTransfer, error)
}

// HoldLess orders holds by deadline, then id: the order in which they expire.
func HoldLess(a, b PendingTransfer) bool {
	if !a.ExpiresAt.Equal(b.ExpiresAt) {
		return a.ExpiresAt.Before(b.ExpiresAt)
	}
	return a.ID < b.ID
}

// HoldCompare is HoldLess as a three-way comparison for slices.SortFunc.
func HoldCompare(a, b PendingTransfer) int {
	if c := a.ExpiresAt.Compare(b.ExpiresAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

const pendingTransferVersion = 1

// MarshalBinary encodes the record:
//
//	version u8 = 1 | transfer_id str | from_account_id str | to_account_id str |
//	currency str | amount i64 | created_at i64 | expires_at i64 | state str |
//	captured_amount i64 | finished_at i64
func (p PendingTransfer) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 128+len(p.FromAccountID)+len(p.ToAccountID))
	b = appendU8(b, pendingTransferVersion)
	b = appendStr(b, p.ID)
	b = appendStr(b, p.FromAccountID)
	b = appendStr(b, p.ToAccountID)
	b = appendStr(b, p.Currency)
	b = appendI64(b, p.Amount)
	b = appendTime(b, p.CreatedAt)
	b = appendTime(b, p.ExpiresAt)
	b = appendStr(b, string(p.State))
	b = appendI64(b, p.CapturedAmount)
	return appendTime(b, p.FinishedAt), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (p *PendingTransfer) UnmarshalBinary(data []byte) error {
	d := decoder{b: data, what: "pending transfer"}
	d.version(pendingTransferVersion)
	out := PendingTransfer{ID: d.str(), FromAccountID: d.str(), ToAccountID: d.str(), Currency: d.str(),
		Amount: d.i64(), CreatedAt: d.time(), ExpiresAt: d.time(), State: TransferState(d.str()),
		CapturedAmount: d.i64(), FinishedAt: d.time()}
	if err := d.done(); err != nil {
		return err
	}
	switch out.State {
	case TransferStatePending, TransferStateCaptured, TransferStateVoided, TransferStateExpired:
	default:
		return &decodeStateError{state: string(out.State)}
	}
	*p = out
	return nil
}

type decodeStateError struct{ state string }

func (e *decodeStateError) Error() string {
	return "decode pending transfer: unknown state " + e.state
}

// MemHolds is an in-memory HoldState: every hold by id. MemState and test stores use it.
type MemHolds map[string]PendingTransfer

// PendingTransfer implements HoldState.
func (h MemHolds) PendingTransfer(id string) (PendingTransfer, bool, error) {
	p, ok := h[id]
	return p, ok, nil
}

// AccountHolds implements HoldState.
func (h MemHolds) AccountHolds(accountID string) ([]PendingTransfer, error) {
	var out []PendingTransfer
	for _, p := range h {
		if p.Open() && p.FromAccountID == accountID {
			out = append(out, p)
		}
	}
	return out, nil
}

// DueHolds implements HoldState.
func (h MemHolds) DueHolds(t time.Time, limit int) ([]PendingTransfer, error) {
	var out []PendingTransfer
	for _, p := range h {
		if p.Open() && !p.ExpiresAt.After(t) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, HoldCompare)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// validatePending is Validate for the two-phase commands and a transfer's pending fields.
func (c Command) validatePending() error {
	switch c.Type {
	case CmdTransfer:
		if !c.Pending {
			if c.TimeoutSeconds != 0 {
				return FieldErrorf(KindMalformed, CodeInvalidField, "timeout_seconds", "timeout_seconds is only for a pending transfer")
			}
			return nil
		}
		if c.TimeoutSeconds < 0 || c.TimeoutSeconds > MaxHoldTimeoutSeconds {
			return FieldErrorf(KindMalformed, CodeInvalidField, "timeout_seconds", "timeout_seconds must be 1 to %d", MaxHoldTimeoutSeconds)
		}
		return nil
	case CmdCaptureTransfer, CmdVoidTransfer:
		if c.TransferID == "" {
			return FieldErrorf(KindMalformed, CodeMissingField, "transfer_id", "transfer_id is required")
		}
		if len(c.TransferID) > 64 {
			return FieldErrorf(KindMalformed, CodeInvalidField, "transfer_id", "transfer_id must be at most 64 characters")
		}
		if c.Type == CmdCaptureTransfer && c.Amount != "" {
			if err := c.validateAmount(); err != nil {
				return err
			}
		}
		if c.Type == CmdVoidTransfer {
			if err := validateText("reason", c.Reason, MaxDescriptionLen, false); err != nil {
				return err
			}
		}
		return validateText("description", c.Description, MaxDescriptionLen, false)
	case CmdExpireTransfers:
		return nil
	}
	return nil
}
