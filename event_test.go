package chronicle_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// chainLog builds a log with every event type, several currencies and metadata.
func chainLog(t *testing.T) *chronicle.MemState {
	t.Helper()
	s := chronicle.NewMemState()
	mustOK(t, s, t0,
		newCreate("a", "USD", "100", "25"),
		newCreate("b", "USD", "", ""),
		withKey(newCreate("y", "JPY", "500", ""), "open-y"))
	mustOK(t, s, t0.Add(time.Second),
		newDeposit("a", "12.34"),
		newTransfer("a", "b", "50"),
		newWithdraw("y", "499"),
		withKey(newWithdraw("b", "0.01"), "wd-b"))
	mustOK(t, s, t0.Add(-time.Hour), // a clock step back
		newTransfer("b", "a", "1"), newDeposit("y", "7"))
	if len(s.Log) != 11 {
		t.Fatalf("log has %d events, want 11", len(s.Log))
	}
	return s
}

// verify runs a verifier over events and returns the position of the first event it
// rejects (0 if none) and the error.
func verify(events []chronicle.Event) (uint64, error) {
	v := chronicle.NewChainVerifier()
	for _, e := range events {
		if err := v.Check(e); err != nil {
			return e.Position, err
		}
	}
	return 0, nil
}

// copyEvent deep-copies e so that tampering with it leaves the log alone.
func copyEvent(e chronicle.Event) chronicle.Event {
	e.Metadata = maps.Clone(e.Metadata)
	return e
}

func copyLog(log []chronicle.Event) []chronicle.Event {
	out := make([]chronicle.Event, len(log))
	for i, e := range log {
		out[i] = copyEvent(e)
	}
	return out
}

func TestChainVerifierAcceptsAppliedLog(t *testing.T) {
	s := chainLog(t)
	v := chronicle.NewChainVerifier()
	if pos, hash := v.Head(); pos != 0 || hash != chronicle.GenesisHash {
		t.Fatalf("empty verifier head %d %s", pos, hash)
	}
	for _, e := range s.Log {
		if err := v.Check(e); err != nil {
			t.Fatalf("applied log rejected: %v", err)
		}
	}
	if pos, hash := v.Head(); pos != s.Head.Position || hash != s.Head.Hash {
		t.Fatalf("verifier head %d %s, ledger head %d %s", pos, hash, s.Head.Position, s.Head.Hash)
	}
	if s.Log[0].PrevHash != chronicle.GenesisHash {
		t.Fatalf("first prev_hash %s", s.Log[0].PrevHash)
	}
	for i, e := range s.Log {
		if e.Hash != e.ComputeHash() || len(e.Hash) != 64 {
			t.Fatalf("event %d: hash %s", i, e.Hash)
		}
	}
	// Stored and read back as JSON (as every store does), the log still verifies.
	raw, err := json.Marshal(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	var back []chronicle.Event
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if pos, err := verify(back); err != nil {
		t.Fatalf("log read back from JSON rejected at %d: %v", pos, err)
	}
	// Times in another zone denote the same instants and hash the same.
	shifted := copyLog(s.Log)
	for i := range shifted {
		shifted[i].CreatedAt = shifted[i].CreatedAt.In(time.FixedZone("X", -7*3600))
	}
	if pos, err := verify(shifted); err != nil {
		t.Fatalf("log in another zone rejected at %d: %v", pos, err)
	}
	// The replayer accepts it as well.
	r := chronicle.NewReplayer()
	for _, e := range back {
		if err := r.Add(e); err != nil {
			t.Fatalf("replay: %v", err)
		}
	}
}

func TestChainVerifierDetectsTampering(t *testing.T) {
	s := chainLog(t)
	tampers := []struct {
		name string
		// applies returns false when the event has nothing to tamper with.
		tamper func(t *testing.T, e *chronicle.Event) bool
	}{
		{"amount", func(t *testing.T, e *chronicle.Event) bool {
			if e.EventType == chronicle.EventAccountCreated {
				return false
			}
			e.Data.Amount++
			return true
		}},
		{"balance_after", func(t *testing.T, e *chronicle.Event) bool {
			e.Data.BalanceAfter = 100000000
			return true
		}},
		{"initial_balance", func(t *testing.T, e *chronicle.Event) bool {
			if e.EventType != chronicle.EventAccountCreated {
				return false
			}
			e.Data.InitialBalance = 1 - e.Data.InitialBalance
			return true
		}},
		{"overdraft_limit", func(t *testing.T, e *chronicle.Event) bool { e.Data.OverdraftLimit++; return true }},
		{"currency", func(t *testing.T, e *chronicle.Event) bool { e.Data.Currency = "EUR"; return true }},
		{"account_id in the payload", func(t *testing.T, e *chronicle.Event) bool { e.Data.AccountID += "x"; return true }},
		{"owner_name", func(t *testing.T, e *chronicle.Event) bool { e.Data.OwnerName += "x"; return true }},
		{"description", func(t *testing.T, e *chronicle.Event) bool { e.Data.Description += "x"; return true }},
		{"transfer_id", func(t *testing.T, e *chronicle.Event) bool { e.Data.TransferID += "x"; return true }},
		{"from_account_id", func(t *testing.T, e *chronicle.Event) bool { e.Data.FromAccountID += "x"; return true }},
		{"to_account_id", func(t *testing.T, e *chronicle.Event) bool { e.Data.ToAccountID += "x"; return true }},
		{"counterparty", func(t *testing.T, e *chronicle.Event) bool { e.Data.Counterparty += "x"; return true }},
		{"reason", func(t *testing.T, e *chronicle.Event) bool { e.Data.Reason += "x"; return true }},
		{"expires_at", func(t *testing.T, e *chronicle.Event) bool {
			e.Data.ExpiresAt = e.Data.ExpiresAt.Add(time.Nanosecond)
			return true
		}},
		{"held_after", func(t *testing.T, e *chronicle.Event) bool { e.Data.HeldAfter++; return true }},
		{"text moved between two fields", func(t *testing.T, e *chronicle.Event) bool {
			// Length prefixes keep "ab"+"" apart from "a"+"b".
			if e.Data.Description != "" || e.Data.AccountID == "" {
				return false
			}
			id := e.Data.AccountID
			e.Data.AccountID, e.Data.Description = id[:len(id)-1], id[len(id)-1:]
			return true
		}},
		{"metadata key and value swapped boundary", func(t *testing.T, e *chronicle.Event) bool {
			v, ok := e.Metadata["command_id"]
			if !ok {
				return false
			}
			delete(e.Metadata, "command_id")
			e.Metadata["command_id"+v[:1]] = v[1:]
			return true
		}},
		{"created_at", func(t *testing.T, e *chronicle.Event) bool {
			e.CreatedAt = e.CreatedAt.Add(time.Nanosecond)
			return true
		}},
		{"aggregate_id", func(t *testing.T, e *chronicle.Event) bool { e.AggregateID += "x"; return true }},
		{"aggregate_type", func(t *testing.T, e *chronicle.Event) bool { e.AggregateType = "Other"; return true }},
		{"event_type", func(t *testing.T, e *chronicle.Event) bool {
			if e.EventType == chronicle.EventMoneyDeposited {
				e.EventType = chronicle.EventMoneyWithdrawn
			} else {
				e.EventType = chronicle.EventMoneyDeposited
			}
			return true
		}},
		{"event_version", func(t *testing.T, e *chronicle.Event) bool { e.EventVersion++; return true }},
		{"event_id", func(t *testing.T, e *chronicle.Event) bool { e.EventID = chronicle.NewID(); return true }},
		{"created_by", func(t *testing.T, e *chronicle.Event) bool { e.CreatedBy = "mallory"; return true }},
		{"metadata", func(t *testing.T, e *chronicle.Event) bool {
			if e.Metadata == nil {
				e.Metadata = map[string]string{}
			}
			e.Metadata["command_id"] = chronicle.NewID()
			return true
		}},
		{"prev_hash", func(t *testing.T, e *chronicle.Event) bool {
			e.PrevHash = strings.Repeat("f", 64)
			return true
		}},
		{"prev_hash to genesis", func(t *testing.T, e *chronicle.Event) bool {
			if e.PrevHash == chronicle.GenesisHash {
				return false
			}
			e.PrevHash = chronicle.GenesisHash
			return true
		}},
		{"hash", func(t *testing.T, e *chronicle.Event) bool { e.Hash = strings.Repeat("0", 64); return true }},
		{"position", func(t *testing.T, e *chronicle.Event) bool { e.Position += 100; return true }},
		{"position to the next", func(t *testing.T, e *chronicle.Event) bool { e.Position++; return true }},
	}
	for _, tc := range tampers {
		t.Run(tc.name, func(t *testing.T) {
			tried := 0
			for i := range s.Log {
				log := copyLog(s.Log)
				pos := log[i].Position
				if !tc.tamper(t, &log[i]) {
					continue
				}
				tried++
				got, err := verify(log)
				if err == nil {
					t.Fatalf("tampering with %s of event %d went unnoticed", tc.name, pos)
				}
				if got != log[i].Position || !strings.Contains(err.Error(), fmt.Sprintf("position %d:", log[i].Position)) {
					t.Fatalf("tampering with event %d detected at %d: %v", pos, got, err)
				}
				// Recomputing the tampered event's own hash only moves the detection to
				// the next event, whose prev_hash no longer matches.
				if tc.name == "hash" || strings.HasPrefix(tc.name, "prev_hash") || strings.HasPrefix(tc.name, "position") || i == len(log)-1 {
					continue
				}
				log[i].Hash = log[i].ComputeHash()
				got, err = verify(log)
				if err == nil || got != pos+1 || !strings.Contains(err.Error(), "prev_hash") {
					t.Fatalf("tampered and rehashed event %d: detected at %d: %v", pos, got, err)
				}
			}
			if tried == 0 {
				t.Fatal("no event to tamper with")
			}
			// The original is intact.
			if _, err := verify(s.Log); err != nil {
				t.Fatalf("copying failed, the original log changed: %v", err)
			}
		})
	}
}

func TestChainVerifierDetectsGapsAndReorders(t *testing.T) {
	s := chainLog(t)
	for i := range s.Log {
		log := copyLog(s.Log)
		dropped := log[i].Position
		log = append(log[:i], log[i+1:]...)
		got, err := verify(log)
		if i == len(s.Log)-1 {
			// Dropping the last event leaves a valid, shorter chain: only comparing the
			// head with a trusted one (position and hash) shows it.
			if err != nil {
				t.Fatalf("dropping the last event: %v", err)
			}
			v := chronicle.NewChainVerifier()
			for _, e := range log {
				_ = v.Check(e)
			}
			if pos, hash := v.Head(); pos == s.Head.Position || hash == s.Head.Hash {
				t.Fatalf("head after dropping the last event still matches")
			}
			continue
		}
		if err == nil {
			t.Fatalf("dropping event %d went unnoticed", dropped)
		}
		if got != dropped+1 || !strings.Contains(err.Error(), fmt.Sprintf("expected position %d", dropped)) ||
			!strings.Contains(err.Error(), "gap") {
			t.Fatalf("dropping event %d: detected at %d: %v", dropped, got, err)
		}
	}
	// Two events swapped.
	log := copyLog(s.Log)
	log[3], log[4] = log[4], log[3]
	if got, err := verify(log); err == nil || got != 5 {
		t.Fatalf("swap detected at %d: %v", got, err)
	}
	// An event repeated.
	log = copyLog(s.Log)
	log = append(log[:5], append([]chronicle.Event{log[4]}, log[5:]...)...)
	if got, err := verify(log); err == nil || got != 5 {
		t.Fatalf("duplicate detected at %d: %v", got, err)
	}
	// A log that does not start at position 1.
	if got, err := verify(s.Log[1:]); err == nil || got != 2 {
		t.Fatalf("missing first event detected at %d: %v", got, err)
	}
	// A dropped event renumbered and rehashed from there on verifies as a chain, but
	// the replayer still catches the broken account stream (versions, balances).
	log = copyLog(s.Log)
	log = append(log[:3], log[4:]...) // drop the deposit of 12.34 to a
	prev := log[2].Hash
	for i := 3; i < len(log); i++ {
		log[i].Position = uint64(i + 1)
		log[i].PrevHash = prev
		log[i].Hash = log[i].ComputeHash()
		prev = log[i].Hash
	}
	if _, err := verify(log); err != nil {
		t.Fatalf("rewritten chain: %v", err)
	}
	r := chronicle.NewReplayer()
	var replayErr error
	for _, e := range log {
		if replayErr = r.Add(e); replayErr != nil {
			break
		}
	}
	if replayErr == nil || !strings.Contains(replayErr.Error(), "position 4:") {
		t.Fatalf("replaying a rewritten chain: %v", replayErr)
	}
}

func TestReplayerDetectsTampering(t *testing.T) {
	s := chainLog(t)
	// The replayer checks the chain first, so tampering is caught there too.
	log := copyLog(s.Log)
	log[3].Data.Amount = 9999
	r := chronicle.NewReplayer()
	var err error
	for _, e := range log {
		if err = r.Add(e); err != nil {
			break
		}
	}
	if err == nil || !strings.Contains(err.Error(), "position 4:") {
		t.Fatalf("replay of a tampered log: %v", err)
	}
}

// The original system's consumers read a transfer's legs by its own names: recipient on
// the MoneyWithdrawn leg, sender on the MoneyDeposited leg. They are derived from the
// typed event for JSON only: not hashed, and ignored when JSON is read back.
func TestEventJSONCarriesOriginalTransferNames(t *testing.T) {
	s := chainLog(t)
	var legs int
	for _, e := range s.Log {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Data map[string]any `json:"event_data"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		recipient, hasR := v.Data["recipient"]
		sender, hasS := v.Data["sender"]
		switch {
		case e.Data.TransferID != "" && e.EventType == chronicle.EventMoneyWithdrawn:
			legs++
			if recipient != e.Data.ToAccountID || hasS {
				t.Fatalf("withdrawn leg %d: recipient %v sender %v, want recipient %s", e.Position, recipient, sender, e.Data.ToAccountID)
			}
		case e.Data.TransferID != "" && e.EventType == chronicle.EventMoneyDeposited:
			legs++
			if sender != e.Data.FromAccountID || hasR {
				t.Fatalf("deposited leg %d: sender %v recipient %v, want sender %s", e.Position, sender, recipient, e.Data.FromAccountID)
			}
		case hasR || hasS:
			t.Fatalf("event %d (%s) is no transfer leg but carries recipient/sender", e.Position, e.EventType)
		}
		if _, ok := v.Data["currency"]; !ok {
			t.Fatalf("event %d has no currency", e.Position)
		}
		if _, ok := v.Data["initial_balance"]; ok != (e.EventType == chronicle.EventAccountCreated) {
			t.Fatalf("event %d (%s): initial_balance present %t", e.Position, e.EventType, ok)
		}
		var back chronicle.Event
		if err := json.Unmarshal(b, &back); err != nil || back.ComputeHash() != e.Hash {
			t.Fatalf("event %d read back from JSON: %v, hash changed %t", e.Position, err, back.ComputeHash() != e.Hash)
		}
	}
	if legs < 4 {
		t.Fatalf("only %d transfer legs in the log", legs)
	}
}
