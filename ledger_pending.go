package chronicle

import (
	"fmt"
	"slices"
	"time"
)

// The state machine's two-phase transfers (see pending.go for the record and the rules).
//
// Events, all on account streams and all statement lines with balance_after:
//   - TransferPending on the debit account: amount held, balance_after unchanged,
//     held_after, expires_at.
//   - TransferCaptured as the two legs of a transfer: on the debit account (amount
//     captured, balance_after, held_after with the whole hold released) and on the
//     credit account (amount, balance_after). The legs are told apart as the posted
//     transfer's are: the debit leg's aggregate is from_account_id.
//   - TransferVoided (with the reason, if given) and TransferExpired on the debit
//     account: amount released, balance_after unchanged, held_after.
//
// Expiry is in commit time and deterministic: a command that touches a hold past its
// deadline (a capture or void of it, or a withdrawal, transfer or hold debiting its
// account) first expires it, committed even when the command itself is then refused; and
// the node proposes expire-transfers commands (the Raft leader, or the SQL
// publisher-lease holder) that expire every hold due by their commit time.

// holdOverlay is the machine's view of the holds a batch changed so far.
type holdOverlay struct {
	m     map[string]PendingTransfer
	order []string
}

func (h *holdOverlay) put(p PendingTransfer) {
	if h.m == nil {
		h.m = map[string]PendingTransfer{}
	}
	if _, ok := h.m[p.ID]; !ok {
		h.order = append(h.order, p.ID)
	}
	h.m[p.ID] = p
}

func (h *holdOverlay) commit(t txnHolds) {
	for _, id := range t.order {
		h.put(t.m[id])
	}
}

func (h *holdOverlay) final() []PendingTransfer {
	if len(h.order) == 0 {
		return nil
	}
	out := make([]PendingTransfer, len(h.order))
	for i, id := range h.order {
		out[i] = h.m[id]
	}
	return out
}

// txnHolds are one command's hold changes, kept apart until it succeeds.
type txnHolds = holdOverlay

func (m *machine) hold(id string) (PendingTransfer, bool, error) {
	if p, ok := m.holds.m[id]; ok {
		return p, true, nil
	}
	p, ok, err := m.st.PendingTransfer(id)
	if err != nil {
		return p, false, fmt.Errorf("read pending transfer %s: %w", id, err)
	}
	return p, ok, nil
}

// accountHolds is the open holds debiting id, in expiry order.
func (m *machine) accountHolds(id string) ([]PendingTransfer, error) {
	base, err := m.st.AccountHolds(id)
	if err != nil {
		return nil, fmt.Errorf("read holds of %s: %w", id, err)
	}
	var out []PendingTransfer
	for _, p := range base {
		if _, changed := m.holds.m[p.ID]; !changed {
			out = append(out, p)
		}
	}
	for _, hid := range m.holds.order {
		if p := m.holds.m[hid]; p.Open() && p.FromAccountID == id {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, HoldCompare)
	return out, nil
}

// dueHolds is up to limit open holds due at t, in expiry order.
func (m *machine) dueHolds(t time.Time, limit int) ([]PendingTransfer, error) {
	// The overlay can hide at most len(m.holds.m) of the store's answer.
	base, err := m.st.DueHolds(t, limit+len(m.holds.m))
	if err != nil {
		return nil, fmt.Errorf("read due holds: %w", err)
	}
	var out []PendingTransfer
	for _, p := range base {
		if _, changed := m.holds.m[p.ID]; !changed {
			out = append(out, p)
		}
	}
	for _, hid := range m.holds.order {
		if p := m.holds.m[hid]; p.Open() && !p.ExpiresAt.After(t) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, HoldCompare)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// expireTouched expires the holds past their deadline at t that command c touches, as a
// step of its own committed before c runs: a late capture then finds the hold expired
// (transfer_expired) and the release is written even though the capture is refused. The
// step has its own commit time, so c commits a nanosecond later; holds due exactly then
// expire in a further step. It returns c's commit time.
func (m *machine) expireTouched(c Command, t time.Time, out *Outcome) (time.Time, error) {
	for step := 0; ; step++ {
		due, err := m.touchedDue(c, t)
		if err != nil || len(due) == 0 {
			return t, err
		}
		tx := &txn{m: m, t: t, cmd: c}
		for _, p := range due {
			if err := tx.expire(p); err != nil {
				return t, err
			}
		}
		// The expiry is the ledger's own doing, not c's: its events carry a command id of
		// their own, derived from c's (a store that finds a command's result by its id
		// must not mistake them for c's, and each step is a command of its own in time).
		md := map[string]string{"command_id": derivedID(c.ID, -2-step)}
		for i := range tx.events {
			tx.events[i].Metadata, tx.events[i].CreatedBy = md, ""
		}
		if err := m.commit(tx, out); err != nil {
			return t, err
		}
		t = m.nextTime()
	}
}

// touchedDue lists the open holds due at t that command c touches, in expiry order.
func (m *machine) touchedDue(c Command, t time.Time) ([]PendingTransfer, error) {
	var due []PendingTransfer
	debit := ""
	switch c.Type {
	case CmdCaptureTransfer, CmdVoidTransfer:
		p, ok, err := m.hold(c.TransferID)
		if err != nil {
			return nil, err
		}
		if ok && p.Open() && !p.ExpiresAt.After(t) {
			due = append(due, p)
		}
	case CmdWithdraw, CmdCloseAccount:
		// Closing needs nothing held: a due hold on the account is released first.
		debit = c.AccountID
	case CmdTransfer:
		debit = c.FromAccountID
	}
	if debit != "" {
		a, ok, err := m.account(debit)
		if err != nil {
			return nil, err
		}
		if ok && a.Held != 0 {
			holds, err := m.accountHolds(debit)
			if err != nil {
				return nil, err
			}
			for _, p := range holds {
				if !p.ExpiresAt.After(t) {
					due = append(due, p)
				}
			}
		}
	}
	return due, nil
}

func (tx *txn) getHold(id string) (PendingTransfer, bool, error) {
	if p, ok := tx.holds.m[id]; ok {
		return p, true, nil
	}
	return tx.m.hold(id)
}

// openHold returns the open hold a capture or void names, or the error a client sees.
func (tx *txn) openHold(id string) (PendingTransfer, error) {
	p, ok, err := tx.getHold(id)
	if err != nil {
		return p, err
	}
	switch {
	case !ok:
		return p, FieldErrorf(KindNotFound, CodeTransferNotFound, "transfer_id", "no pending transfer %q", id)
	case p.State == TransferStateExpired:
		return p, FieldErrorf(KindRejected, CodeTransferExpired, "transfer_id", "pending transfer %q expired at %s", id, p.ExpiresAt.Format(time.RFC3339Nano))
	case !p.Open():
		return p, FieldErrorf(KindRejected, CodeTransferNotPending, "transfer_id", "transfer %q is already %s", id, p.State)
	case !p.ExpiresAt.After(tx.t):
		// expireTouched finished it before this command ran; this is a second guard.
		return p, FieldErrorf(KindRejected, CodeTransferExpired, "transfer_id", "pending transfer %q expired at %s", id, p.ExpiresAt.Format(time.RFC3339Nano))
	}
	return p, nil
}

// holdAccount is the debit account of an open hold: it must exist, whatever its status
// (releasing a reservation is always allowed).
func (tx *txn) holdAccount(p PendingTransfer) (Account, error) {
	a, ok, err := tx.get(p.FromAccountID)
	if err != nil {
		return a, err
	}
	if !ok {
		return a, &InvariantError{Msg: fmt.Sprintf("pending transfer %s debits unknown account %s", p.ID, p.FromAccountID)}
	}
	return a, nil
}

// release takes p's amount off a's held total.
func release(a *Account, p PendingTransfer) error {
	if a.Held < p.Amount {
		return &InvariantError{Msg: fmt.Sprintf("account %s holds %d, less than its pending transfer %s of %d", a.ID, a.Held, p.ID, p.Amount)}
	}
	a.Held -= p.Amount
	return nil
}

func (tx *txn) putHold(p PendingTransfer) {
	tx.holds.put(p)
}

// hold is a transfer with Pending set: it reserves the amount on the debit account.
func (tx *txn) hold() error {
	c := tx.cmd
	// The credit account must accept the transfer now, as it must again at capture.
	from, to, cur, amount, err := tx.transferParties()
	if err != nil {
		return err
	}
	held, ok := addInt64(from.Held, amount)
	if !ok {
		return FieldErrorf(KindRejected, CodeInvalidAmount, "amount", "amount would overflow the held total")
	}
	if err := spendable(&from, from.Balance, held, "from_account_id"); err != nil {
		return err
	}
	timeout := c.TimeoutSeconds
	if timeout == 0 {
		timeout = DefaultHoldTimeoutSeconds
	}
	expires := tx.t.Add(time.Duration(timeout) * time.Second)
	from.Held, from.LastUpdated = held, tx.t
	tx.transferID = derivedID(c.ID, -1)
	tx.emit(&from, EventTransferPending, EventData{AccountID: from.ID, Currency: cur.Code, Amount: amount,
		Description: c.Description, TransferID: tx.transferID, FromAccountID: from.ID, ToAccountID: to.ID,
		Counterparty: to.ID, ExpiresAt: expires, HeldAfter: from.Held})
	tx.put(from)
	tx.putHold(PendingTransfer{ID: tx.transferID, FromAccountID: from.ID, ToAccountID: to.ID, Currency: cur.Code,
		Amount: amount, CreatedAt: tx.t, ExpiresAt: expires, State: TransferStatePending})
	return nil
}

// capture posts all or part of an open hold and releases the rest.
func (tx *txn) capture() error {
	c := tx.cmd
	p, err := tx.openHold(c.TransferID)
	if err != nil {
		return err
	}
	cur, err := LookupCurrency(p.Currency)
	if err != nil {
		return err
	}
	amount := p.Amount
	if c.Amount != "" {
		if amount, err = positive("amount", c.Amount, cur); err != nil {
			return err
		}
		if amount > p.Amount {
			return FieldErrorf(KindRejected, CodeInvalidAmount, "amount", "amount %s exceeds the %s %s held",
				FormatMinor(amount, cur), FormatMinor(p.Amount, cur), cur.Code)
		}
	}
	from, err := tx.holdAccount(p)
	if err != nil {
		return err
	}
	// The credit account's status rules apply at capture as at any credit. The debit
	// account's do not: its money was reserved when the hold was made, so a capture from
	// an account frozen since then still settles (a freeze stops new debits, not ones
	// already promised).
	to, err := tx.existing("to_account_id", p.ToAccountID, credit)
	if err != nil {
		return err
	}
	if err := release(&from, p); err != nil {
		return err
	}
	if err := tx.post(&from, &to, amount, "amount"); err != nil {
		return err
	}
	base := EventData{Currency: cur.Code, Amount: amount, Description: c.Description, TransferID: p.ID,
		FromAccountID: from.ID, ToAccountID: to.ID}
	w := base
	w.AccountID, w.Counterparty, w.HeldAfter = from.ID, to.ID, from.Held
	tx.emit(&from, EventTransferCaptured, w)
	d := base
	d.AccountID, d.Counterparty, d.HeldAfter = to.ID, from.ID, to.Held
	tx.emit(&to, EventTransferCaptured, d)
	tx.put(from)
	tx.put(to)
	tx.transferID = p.ID
	p.State, p.CapturedAmount, p.FinishedAt = TransferStateCaptured, amount, tx.t
	tx.putHold(p)
	return nil
}

// void releases an open hold.
func (tx *txn) void() error {
	c := tx.cmd
	p, err := tx.openHold(c.TransferID)
	if err != nil {
		return err
	}
	if err := tx.unhold(p, EventTransferVoided, TransferStateVoided, EventData{Description: c.Description, Reason: c.Reason}); err != nil {
		return err
	}
	tx.transferID = p.ID
	return nil
}

// expire releases an open hold whose deadline has passed. Its event id derives from the
// transfer id, so it is the same whichever command expires the hold.
func (tx *txn) expire(p PendingTransfer) error {
	if err := tx.unhold(p, EventTransferExpired, TransferStateExpired, EventData{ExpiresAt: p.ExpiresAt}); err != nil {
		return err
	}
	tx.events[len(tx.events)-1].EventID = derivedID(p.ID, 1)
	return nil
}

// unhold finishes p without posting it (a void or an expiry): the debit account's held
// total drops by p's amount, one event of type eventType records it (d brings the fields
// that differ between the two), and p's record moves to state.
func (tx *txn) unhold(p PendingTransfer, eventType string, state TransferState, d EventData) error {
	from, err := tx.holdAccount(p)
	if err != nil {
		return err
	}
	if err := release(&from, p); err != nil {
		return err
	}
	from.LastUpdated = tx.t
	d.AccountID, d.Currency, d.Amount, d.TransferID = from.ID, p.Currency, p.Amount, p.ID
	d.FromAccountID, d.ToAccountID, d.Counterparty, d.HeldAfter = p.FromAccountID, p.ToAccountID, p.ToAccountID, from.Held
	tx.emit(&from, eventType, d)
	tx.put(from)
	p.State, p.FinishedAt = state, tx.t
	tx.putHold(p)
	return nil
}

// expireDue is the node's expire-transfers command: it expires every hold due at its
// commit time (up to MaxExpirePerCommand), and is refused when none is.
func (tx *txn) expireDue() error {
	due, err := tx.m.dueHolds(tx.t, MaxExpirePerCommand)
	if err != nil {
		return err
	}
	if len(due) == 0 {
		return Errorf(KindRejected, CodeNoTransferDue, "no pending transfer is past its deadline")
	}
	for _, p := range due {
		if err := tx.expire(p); err != nil {
			return err
		}
	}
	return nil
}

// holdLineType is the statement line type of a two-phase transfer's event.
func holdLineType(e Event) string {
	switch e.EventType {
	case EventTransferPending:
		return LineHold
	case EventTransferVoided:
		return LineHoldVoided
	case EventTransferExpired:
		return LineHoldExpired
	}
	if e.AggregateID == e.Data.FromAccountID {
		return LineTransferOut
	}
	return LineTransferIn
}

// replayHold checks a two-phase transfer's event against the holds replayed so far and
// returns the change it makes to the posted balance.
func (r *Replayer) replayHold(a *Account, e Event) (int64, error) {
	d := e.Data
	holds := r.State.Holds
	p, found := holds[d.TransferID]
	debitLeg := e.AggregateID == d.FromAccountID
	// The lifecycle rules: nothing lands on a closed account, and only an active one makes
	// a hold (a frozen one still sees its earlier holds captured, voided or expired).
	if a.Status == StatusClosed || e.EventType == EventTransferPending && a.Status != StatusActive {
		return 0, fmt.Errorf("position %d: %s on %s account %s", e.Position, e.EventType, a.Status, a.ID)
	}
	var delta int64
	switch e.EventType {
	case EventTransferPending:
		if found {
			return 0, fmt.Errorf("position %d: pending transfer %s held twice", e.Position, d.TransferID)
		}
		if d.Amount <= 0 || !debitLeg {
			return 0, fmt.Errorf("position %d: bad TransferPending", e.Position)
		}
		p = PendingTransfer{ID: d.TransferID, FromAccountID: d.FromAccountID, ToAccountID: d.ToAccountID,
			Currency: d.Currency, Amount: d.Amount, CreatedAt: e.CreatedAt, ExpiresAt: d.ExpiresAt, State: TransferStatePending}
		held, ok := addInt64(a.Held, d.Amount)
		if !ok {
			return 0, fmt.Errorf("position %d: held total of %s overflows", e.Position, a.ID)
		}
		a.Held = held
	default:
		if !found {
			return 0, fmt.Errorf("position %d: %s of unknown pending transfer %s", e.Position, e.EventType, d.TransferID)
		}
		if e.EventType == EventTransferCaptured && !debitLeg {
			// The credit leg follows its debit leg, which finished the hold.
			if p.State != TransferStateCaptured || !p.FinishedAt.Equal(e.CreatedAt) || p.CapturedAmount != d.Amount {
				return 0, fmt.Errorf("position %d: credit leg of %s without its debit leg", e.Position, d.TransferID)
			}
			delta = d.Amount
			break
		}
		if !p.Open() {
			return 0, fmt.Errorf("position %d: pending transfer %s finished twice (%s)", e.Position, d.TransferID, p.State)
		}
		a.Held -= p.Amount
		p.FinishedAt = e.CreatedAt
		switch e.EventType {
		case EventTransferCaptured:
			if d.Amount <= 0 || d.Amount > p.Amount {
				return 0, fmt.Errorf("position %d: capture of %d from a hold of %d", e.Position, d.Amount, p.Amount)
			}
			p.State, p.CapturedAmount = TransferStateCaptured, d.Amount
			delta = -d.Amount
		case EventTransferVoided:
			p.State = TransferStateVoided
		case EventTransferExpired:
			if e.CreatedAt.Before(p.ExpiresAt) {
				return 0, fmt.Errorf("position %d: %s expired before its deadline", e.Position, d.TransferID)
			}
			p.State = TransferStateExpired
		}
	}
	if a.Held != d.HeldAfter {
		return 0, fmt.Errorf("position %d: held_after %d, holds give %d", e.Position, d.HeldAfter, a.Held)
	}
	holds[p.ID] = p
	return delta, nil
}
