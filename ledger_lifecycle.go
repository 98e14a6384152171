package chronicle

import "fmt"

// Account lifecycle: freeze, unfreeze and close.
//
// A frozen account refuses every debit (withdrawals, the debit side of a transfer, and
// holds) with account_frozen and still accepts credits (deposits, incoming transfers):
// a freeze stops money leaving, as a bank's debit freeze or a garnishment does. A closed
// account refuses everything, credits included, with account_closed, and never changes
// again. Closing needs a zero balance (balance_not_zero).
//
// Each change is one event on the account's own stream (AccountFrozen, AccountUnfrozen,
// AccountClosed) carrying the reason, the currency and the unchanged balance as
// balance_after, and no amount: nothing is posted, so the sum per currency is untouched.

// MaxReasonLen bounds the reason of a lifecycle command, as MaxDescriptionLen bounds a
// description.
const MaxReasonLen = 500

// Lifecycle error codes that the shared foundation does not define.
const (
	// CodeAccountNotFrozen: unfreeze-account on an account that is not frozen.
	CodeAccountNotFrozen = "account_not_frozen"
)

// Statement line types of the lifecycle events: no money moves (amount 0, balance_after
// unchanged); the line's description is the event's reason.
const (
	LineFrozen   = "account_frozen"
	LineUnfrozen = "account_unfrozen"
	LineClosed   = "account_closed"
)

// IsLifecycleEvent reports whether eventType changes an account's status rather than its
// balance. Such events carry no amount.
func IsLifecycleEvent(eventType string) bool {
	switch eventType {
	case EventAccountFrozen, EventAccountUnfrozen, EventAccountClosed:
		return true
	}
	return false
}

// lifecycleStatus is the status an account has after a lifecycle event.
func lifecycleStatus(eventType string) AccountStatus {
	switch eventType {
	case EventAccountFrozen:
		return StatusFrozen
	case EventAccountClosed:
		return StatusClosed
	}
	return StatusActive
}

// lifecycleLine is the statement line type of a lifecycle event.
func lifecycleLine(eventType string) string {
	switch eventType {
	case EventAccountFrozen:
		return LineFrozen
	case EventAccountUnfrozen:
		return LineUnfrozen
	}
	return LineClosed
}

// validateLifecycle is Validate for the lifecycle commands. External accounts cannot be
// named at all ('@' is not an account id character), so they can be neither frozen nor
// closed: invalid_account_id, as for a deposit to one.
func (c Command) validateLifecycle() error {
	if err := ValidateAccountID("account_id", c.AccountID); err != nil {
		return err
	}
	return validateText("reason", c.Reason, MaxReasonLen, c.Type != CmdUnfreezeAccount)
}

// side says which way money would move through an account a command names.
type side int

const (
	credit side = iota
	debit
)

// usable checks a's status for a posting on the given side: a closed account takes
// nothing, a frozen one takes credits only.
func usable(a Account, field string, s side) error {
	switch a.Status {
	case StatusActive:
		return nil
	case StatusClosed:
		return FieldErrorf(KindRejected, CodeAccountClosed, field, "account %q is closed", a.ID)
	case StatusFrozen:
		if s == credit {
			return nil
		}
		return FieldErrorf(KindRejected, CodeAccountFrozen, field, "account %q is frozen: it accepts credits only", a.ID)
	}
	// A status this build does not know: refuse rather than guess.
	return FieldErrorf(KindRejected, CodeAccountClosed, field, "account %q has status %q", a.ID, a.Status)
}

// closable reports why a cannot be closed, or nil. It is the one place the close rule
// lives: pending transfers add "and nothing held" here.
func closable(a Account) error {
	if a.Balance != 0 {
		cur, _ := LookupCurrency(a.Currency)
		return FieldErrorf(KindRejected, CodeBalanceNotZero, "account_id", "account %q holds %s %s; only an account with a zero balance can be closed",
			a.ID, FormatMinor(a.Balance, cur), a.Currency)
	}
	if a.Held != 0 {
		// Money promised by an open hold still has to settle or be released first.
		cur, _ := LookupCurrency(a.Currency)
		return FieldErrorf(KindRejected, CodeBalanceNotZero, "account_id", "account %q has %s %s held by pending transfers; capture or void them before closing",
			a.ID, FormatMinor(a.Held, cur), a.Currency)
	}
	return nil
}

// lifecycle runs freeze-account, unfreeze-account and close-account.
func (tx *txn) lifecycle() error {
	c := tx.cmd
	// As a credit: a closed account refuses, a frozen one may still be unfrozen or closed.
	a, err := tx.existing("account_id", c.AccountID, credit)
	if err != nil {
		return err
	}
	var eventType string
	switch c.Type {
	case CmdFreezeAccount:
		if a.Status == StatusFrozen {
			return FieldErrorf(KindRejected, CodeAccountFrozen, "account_id", "account %q is already frozen", a.ID)
		}
		eventType = EventAccountFrozen
	case CmdUnfreezeAccount:
		if a.Status != StatusFrozen {
			return FieldErrorf(KindRejected, CodeAccountNotFrozen, "account_id", "account %q is not frozen", a.ID)
		}
		eventType = EventAccountUnfrozen
	case CmdCloseAccount:
		if err := closable(a); err != nil {
			return err
		}
		eventType = EventAccountClosed
	}
	a.Status = lifecycleStatus(eventType)
	a.LastUpdated = tx.t
	tx.emit(&a, eventType, EventData{AccountID: a.ID, Currency: a.Currency, Reason: c.Reason})
	tx.put(a)
	return nil
}

// replayLifecycle checks and applies a lifecycle event to a during a replay: the
// transition must be one the state machine allows.
func replayLifecycle(a *Account, e Event) error {
	switch {
	case a.Status == StatusClosed:
		return errorfPos(e, "%s on closed account %s", e.EventType, a.ID)
	case e.EventType == EventAccountFrozen && a.Status != StatusActive,
		e.EventType == EventAccountUnfrozen && a.Status != StatusFrozen:
		return errorfPos(e, "%s on %s account %s", e.EventType, a.Status, a.ID)
	case e.EventType == EventAccountClosed && (a.Balance != 0 || a.Held != 0):
		return errorfPos(e, "account %s closed with balance %d and %d held", a.ID, a.Balance, a.Held)
	case e.Data.Amount != 0:
		return errorfPos(e, "%s carries amount %d", e.EventType, e.Data.Amount)
	}
	a.Status = lifecycleStatus(e.EventType)
	return nil
}

// replayPosting checks that a posting event is one a's status allows: nothing on a
// closed account, no withdrawal from a frozen one.
func replayPosting(a Account, e Event) error {
	if a.Status == StatusClosed || a.Status == StatusFrozen && e.EventType == EventMoneyWithdrawn {
		return errorfPos(e, "%s on %s account %s", e.EventType, a.Status, a.ID)
	}
	return nil
}

func errorfPos(e Event, format string, args ...any) error {
	return fmt.Errorf("position %d: %s", e.Position, fmt.Sprintf(format, args...))
}
