package chronicle

import (
	"fmt"
	"time"
)

// Head is the tail of the log: its last position, that event's hash, and the commit time
// of the last command, from which the next commit time is derived.
type Head struct {
	Position   uint64    `json:"position"`
	Hash       string    `json:"hash"`
	CommitTime time.Time `json:"commit_time"`
}

// GenesisHead is the head of an empty log.
func GenesisHead() Head { return Head{Hash: GenesisHash} }

// Result is the outcome of one command.
type Result struct {
	// Err is set when the command was refused; a refused command wrote nothing.
	Err *Error `json:"error,omitempty"`
	// Replayed is set when an idempotency key matched an earlier command whose result this is.
	Replayed bool `json:"replayed,omitempty"`
	// Position is the position of the command's last event.
	Position   uint64    `json:"position,omitempty"`
	CommitTime time.Time `json:"commit_time"`
	TransferID string    `json:"transfer_id,omitempty"`
	// Events are the command's events. The state machine leaves them out of a replayed
	// result (an idempotency record keeps positions, not events): the store reads them
	// back from its log, positions FirstPosition() to Position, and calls SetEvents.
	Events []Event `json:"events,omitempty"`
	// EventCount is the number of events the command appended.
	EventCount int `json:"-"`
}

// FirstPosition is the position of the command's first event (0 for a refusal).
func (r Result) FirstPosition() uint64 {
	if r.EventCount == 0 {
		return 0
	}
	return r.Position - uint64(r.EventCount) + 1
}

// SetEvents fills a replayed result with the events read back from the log.
func (r *Result) SetEvents(events []Event) {
	r.Events = events
	for _, e := range events {
		if e.Data.TransferID != "" {
			r.TransferID = e.Data.TransferID
			break
		}
	}
}

// IdempotencyRecord remembers a command sent with an idempotency key: what it asked for
// (Fingerprint) and where its result is in the log. The events themselves are read back
// from the log, so they are stored once.
type IdempotencyRecord struct {
	Key         string    `json:"key"`
	Fingerprint string    `json:"fingerprint"`
	CommitTime  time.Time `json:"commit_time"`
	// Position is the command's last event; Count is how many events it appended.
	Position uint64 `json:"position"`
	Count    uint32 `json:"count"`
}

// Result is the replayed result the record stands for, without its events.
func (r IdempotencyRecord) Result() Result {
	return Result{Replayed: true, Position: r.Position, CommitTime: r.CommitTime, EventCount: int(r.Count)}
}

// Expired reports whether r is past the window at commit time t. A window of zero or
// less keeps keys forever.
func (r IdempotencyRecord) Expired(t time.Time, window time.Duration) bool {
	return window > 0 && t.Sub(r.CommitTime) > window
}

// BalancePoint is one entry of an account's balance history.
type BalancePoint struct {
	AccountID string    `json:"account_id"`
	Time      time.Time `json:"timestamp"`
	Balance   int64     `json:"balance"`
	Position  uint64    `json:"position"`
}

// State is what the state machine reads: the current accounts and idempotency records.
type State interface {
	Account(id string) (Account, bool, error)
	Idempotency(key string) (IdempotencyRecord, bool, error)
	HoldState
}

// Batch is the unit of replication: commands and the leader's clock reading. The
// idempotency window travels with it so that every replica expires keys alike.
type Batch struct {
	Time              time.Time     `json:"time"`
	IdempotencyWindow time.Duration `json:"idempotency_window"`
	Commands          []Command     `json:"commands"`
}

// Outcome is everything a batch changes, for a store to write atomically.
type Outcome struct {
	Results []Result
	Events  []Event
	// Accounts holds the final state of every account the batch changed, in the order
	// first changed, so that writing them is deterministic.
	Accounts    []Account
	Idempotency []IdempotencyRecord
	History     []BalancePoint
	Head        Head
	// Holds holds the final state of every pending transfer the batch created or
	// finished, in the order first changed.
	Holds []PendingTransfer
}

// InvariantError reports a broken ledger invariant. A store that gets one must stop
// rather than write: it means a bug, and going on would diverge quietly.
type InvariantError struct{ Msg string }

func (e *InvariantError) Error() string { return "ledger invariant violated: " + e.Msg }

// Apply runs batch b against st, whose log ends at head. It is deterministic: the same
// state, head and batch give the same outcome on every replica and on every replay. The
// error is only for a failure to read st or a broken invariant; a refused command is a
// Result with Err set.
func Apply(st State, head Head, b Batch) (Outcome, error) {
	if len(b.Commands) > MaxBatchCommands {
		return Outcome{}, fmt.Errorf("batch of %d commands exceeds %d", len(b.Commands), MaxBatchCommands)
	}
	m := machine{st: st, head: head, base: b.Time.UTC().Round(0), window: b.IdempotencyWindow,
		accounts: map[string]Account{}, keys: map[string]IdempotencyRecord{}}
	out := Outcome{Results: make([]Result, len(b.Commands))}
	// Most commands write one or two events: size for two, so the common batch grows
	// neither slice.
	out.Events = make([]Event, 0, 2*len(b.Commands))
	out.History = make([]BalancePoint, 0, 2*len(b.Commands))
	for i, c := range b.Commands {
		r, err := m.command(c, &out)
		if err != nil {
			return Outcome{}, err
		}
		out.Results[i] = r
	}
	for _, id := range m.order {
		out.Accounts = append(out.Accounts, m.accounts[id])
	}
	out.Holds = m.holds.final()
	out.Head = m.head
	return out, nil
}

// machine holds the state of one Apply: an overlay of the accounts and keys changed so far.
type machine struct {
	st       State
	head     Head
	base     time.Time
	window   time.Duration
	accounts map[string]Account
	order    []string
	keys     map[string]IdempotencyRecord
	holds    holdOverlay
}

func (m *machine) account(id string) (Account, bool, error) {
	if a, ok := m.accounts[id]; ok {
		return a, true, nil
	}
	a, ok, err := m.st.Account(id)
	if err != nil {
		return Account{}, false, fmt.Errorf("read account %s: %w", id, err)
	}
	return a, ok, nil
}

func (m *machine) idempotency(key string) (IdempotencyRecord, bool, error) {
	if r, ok := m.keys[key]; ok {
		return r, true, nil
	}
	r, ok, err := m.st.Idempotency(key)
	if err != nil {
		return r, false, fmt.Errorf("read idempotency key: %w", err)
	}
	return r, ok, nil
}

// nextTime is the commit time of the next command: the leader's clock, but strictly after
// the previous command even if clocks went backwards (a new leader, a clock step).
func (m *machine) nextTime() time.Time {
	t := m.base
	if !t.After(m.head.CommitTime) {
		t = m.head.CommitTime.Add(time.Nanosecond)
	}
	return t
}

// command applies one command. Refusals come back as a Result; the error is fatal.
func (m *machine) command(c Command, out *Outcome) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{Err: AsError(err)}, nil
	}
	if c.IdempotencyKey != "" {
		rec, ok, err := m.idempotency(c.IdempotencyKey)
		if err != nil {
			return Result{}, err
		}
		if ok && !rec.Expired(m.nextTime(), m.window) {
			if rec.Fingerprint != c.Fingerprint() {
				return Result{Err: FieldErrorf(KindRejected, CodeIdempotencyMismatch, "Idempotency-Key",
					"idempotency key was already used for a different request")}, nil
			}
			return rec.Result(), nil
		}
	}
	// Holds past their deadline that the command touches expire first, as a step of
	// their own committed even if the command is then refused (ledger_pending.go).
	t, err := m.expireTouched(c, m.nextTime(), out)
	if err != nil {
		return Result{}, err
	}
	tx := &txn{m: m, t: t, cmd: c}
	if err := tx.run(); err != nil {
		if e, ok := err.(*Error); ok {
			return Result{Err: e}, nil
		}
		return Result{}, err
	}
	if err := m.commit(tx, out); err != nil {
		return Result{}, err
	}
	r := Result{Position: m.head.Position, CommitTime: t, TransferID: tx.transferID, Events: tx.events, EventCount: len(tx.events)}
	if c.IdempotencyKey != "" {
		rec := IdempotencyRecord{Key: c.IdempotencyKey, Fingerprint: c.Fingerprint(), CommitTime: t,
			Position: r.Position, Count: uint32(len(tx.events))}
		m.keys[c.IdempotencyKey] = rec
		out.Idempotency = append(out.Idempotency, rec)
	}
	return r, nil
}

// commit checks a successful txn, seals its events into the chain and publishes its changes.
func (m *machine) commit(tx *txn, out *Outcome) error {
	if err := tx.checkBalanced(); err != nil {
		return err
	}
	t := tx.t
	for i := range tx.events {
		e := &tx.events[i]
		e.Position = m.head.Position + 1
		e.PrevHash = m.head.Hash
		e.Hash = e.ComputeHash()
		m.head.Position, m.head.Hash = e.Position, e.Hash
	}
	m.head.CommitTime = t
	for _, a := range tx.changed {
		if _, seen := m.accounts[a.ID]; !seen {
			m.order = append(m.order, a.ID)
		}
		m.accounts[a.ID] = a
	}
	for _, e := range tx.events {
		out.History = append(out.History, BalancePoint{AccountID: e.AggregateID, Time: t, Balance: e.Data.BalanceAfter, Position: e.Position})
	}
	out.Events = append(out.Events, tx.events...)
	m.holds.commit(tx.holds)
	return nil
}

// txn is one command's work, kept apart until the command is known to succeed.
type txn struct {
	m   *machine
	t   time.Time
	cmd Command
	// changed is the accounts the txn changed, in the order first changed: a command
	// touches at most three, so a slice searched in order beats a map.
	changed    []Account
	events     []Event
	transferID string
	holds      txnHolds
	// md is the metadata every event of the txn carries, built once and shared (nothing
	// writes to an event's metadata after it is made).
	md map[string]string
}

func (tx *txn) get(id string) (Account, bool, error) {
	for _, a := range tx.changed {
		if a.ID == id {
			return a, true, nil
		}
	}
	return tx.m.account(id)
}

func (tx *txn) put(a Account) {
	for i := range tx.changed {
		if tx.changed[i].ID == a.ID {
			tx.changed[i] = a
			return
		}
	}
	tx.changed = append(tx.changed, a)
}

// existing returns a customer account whose status allows a posting on side s, or the
// error a client should see.
func (tx *txn) existing(field, id string, s side) (Account, error) {
	a, ok, err := tx.get(id)
	if err != nil {
		return Account{}, err
	}
	if !ok || a.External() {
		return Account{}, FieldErrorf(KindNotFound, CodeAccountNotFound, field, "account %q not found", id)
	}
	if err := usable(a, field, s); err != nil {
		return Account{}, err
	}
	return a, nil
}

func (tx *txn) external(cur string) (Account, error) {
	id := ExternalAccountID(cur)
	a, ok, err := tx.get(id)
	if err != nil {
		return Account{}, err
	}
	if !ok {
		a = Account{ID: id, Currency: cur, Status: StatusActive, CreatedAt: tx.t}
	}
	return a, nil
}

// spendable refuses a debit that would leave a with balance less held below its overdraft
// limit: open holds reserve part of the balance, so a debit may spend only what is
// available. The message names what a has available before the debit.
func spendable(a *Account, balance, held int64, field string) error {
	if avail, ok := subInt64(balance, held); !ok || avail < -a.OverdraftLimit {
		cur, _ := LookupCurrency(a.Currency)
		return FieldErrorf(KindRejected, CodeInsufficientFunds, field, "account %q has %s %s available", a.ID, FormatMinor(a.Available()+a.OverdraftLimit, cur), a.Currency)
	}
	return nil
}

// post moves amount (minor units, > 0) from debit to credit, checking the debit side's limit.
func (tx *txn) post(debit, credit *Account, amount int64, field string) error {
	if debit.Currency != credit.Currency {
		return FieldErrorf(KindRejected, CodeCurrencyMismatch, field, "account %q holds %s, account %q holds %s", debit.ID, debit.Currency, credit.ID, credit.Currency)
	}
	nd, ok1 := subInt64(debit.Balance, amount)
	nc, ok2 := addInt64(credit.Balance, amount)
	if !ok1 || !ok2 {
		return FieldErrorf(KindRejected, CodeInvalidAmount, "amount", "amount would overflow a balance")
	}
	if !debit.External() {
		if err := spendable(debit, nd, debit.Held, field); err != nil {
			return err
		}
	}
	debit.Balance, credit.Balance = nd, nc
	debit.LastUpdated, credit.LastUpdated = tx.t, tx.t
	return nil
}

// emit appends an event of a's stream; data.BalanceAfter is a's balance after it.
func (tx *txn) emit(a *Account, eventType string, data EventData) {
	a.Version++
	data.BalanceAfter = a.Balance
	tx.events = append(tx.events, Event{
		EventID: derivedID(tx.cmd.ID, len(tx.events)), AggregateID: a.ID, AggregateType: AggregateAccount,
		EventType: eventType, EventVersion: a.Version, Data: data, CreatedAt: tx.t,
		CreatedBy: tx.cmd.CreatedBy, Metadata: tx.metadata(),
	})
}

func (tx *txn) metadata() map[string]string {
	if tx.md != nil {
		return tx.md
	}
	md := make(map[string]string, 3)
	if tx.cmd.ID != "" {
		md["command_id"] = tx.cmd.ID
	}
	if tx.cmd.IdempotencyKey != "" {
		md["idempotency_key"] = tx.cmd.IdempotencyKey
	}
	if tx.cmd.RequestID != "" {
		md["request_id"] = tx.cmd.RequestID
	}
	if len(md) == 0 {
		return nil
	}
	tx.md = md
	return md
}

func (tx *txn) run() error {
	c := tx.cmd
	switch c.Type {
	case CmdCreateAccount:
		return tx.createAccount()
	case CmdDeposit, CmdWithdraw:
		return tx.depositWithdraw()
	case CmdTransfer:
		if c.Pending {
			return tx.hold()
		}
		return tx.transfer()
	case CmdFreezeAccount, CmdUnfreezeAccount, CmdCloseAccount:
		return tx.lifecycle()
	case CmdCaptureTransfer:
		return tx.capture()
	case CmdVoidTransfer:
		return tx.void()
	case CmdExpireTransfers:
		return tx.expireDue()
	default:
		return FieldErrorf(KindMalformed, CodeInvalidField, "type", "unknown command type %q", string(c.Type))
	}
}

func (tx *txn) createAccount() error {
	c := tx.cmd
	if _, ok, err := tx.get(c.AccountID); err != nil {
		return err
	} else if ok {
		return FieldErrorf(KindConflict, CodeAccountExists, "account_id", "account %q already exists", c.AccountID)
	}
	cur, err := LookupCurrency(c.Currency)
	if err != nil {
		return err
	}
	var initial, limit int64
	if c.InitialBalance != "" {
		if initial, err = nonNegative("initial_balance", c.InitialBalance, cur); err != nil {
			return err
		}
	}
	if c.OverdraftLimit != "" {
		if limit, err = nonNegative("overdraft_limit", c.OverdraftLimit, cur); err != nil {
			return err
		}
	}
	a := Account{ID: c.AccountID, OwnerName: c.OwnerName, Currency: cur.Code, OverdraftLimit: limit,
		Status: StatusActive, CreatedAt: tx.t, LastUpdated: tx.t}
	counterparty := ""
	if initial > 0 {
		ext, err := tx.external(cur.Code)
		if err != nil {
			return err
		}
		if err := tx.post(&ext, &a, initial, "initial_balance"); err != nil {
			return err
		}
		tx.put(ext)
		counterparty = ext.ID
	}
	tx.emit(&a, EventAccountCreated, EventData{AccountID: a.ID, OwnerName: a.OwnerName, Currency: cur.Code,
		InitialBalance: initial, OverdraftLimit: limit, Description: c.Description, Counterparty: counterparty})
	tx.put(a)
	return nil
}

func (tx *txn) depositWithdraw() error {
	c := tx.cmd
	s := credit
	if c.Type == CmdWithdraw {
		s = debit
	}
	a, err := tx.existing("account_id", c.AccountID, s)
	if err != nil {
		return err
	}
	cur, err := LookupCurrency(a.Currency)
	if err != nil {
		return err
	}
	if err := requireCurrency(c.Currency, a.Currency); err != nil {
		return err
	}
	amount, err := positive("amount", c.Amount, cur)
	if err != nil {
		return err
	}
	ext, err := tx.external(cur.Code)
	if err != nil {
		return err
	}
	eventType := EventMoneyDeposited
	if c.Type == CmdDeposit {
		err = tx.post(&ext, &a, amount, "amount")
	} else {
		eventType = EventMoneyWithdrawn
		err = tx.post(&a, &ext, amount, "amount")
	}
	if err != nil {
		return err
	}
	tx.emit(&a, eventType, EventData{AccountID: a.ID, Currency: cur.Code, Amount: amount,
		Description: c.Description, Counterparty: ext.ID})
	tx.put(a)
	tx.put(ext)
	return nil
}

// transferParties reads what a transfer and a hold both start from: the debit and credit
// accounts (their status rules applied), one currency, and a positive amount in it.
func (tx *txn) transferParties() (from, to Account, cur Currency, amount int64, err error) {
	c := tx.cmd
	if from, err = tx.existing("from_account_id", c.FromAccountID, debit); err != nil {
		return
	}
	if to, err = tx.existing("to_account_id", c.ToAccountID, credit); err != nil {
		return
	}
	if from.Currency != to.Currency {
		err = FieldErrorf(KindRejected, CodeCurrencyMismatch, "to_account_id", "account %q holds %s, account %q holds %s", from.ID, from.Currency, to.ID, to.Currency)
		return
	}
	if err = requireCurrency(c.Currency, from.Currency); err != nil {
		return
	}
	if cur, err = LookupCurrency(from.Currency); err != nil {
		return
	}
	amount, err = positive("amount", c.Amount, cur)
	return
}

func (tx *txn) transfer() error {
	c := tx.cmd
	from, to, cur, amount, err := tx.transferParties()
	if err != nil {
		return err
	}
	if err := tx.post(&from, &to, amount, "from_account_id"); err != nil {
		return err
	}
	tx.transferID = derivedID(c.ID, -1)
	base := EventData{Currency: cur.Code, Amount: amount, Description: c.Description,
		TransferID: tx.transferID, FromAccountID: from.ID, ToAccountID: to.ID}
	w := base
	w.AccountID, w.Counterparty = from.ID, to.ID
	tx.emit(&from, EventMoneyWithdrawn, w)
	d := base
	d.AccountID, d.Counterparty = to.ID, from.ID
	tx.emit(&to, EventMoneyDeposited, d)
	tx.put(from)
	tx.put(to)
	return nil
}

// checkBalanced asserts double entry: the command's changes sum to zero per currency.
func (tx *txn) checkBalanced() error {
	sums := map[string]int64{}
	for _, after := range tx.changed {
		before, _, err := tx.m.account(after.ID)
		if err != nil {
			return err
		}
		sums[after.Currency] += after.Balance - before.Balance
	}
	for cur, s := range sums {
		if s != 0 {
			return &InvariantError{Msg: fmt.Sprintf("command %s changes %s balances by %d", tx.cmd.ID, cur, s)}
		}
	}
	return nil
}

func addInt64(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

func subInt64(a, b int64) (int64, bool) {
	s := a - b
	if (b > 0 && s > a) || (b < 0 && s < a) {
		return 0, false
	}
	return s, true
}

// requireCurrency checks the currency a client optionally names against the account's.
func requireCurrency(asked, held string) error {
	if asked == "" {
		return nil
	}
	cur, err := LookupCurrency(asked)
	if err != nil {
		return err
	}
	if cur.Code != held {
		return FieldErrorf(KindRejected, CodeCurrencyMismatch, "currency", "the account holds %s, not %s", held, cur.Code)
	}
	return nil
}
