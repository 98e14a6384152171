package chronicle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Event types.
const (
	EventAccountCreated = "AccountCreated"
	EventMoneyDeposited = "MoneyDeposited"
	EventMoneyWithdrawn = "MoneyWithdrawn"
)

// GenesisHash is the prev_hash of the first event.
var GenesisHash = strings.Repeat("0", 64)

// Event is one immutable fact in the log. Field names are the seed's.
type Event struct {
	Position      uint64            `json:"position"`
	EventID       string            `json:"event_id"`
	AggregateID   string            `json:"aggregate_id"`
	AggregateType string            `json:"aggregate_type"`
	EventType     string            `json:"event_type"`
	EventVersion  uint64            `json:"event_version"`
	EventData     json.RawMessage   `json:"event_data"`
	CreatedAt     time.Time         `json:"created_at"`
	CreatedBy     string            `json:"created_by,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	PrevHash      string            `json:"prev_hash"`
	Hash          string            `json:"hash"`
}

// EventData is the payload of the account events. Amounts are decimal strings with the
// currency's decimals, exact and readable; BalanceAfter makes every event a statement line.
type EventData struct {
	AccountID      string `json:"account_id"`
	OwnerName      string `json:"owner_name,omitempty"`
	Currency       string `json:"currency"`
	Amount         string `json:"amount,omitempty"`
	InitialBalance string `json:"initial_balance,omitempty"`
	OverdraftLimit string `json:"overdraft_limit,omitempty"`
	BalanceAfter   string `json:"balance_after"`
	Description    string `json:"description,omitempty"`
	TransferID     string `json:"transfer_id,omitempty"`
	FromAccountID  string `json:"from_account_id,omitempty"`
	ToAccountID    string `json:"to_account_id,omitempty"`
	// Counterparty is the other side of the posting: an account or a currency's
	// external account such as "@world:USD".
	Counterparty string `json:"counterparty,omitempty"`
}

// Data decodes the event's payload.
func (e Event) Data() (EventData, error) {
	var d EventData
	if err := json.Unmarshal(e.EventData, &d); err != nil {
		return d, fmt.Errorf("decode %s data at position %d: %w", e.EventType, e.Position, err)
	}
	return d, nil
}

// hashedEvent is the canonical encoding covered by the hash: every field but the hash,
// in a fixed order, with the time in a fixed format.
type hashedEvent struct {
	Position      uint64            `json:"position"`
	EventID       string            `json:"event_id"`
	AggregateID   string            `json:"aggregate_id"`
	AggregateType string            `json:"aggregate_type"`
	EventType     string            `json:"event_type"`
	EventVersion  uint64            `json:"event_version"`
	EventData     json.RawMessage   `json:"event_data"`
	CreatedAt     string            `json:"created_at"`
	CreatedBy     string            `json:"created_by"`
	Metadata      map[string]string `json:"metadata"`
	PrevHash      string            `json:"prev_hash"`
}

// ComputeHash is SHA-256 over the canonical encoding of e, which includes PrevHash, so
// each hash seals the whole history before it.
func (e Event) ComputeHash() string {
	b, err := json.Marshal(hashedEvent{
		Position: e.Position, EventID: e.EventID, AggregateID: e.AggregateID,
		AggregateType: e.AggregateType, EventType: e.EventType, EventVersion: e.EventVersion,
		EventData: e.EventData, CreatedAt: e.CreatedAt.UTC().Format(time.RFC3339Nano),
		CreatedBy: e.CreatedBy, Metadata: e.Metadata, PrevHash: e.PrevHash,
	})
	if err != nil {
		// EventData is produced by json.Marshal or read back from the log; invalid JSON
		// here means the stored event is corrupt, and a hash that cannot match says so.
		return "invalid:" + err.Error()
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
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
