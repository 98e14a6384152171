package chronicle

import (
	"fmt"
	"sort"
	"time"
)

// MemState is an in-memory ledger: the reference the stores are tested against, and the
// result of replaying a log from its events.
type MemState struct {
	Accounts map[string]Account
	Keys     map[string]IdempotencyRecord
	Head     Head
	Log      []Event
	// Holds is every pending transfer, open or finished, by transfer id.
	Holds MemHolds
}

// NewMemState returns an empty ledger.
func NewMemState() *MemState {
	return &MemState{Accounts: map[string]Account{}, Keys: map[string]IdempotencyRecord{}, Head: GenesisHead(), Holds: MemHolds{}}
}

// PendingTransfer implements State.
func (s *MemState) PendingTransfer(id string) (PendingTransfer, bool, error) {
	return s.Holds.PendingTransfer(id)
}

// AccountHolds implements State.
func (s *MemState) AccountHolds(id string) ([]PendingTransfer, error) {
	return s.Holds.AccountHolds(id)
}

// DueHolds implements State.
func (s *MemState) DueHolds(t time.Time, limit int) ([]PendingTransfer, error) {
	return s.Holds.DueHolds(t, limit)
}

// Account implements State.
func (s *MemState) Account(id string) (Account, bool, error) {
	a, ok := s.Accounts[id]
	return a, ok, nil
}

// Idempotency implements State.
func (s *MemState) Idempotency(key string) (IdempotencyRecord, bool, error) {
	r, ok := s.Keys[key]
	return r, ok, nil
}

// Execute applies b and keeps its outcome.
func (s *MemState) Execute(b Batch) ([]Result, error) {
	out, err := Apply(s, s.Head, b)
	if err != nil {
		return nil, err
	}
	for _, a := range out.Accounts {
		s.Accounts[a.ID] = a
	}
	for _, r := range out.Idempotency {
		s.Keys[r.Key] = r
	}
	if s.Holds == nil {
		s.Holds = MemHolds{}
	}
	for _, p := range out.Holds {
		s.Holds[p.ID] = p
	}
	s.Log = append(s.Log, out.Events...)
	s.Head = out.Head
	for i := range out.Results {
		if r := &out.Results[i]; r.Replayed {
			r.SetEvents(s.EventsBetween(r.FirstPosition(), r.Position))
		}
	}
	return out.Results, nil
}

// EventsBetween returns the logged events at positions first to last, inclusive.
func (s *MemState) EventsBetween(first, last uint64) []Event {
	if first == 0 || last < first || last > uint64(len(s.Log)) {
		return nil
	}
	return append([]Event(nil), s.Log[first-1:last]...)
}

// Totals sums balances per currency over every account, external ones included; a sound
// ledger has every total zero.
func (s *MemState) Totals() map[string]int64 {
	t := map[string]int64{}
	for _, a := range s.Accounts {
		t[a.Currency] += a.Balance
	}
	return t
}

// SortedAccounts returns the accounts ordered by id.
func (s *MemState) SortedAccounts() []Account {
	out := make([]Account, 0, len(s.Accounts))
	for _, a := range s.Accounts {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Replayer rebuilds account state from events alone, checking the hash chain and every
// balance_after on the way: the independent path that proves the indexes right.
type Replayer struct {
	State *MemState
	chain *ChainVerifier
}

// NewReplayer starts a replay from an empty ledger.
func NewReplayer() *Replayer {
	return &Replayer{State: NewMemState(), chain: NewChainVerifier()}
}

// Add applies the next event.
func (r *Replayer) Add(e Event) error {
	if err := r.chain.Check(e); err != nil {
		return err
	}
	d := e.Data
	cur, err := LookupCurrency(d.Currency)
	if err != nil {
		return fmt.Errorf("position %d: %w", e.Position, err)
	}
	st := r.State
	a, ok := st.Accounts[e.AggregateID]
	var amount int64
	switch e.EventType {
	case EventAccountCreated:
		if ok {
			return fmt.Errorf("position %d: account %s created twice", e.Position, e.AggregateID)
		}
		a = Account{ID: e.AggregateID, OwnerName: d.OwnerName, Currency: cur.Code, Status: StatusActive,
			CreatedAt: e.CreatedAt, OverdraftLimit: d.OverdraftLimit}
		amount = d.InitialBalance
	case EventTransferPending, EventTransferCaptured, EventTransferVoided, EventTransferExpired:
		if !ok {
			return fmt.Errorf("position %d: %s on unknown account %s", e.Position, e.EventType, e.AggregateID)
		}
		if amount, err = r.replayHold(&a, e); err != nil {
			return err
		}
	case EventMoneyDeposited, EventMoneyWithdrawn:
		if !ok {
			return fmt.Errorf("position %d: %s on unknown account %s", e.Position, e.EventType, e.AggregateID)
		}
		if err := replayPosting(a, e); err != nil {
			return err
		}
		amount = d.Amount
		if amount <= 0 {
			return fmt.Errorf("position %d: amount %d is not positive", e.Position, amount)
		}
		if e.EventType == EventMoneyWithdrawn {
			amount = -amount
		}
	case EventAccountFrozen, EventAccountUnfrozen, EventAccountClosed:
		if !ok {
			return fmt.Errorf("position %d: %s on unknown account %s", e.Position, e.EventType, e.AggregateID)
		}
		if err := replayLifecycle(&a, e); err != nil {
			return err
		}
	default:
		return fmt.Errorf("position %d: unknown event type %s", e.Position, e.EventType)
	}
	var sumOK bool
	if a.Balance, sumOK = addInt64(a.Balance, amount); !sumOK {
		return fmt.Errorf("position %d: balance overflows", e.Position)
	}
	a.Version++
	a.LastUpdated = e.CreatedAt
	if a.Version != e.EventVersion {
		return fmt.Errorf("position %d: event_version %d, expected %d", e.Position, e.EventVersion, a.Version)
	}
	if a.Balance != d.BalanceAfter {
		return fmt.Errorf("position %d: balance_after %s, postings give %s", e.Position,
			FormatMinor(d.BalanceAfter, cur), FormatMinor(a.Balance, cur))
	}
	st.Accounts[a.ID] = a
	// Postings against the external account have no stream of their own: book them here.
	if IsExternal(d.Counterparty) && amount != 0 {
		x := st.Accounts[d.Counterparty]
		x.ID, x.Currency, x.Status = d.Counterparty, cur.Code, StatusActive
		if x.CreatedAt.IsZero() {
			x.CreatedAt = e.CreatedAt
		}
		x.Balance -= amount
		x.LastUpdated = e.CreatedAt
		st.Accounts[x.ID] = x
	}
	st.Head = Head{Position: e.Position, Hash: e.Hash, CommitTime: e.CreatedAt}
	st.Log = append(st.Log, e)
	return nil
}

// BalanceAt replays events up to t for one account: the slow path balance-at is checked
// against. ok is false when the account did not exist at t.
func BalanceAt(events []Event, accountID string, t time.Time) (balance int64, ok bool, err error) {
	for _, e := range events {
		if e.AggregateID != accountID || e.CreatedAt.After(t) {
			continue
		}
		balance, ok = e.Data.BalanceAfter, true
	}
	return balance, ok, nil
}
