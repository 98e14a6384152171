// Package golden builds and renders the golden fixture log in testdata/golden: a
// scripted, deterministic history of every command kind, outcome and currency exponent.
// cmd internal/goldengen writes the files once; TestGolden (root package) replays the
// committed entries and fails on any byte that the current code renders differently.
package golden

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// script builds the batches. Ids, times and choices all come from a fixed seed.
type script struct {
	rng     *rand.Rand
	n       int // commands so far, for ids
	now     time.Time
	batches []chronicle.Batch
	cur     []chronicle.Command
	// accounts by currency, as the script believes they exist
	accounts map[string][]string
	keys     []chronicle.Command // commands sent with a key, for retries
}

func (s *script) id() string {
	s.n++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", s.n)
}

func (s *script) add(c chronicle.Command) {
	if c.ID == "" {
		c.ID = s.id()
	}
	s.cur = append(s.cur, c)
}

func (s *script) flush(step time.Duration, window time.Duration) {
	s.batches = append(s.batches, chronicle.Batch{Time: s.now, IdempotencyWindow: window, Commands: s.cur})
	s.cur = nil
	s.now = s.now.Add(step)
}

func (s *script) pick(cur string) string {
	ids := s.accounts[cur]
	return ids[s.rng.IntN(len(ids))]
}

var currencies = []struct {
	code   string
	amount func(r *rand.Rand) string
}{
	{"USD", func(r *rand.Rand) string { return fmt.Sprintf("%d.%02d", r.IntN(500), r.IntN(100)) }},
	{"EUR", func(r *rand.Rand) string { return fmt.Sprintf("%d.%d", r.IntN(300), r.IntN(10)) }},
	{"JPY", func(r *rand.Rand) string { return fmt.Sprintf("%d", 1+r.IntN(90000)) }},
	{"BHD", func(r *rand.Rand) string { return fmt.Sprintf("%d.%03d", r.IntN(50), r.IntN(1000)) }},
	{"CLF", func(r *rand.Rand) string { return fmt.Sprintf("%d.%04d", r.IntN(5), 1+r.IntN(9999)) }},
	{"KWD", func(r *rand.Rand) string { return fmt.Sprintf("%d.%03d", r.IntN(80), 1+r.IntN(999)) }},
}

// Script is the scripted history: ids, times and choices all come from a fixed seed.
func Script() []chronicle.Batch {
	s := &script{rng: rand.New(rand.NewPCG(2026, 1130)), now: time.Date(2026, 11, 30, 9, 0, 0, 123456789, time.UTC),
		accounts: map[string][]string{}}
	const window = 10 * time.Minute
	owners := []string{"Ada Lovelace", "Émile Zola", "山田 太郎", "Nguyễn Văn A", "O'Brien & Sons", "Zoë"}
	// Accounts: three per currency, with and without opening balances and overdrafts.
	for ci, c := range currencies {
		for i := range 3 {
			id := fmt.Sprintf("%s-%d", c.code, i)
			cmd := chronicle.Command{Type: chronicle.CmdCreateAccount, AccountID: id, OwnerName: owners[(ci+i)%len(owners)],
				Currency: c.code}
			if i > 0 {
				cmd.InitialBalance = chronicle.Decimal(c.amount(s.rng))
			}
			if i == 2 {
				cmd.OverdraftLimit = chronicle.Decimal(c.amount(s.rng))
				cmd.Description = "opened with an overdraft"
			}
			if i == 1 {
				cmd.Currency = map[bool]string{true: "usd", false: c.code}[c.code == "USD"] // lower case accepted
				cmd.IdempotencyKey = "open-" + id
				cmd.RequestID = "req-" + id
				cmd.CreatedBy = "teller-7"
			}
			s.add(cmd)
			s.accounts[c.code] = append(s.accounts[c.code], id)
		}
		s.flush(time.Second, window)
	}
	// Refusals that need no state and some that do.
	for _, c := range []chronicle.Command{
		{Type: chronicle.CmdCreateAccount, AccountID: "USD-0", OwnerName: "again", Currency: "USD"},                    // exists
		{Type: chronicle.CmdCreateAccount, AccountID: "bad id!", OwnerName: "x", Currency: "USD"},                      // id syntax
		{Type: chronicle.CmdCreateAccount, AccountID: "ghost", OwnerName: "x", Currency: "XXX"},                        // currency
		{Type: chronicle.CmdCreateAccount, AccountID: "ghost", OwnerName: "x", Currency: "JPY", InitialBalance: "1.5"}, // decimals
		{Type: chronicle.CmdDeposit, AccountID: "nobody", Amount: "1"},                                                 // unknown
		{Type: chronicle.CmdDeposit, AccountID: "USD-0", Amount: "0"},                                                  // zero
		{Type: chronicle.CmdDeposit, AccountID: "USD-0", Amount: "1.001"},                                              // decimals
		{Type: chronicle.CmdDeposit, AccountID: "USD-0", Amount: "5", Currency: "EUR"},                                 // mismatch
		{Type: chronicle.CmdWithdraw, AccountID: "USD-0", Amount: "1000000"},                                           // funds
		{Type: chronicle.CmdTransfer, FromAccountID: "USD-1", ToAccountID: "EUR-1", Amount: "1"},                       // currencies
		{Type: chronicle.CmdTransfer, FromAccountID: "USD-1", ToAccountID: "USD-1", Amount: "1"},                       // same
		{Type: chronicle.CmdDeposit, AccountID: "USD-0", Amount: "92233720368547758.07"},                               // fits
		{Type: chronicle.CmdDeposit, AccountID: "USD-0", Amount: "1"},                                                  // overflows
		{Type: "suspend-account", AccountID: "USD-0"},                                                                  // no such type
	} {
		s.add(c)
	}
	s.flush(time.Second, window)
	s.add(chronicle.Command{Type: chronicle.CmdWithdraw, AccountID: "USD-0", Amount: "92233720368547758.07"})
	s.flush(time.Second, window)
	// Traffic: deposits, withdrawals (some beyond the balance), transfers, keyed commands
	// and their retries, in batches of varying size; now and then the clock steps back.
	for b := 0; b < 90; b++ {
		for range 1 + s.rng.IntN(9) {
			c := currencies[s.rng.IntN(len(currencies))]
			var cmd chronicle.Command
			switch k := s.rng.IntN(10); {
			case k < 3:
				cmd = chronicle.Command{Type: chronicle.CmdDeposit, AccountID: s.pick(c.code), Amount: chronicle.Decimal(c.amount(s.rng))}
			case k < 5:
				cmd = chronicle.Command{Type: chronicle.CmdWithdraw, AccountID: s.pick(c.code), Amount: chronicle.Decimal(c.amount(s.rng))}
			case k < 9:
				from, to := s.pick(c.code), s.pick(c.code)
				cmd = chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: from, ToAccountID: to, Amount: chronicle.Decimal(c.amount(s.rng)),
					Description: fmt.Sprintf("invoice %d", s.rng.IntN(1000))}
				if s.rng.IntN(3) == 0 {
					cmd.Currency = c.code
				}
			default:
				if len(s.keys) > 0 {
					prev := s.keys[s.rng.IntN(len(s.keys))]
					prev.ID = "" // a retry: same body, new command id
					if s.rng.IntN(4) == 0 {
						prev.Description = "changed body" // same key, other body: refused
					}
					s.add(prev)
					continue
				}
				cmd = chronicle.Command{Type: chronicle.CmdDeposit, AccountID: s.pick(c.code), Amount: "1"}
			}
			if s.rng.IntN(4) == 0 {
				cmd.IdempotencyKey = fmt.Sprintf("key-%d", s.n)
				cmd.ID = s.id()
				s.keys = append(s.keys, cmd)
			}
			if s.rng.IntN(5) == 0 {
				cmd.CreatedBy = "api-client"
				cmd.RequestID = fmt.Sprintf("r%d", s.n)
			}
			s.add(cmd)
		}
		step := time.Duration(s.rng.IntN(3000)) * time.Millisecond
		if b%11 == 10 {
			step = -90 * time.Second // the next leader's clock is behind
		}
		if b == 60 {
			step = 20 * time.Minute // every key so far expires
		}
		s.flush(step, window)
	}
	return s.batches
}

// Files names the fixture files and what each holds.
var Files = []string{"entries.bin", "events.txt", "events.jsonl", "results.txt"}

// Render encodes batches as the log holds them and applies them to an empty ledger,
// returning the contents of every fixture file:
//
//   - entries.bin: each log entry (envelope and command batch) prefixed by its length (u32);
//   - events.txt: per event, its position, hash and stored binary form in hex;
//   - events.jsonl: per event, its JSON as the API and NATS show it;
//   - results.txt: per command, its batch, index and result.
func Render(batches []chronicle.Batch) (map[string][]byte, error) {
	var entries, events, eventsJSON, results bytes.Buffer
	st := chronicle.NewMemState()
	for bi, b := range batches {
		payload, err := b.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("batch %d: %w", bi, err)
		}
		entry := chronicle.EncodeEntry(chronicle.EntryCommandBatch, payload)
		entries.Write(binary.BigEndian.AppendUint32(nil, uint32(len(entry))))
		entries.Write(entry)
		from := len(st.Log)
		res, err := st.Execute(b)
		if err != nil {
			return nil, fmt.Errorf("batch %d: %w", bi, err)
		}
		for ci, r := range res {
			fmt.Fprintf(&results, "%d %d %s\n", bi, ci, formatResult(r))
		}
		for _, e := range st.Log[from:] {
			stored, err := e.MarshalBinary()
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&events, "%d %s %s\n", e.Position, e.Hash, hex.EncodeToString(stored))
			j, err := json.Marshal(e)
			if err != nil {
				return nil, err
			}
			eventsJSON.Write(j)
			eventsJSON.WriteByte('\n')
		}
	}
	return map[string][]byte{"entries.bin": entries.Bytes(), "events.txt": events.Bytes(),
		"events.jsonl": eventsJSON.Bytes(), "results.txt": results.Bytes()}, nil
}

// ReadEntries splits entries.bin into its log entries.
func ReadEntries(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 4 {
			return nil, fmt.Errorf("entries.bin: %d stray bytes at the end", len(data))
		}
		n := binary.BigEndian.Uint32(data)
		if uint64(n) > uint64(len(data)-4) {
			return nil, fmt.Errorf("entries.bin: entry %d claims %d bytes, %d left", len(out), n, len(data)-4)
		}
		out = append(out, data[4:4+n])
		data = data[4+n:]
	}
	return out, nil
}

// formatResult is one line of results.txt.
func formatResult(r chronicle.Result) string {
	if r.Err != nil {
		return fmt.Sprintf("refused %s %s %q", r.Err.Code, r.Err.Field, r.Err.Message)
	}
	return fmt.Sprintf("ok position=%d events=%d replayed=%t transfer=%s time=%s", r.Position, len(r.Events), r.Replayed,
		r.TransferID, r.CommitTime.UTC().Format(time.RFC3339Nano))
}
