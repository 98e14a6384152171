package chronicle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Event types.
const (
	EventAccountCreated = "AccountCreated"
	EventMoneyDeposited = "MoneyDeposited"
	EventMoneyWithdrawn = "MoneyWithdrawn"

	EventAccountFrozen   = "AccountFrozen"
	EventAccountUnfrozen = "AccountUnfrozen"
	EventAccountClosed   = "AccountClosed"

	EventTransferPending  = "TransferPending"
	EventTransferCaptured = "TransferCaptured"
	EventTransferVoided   = "TransferVoided"
	EventTransferExpired  = "TransferExpired"
)

// GenesisHash is the prev_hash of the first event.
var GenesisHash = strings.Repeat("0", 64)

// Event is one immutable fact in the log. Its JSON form (MarshalJSON) keeps the seed's
// field names; its hash covers the canonical binary encoding (AppendCanonical), never
// the JSON.
type Event struct {
	Position      uint64
	EventID       string
	AggregateID   string
	AggregateType string
	EventType     string
	EventVersion  uint64
	// Data is the typed payload, "event_data" in JSON.
	Data      EventData
	CreatedAt time.Time
	CreatedBy string
	Metadata  map[string]string
	PrevHash  string
	Hash      string
}

// EventData is the payload of the account events. Amounts are minor units of Currency;
// JSON renders them as decimal strings with the currency's decimals, as the seed did.
// BalanceAfter makes every event a statement line.
type EventData struct {
	AccountID string
	OwnerName string
	Currency  string
	// Amount is the posting's amount (deposits, withdrawals and transfer legs).
	Amount int64
	// InitialBalance and OverdraftLimit are set by AccountCreated.
	InitialBalance int64
	OverdraftLimit int64
	BalanceAfter   int64
	Description    string
	TransferID     string
	FromAccountID  string
	ToAccountID    string
	// Counterparty is the other side of the posting: an account or a currency's
	// external account such as "@world:USD".
	Counterparty string
	// Reason says why an account's status changed (freeze, unfreeze, close) or why a
	// pending transfer ended.
	Reason string
	// ExpiresAt is the commit-time deadline of a pending transfer (zero: none).
	ExpiresAt time.Time
	// HeldAfter is the account's total held (reserved, not yet posted) amount after the
	// event, as BalanceAfter is its posted balance: available = balance - held.
	HeldAfter int64
}

// extended reports whether d carries any field that only canonical version 2 holds.
func (d *EventData) extended() bool {
	return d.Reason != "" || !d.ExpiresAt.IsZero() || d.HeldAfter != 0
}

// Canonical versions: the first byte of every canonical event encoding. A new layout
// gets a new version; old events keep hashing under the old one. An event is encoded in
// version 2 only when it carries one of version 2's fields, so every event that version 1
// can hold keeps its version-1 bytes and hash.
const (
	canonicalVersion1 = 1
	canonicalVersion2 = 2
)

// AppendCanonical appends the canonical encoding of e to b: every field but Hash, in a
// fixed order (envelope, then payload, then prev_hash), metadata sorted by key.
//
//	version u8 = 1, or 2 when reason, expires_at or held_after is set
//	position u64 | event_id str | aggregate_id str | aggregate_type str | event_type str |
//	event_version u64 | created_at i64 (Unix ns) | created_by str |
//	metadata: count u32, then (key str, value str) sorted by key |
//	account_id str | owner_name str | currency str | amount i64 | initial_balance i64 |
//	overdraft_limit i64 | balance_after i64 | description str | transfer_id str |
//	from_account_id str | to_account_id str | counterparty str |
//	(version 2 only:) reason str | expires_at i64 (Unix ns) | held_after i64 |
//	prev_hash str
func (e *Event) AppendCanonical(b []byte) []byte {
	v2 := e.Data.extended()
	if v2 {
		b = appendU8(b, canonicalVersion2)
	} else {
		b = appendU8(b, canonicalVersion1)
	}
	b = appendU64(b, e.Position)
	b = appendStr(b, e.EventID)
	b = appendStr(b, e.AggregateID)
	b = appendStr(b, e.AggregateType)
	b = appendStr(b, e.EventType)
	b = appendU64(b, e.EventVersion)
	b = appendTime(b, e.CreatedAt)
	b = appendStr(b, e.CreatedBy)
	b = appendU32(b, uint32(len(e.Metadata)))
	keys := make([]string, 0, len(e.Metadata))
	for k := range e.Metadata {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendStr(b, k)
		b = appendStr(b, e.Metadata[k])
	}
	d := &e.Data
	b = appendStr(b, d.AccountID)
	b = appendStr(b, d.OwnerName)
	b = appendStr(b, d.Currency)
	b = appendI64(b, d.Amount)
	b = appendI64(b, d.InitialBalance)
	b = appendI64(b, d.OverdraftLimit)
	b = appendI64(b, d.BalanceAfter)
	b = appendStr(b, d.Description)
	b = appendStr(b, d.TransferID)
	b = appendStr(b, d.FromAccountID)
	b = appendStr(b, d.ToAccountID)
	b = appendStr(b, d.Counterparty)
	if v2 {
		b = appendStr(b, d.Reason)
		b = appendTime(b, d.ExpiresAt)
		b = appendI64(b, d.HeldAfter)
	}
	return appendStr(b, e.PrevHash)
}

// decodeCanonical reads what AppendCanonical wrote (Hash is not part of it).
func (d *decoder) canonicalEvent(e *Event) {
	v := d.u8()
	if d.err == nil && v != canonicalVersion1 && v != canonicalVersion2 {
		d.fail("event format version %d, this build reads versions %d and %d", v, canonicalVersion1, canonicalVersion2)
	}
	e.Position = d.u64()
	e.EventID = d.str()
	e.AggregateID = d.str()
	e.AggregateType = d.str()
	e.EventType = d.str()
	e.EventVersion = d.u64()
	e.CreatedAt = d.time()
	e.CreatedBy = d.str()
	n := d.u32()
	if n > 0 && d.err == nil {
		if int(n) > (len(d.b)-d.off)/8 {
			d.fail("metadata count %d exceeds the record", n)
			return
		}
		e.Metadata = make(map[string]string, n)
		prev := ""
		for i := 0; i < int(n) && d.err == nil; i++ {
			k, v := d.str(), d.str()
			if i > 0 && k <= prev {
				d.fail("metadata keys out of order")
			}
			e.Metadata[k], prev = v, k
		}
	}
	p := &e.Data
	p.AccountID = d.str()
	p.OwnerName = d.str()
	p.Currency = d.str()
	p.Amount = d.i64()
	p.InitialBalance = d.i64()
	p.OverdraftLimit = d.i64()
	p.BalanceAfter = d.i64()
	p.Description = d.str()
	p.TransferID = d.str()
	p.FromAccountID = d.str()
	p.ToAccountID = d.str()
	p.Counterparty = d.str()
	if v == canonicalVersion2 {
		p.Reason = d.str()
		p.ExpiresAt = d.time()
		p.HeldAfter = d.i64()
		if d.err == nil && !p.extended() {
			// Version 2 is written only for an event that needs it; anything else would
			// give one event two encodings and two hashes.
			d.fail("version 2 event without version 2 fields")
		}
	}
	e.PrevHash = d.str()
}

// ComputeHash is SHA-256 over the canonical encoding of e, which includes PrevHash, so
// each hash seals the whole history before it.
func (e *Event) ComputeHash() string {
	var buf [512]byte
	sum := sha256.Sum256(e.AppendCanonical(buf[:0]))
	return hex.EncodeToString(sum[:])
}

// storedEventVersion is the first byte of an event as stores keep it.
const storedEventVersion = 1

// MarshalBinary is the stored form of an event: a version byte, the canonical encoding
// and the 32 bytes of its hash. A store can recompute the hash from the bytes it holds.
func (e *Event) MarshalBinary() ([]byte, error) {
	return e.AppendBinary(make([]byte, 0, 320))
}

// AppendBinary appends the stored form of e (see MarshalBinary).
func (e *Event) AppendBinary(b []byte) ([]byte, error) {
	var h [32]byte
	if n, err := hex.Decode(h[:], []byte(e.Hash)); err != nil || n != 32 || len(e.Hash) != 64 {
		return nil, fmt.Errorf("encode event %d: hash %q is not 64 hex digits", e.Position, e.Hash)
	}
	b = appendU8(b, storedEventVersion)
	b = e.AppendCanonical(b)
	return append(b, h[:]...), nil
}

// UnmarshalBinary reads the stored form of an event. It does not check the hash against
// the content: that is ChainVerifier's job, which also sees prev_hash links.
func (e *Event) UnmarshalBinary(b []byte) error {
	d := decoder{b: b, what: "event"}
	d.version(storedEventVersion)
	var out Event
	d.canonicalEvent(&out)
	out.Hash = hex.EncodeToString(d.take(32))
	if err := d.done(); err != nil {
		return err
	}
	*e = out
	return nil
}

// eventJSON is the seed's JSON shape of an event.
type eventJSON struct {
	Position      uint64            `json:"position"`
	EventID       string            `json:"event_id"`
	AggregateID   string            `json:"aggregate_id"`
	AggregateType string            `json:"aggregate_type"`
	EventType     string            `json:"event_type"`
	EventVersion  uint64            `json:"event_version"`
	EventData     eventDataJSON     `json:"event_data"`
	CreatedAt     time.Time         `json:"created_at"`
	CreatedBy     string            `json:"created_by,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	PrevHash      string            `json:"prev_hash"`
	Hash          string            `json:"hash"`
}

// eventDataJSON is the seed's JSON shape of a payload: amounts as decimal strings.
type eventDataJSON struct {
	AccountID      string    `json:"account_id"`
	OwnerName      string    `json:"owner_name,omitempty"`
	Currency       string    `json:"currency"`
	Amount         string    `json:"amount,omitempty"`
	InitialBalance string    `json:"initial_balance,omitempty"`
	OverdraftLimit string    `json:"overdraft_limit,omitempty"`
	BalanceAfter   string    `json:"balance_after"`
	Description    string    `json:"description,omitempty"`
	TransferID     string    `json:"transfer_id,omitempty"`
	FromAccountID  string    `json:"from_account_id,omitempty"`
	ToAccountID    string    `json:"to_account_id,omitempty"`
	Counterparty   string    `json:"counterparty,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	HeldAfter      string    `json:"held_after,omitempty"`
	// Recipient (on a transfer's MoneyWithdrawn leg) and Sender (on its MoneyDeposited
	// leg) are the original system's names for to_account_id and from_account_id, kept
	// so its read processor and scripts work unchanged. Derived, never hashed.
	Recipient string `json:"recipient,omitempty"`
	Sender    string `json:"sender,omitempty"`
}

// UnmarshalJSON reads the seed's shape back into the typed event (clients, remote
// projectors). Amounts must be exact in the event's currency.
func (e *Event) UnmarshalJSON(b []byte) error {
	var j eventJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	d := j.EventData
	cur, err := LookupCurrency(d.Currency)
	if err != nil {
		return fmt.Errorf("event %d: %w", j.Position, err)
	}
	out := Event{Position: j.Position, EventID: j.EventID, AggregateID: j.AggregateID, AggregateType: j.AggregateType,
		EventType: j.EventType, EventVersion: j.EventVersion, CreatedAt: j.CreatedAt, CreatedBy: j.CreatedBy,
		Metadata: j.Metadata, PrevHash: j.PrevHash, Hash: j.Hash,
		Data: EventData{AccountID: d.AccountID, OwnerName: d.OwnerName, Currency: d.Currency,
			Description: d.Description, TransferID: d.TransferID, FromAccountID: d.FromAccountID,
			ToAccountID: d.ToAccountID, Counterparty: d.Counterparty, Reason: d.Reason, ExpiresAt: d.ExpiresAt}}
	for _, f := range []struct {
		name string
		text string
		dst  *int64
	}{{"amount", d.Amount, &out.Data.Amount}, {"initial_balance", d.InitialBalance, &out.Data.InitialBalance},
		{"overdraft_limit", d.OverdraftLimit, &out.Data.OverdraftLimit}, {"balance_after", d.BalanceAfter, &out.Data.BalanceAfter},
		{"held_after", d.HeldAfter, &out.Data.HeldAfter}} {
		if f.text == "" {
			continue
		}
		if *f.dst, err = ParseMoney(f.text, cur); err != nil {
			return fmt.Errorf("event %d: %s: %w", j.Position, f.name, err)
		}
	}
	*e = out
	return nil
}

// ChainVerifier checks events one at a time, in position order, against the hash chain.
type ChainVerifier struct {
	next     uint64
	prevHash string
}

// NewChainVerifier starts a verifier at position 1.
func NewChainVerifier() *ChainVerifier {
	return &ChainVerifier{next: 1, prevHash: GenesisHash}
}

// Check verifies that e is the next event and that its hashes are intact.
func (v *ChainVerifier) Check(e Event) error {
	if e.Position != v.next {
		return fmt.Errorf("position %d: expected position %d (gap or reorder)", e.Position, v.next)
	}
	if e.PrevHash != v.prevHash {
		return fmt.Errorf("position %d: prev_hash %s does not match the previous event's hash %s", e.Position, e.PrevHash, v.prevHash)
	}
	if got := e.ComputeHash(); got != e.Hash {
		return fmt.Errorf("position %d: stored hash %s, content hashes to %s (event was altered)", e.Position, e.Hash, got)
	}
	v.next++
	v.prevHash = e.Hash
	return nil
}

// Head returns the position and hash of the last event checked.
func (v *ChainVerifier) Head() (uint64, string) { return v.next - 1, v.prevHash }
