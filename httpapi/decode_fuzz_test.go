package httpapi

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// fuzzCommandTypes are the command types the fuzzer's first input selects among (the
// lifecycle and two-phase types were added after the first four, which keep their bytes
// 0-3; 255 still selects transfer).
var fuzzCommandTypes = [9]chronicle.CommandType{
	chronicle.CmdCreateAccount, chronicle.CmdDeposit, chronicle.CmdWithdraw, chronicle.CmdTransfer,
	chronicle.CmdFreezeAccount, chronicle.CmdUnfreezeAccount, chronicle.CmdCloseAccount,
	chronicle.CmdCaptureTransfer, chronicle.CmdVoidTransfer,
}

// decodeFuzzSeeds are the seed inputs; testdata/fuzz/FuzzDecodeCommand holds the same
// inputs as corpus files, named seed-<name>.
var decodeFuzzSeeds = []struct {
	name    string
	cmdType byte
	body    string
}{
	// Valid.
	{"create-valid", 0, `{"account_id":"acc-1","owner_name":"Alice","currency":"USD","initial_balance":"100.50","overdraft_limit":"25"}`},
	{"create-number-amounts", 0, `{"account_id":"a","owner_name":"A","currency":"JPY","initial_balance":1000,"overdraft_limit":0}`},
	{"deposit-valid", 1, `{"account_id":"a","amount":"12.34","currency":"USD","description":"pay"}`},
	{"deposit-number", 1, `{"account_id":"a","amount":12.5}`},
	{"deposit-precision", 1, `{"account_id":"a","amount":"12.345"}`},
	{"withdraw-valid", 2, `{"account_id":"j","amount":"500"}`},
	{"transfer-valid", 3, `{"from_account_id":"a","to_account_id":"b","amount":"0.01"}`},
	{"transfer-cross-currency", 3, `{"from_account_id":"a","to_account_id":"e","amount":"1"}`},
	{"transfer-huge", 3, `{"from_account_id":"a","to_account_id":"b","amount":"92233720368547758.07"}`},
	{"unicode-owner", 0, `{"account_id":"a","owner_name":"Zoë 山田 🙂","currency":"EUR"}`},
	{"escaped-unicode-owner", 0, `{"account_id":"a","owner_name":"\u00e9\ud83d\ude00","currency":"EUR"}`},
	{"type-byte-wraps", 255, `{"from_account_id":"a","to_account_id":"b","amount":"1"}`},
	// Invalid.
	{"empty", 1, ``},
	{"whitespace", 1, " \t\r\n"},
	{"null", 1, `null`},
	{"array", 2, `[]`},
	{"array-of-object", 2, `[{"account_id":"a","amount":"1"}]`},
	{"string", 3, `"x"`},
	{"unknown-field", 1, `{"account_id":"a","amount":"1","memo":"x"}`},
	{"duplicate-field", 1, `{"account_id":"a","amount":"1","amount":"2"}`},
	{"wrong-type-bool-amount", 1, `{"account_id":"a","amount":true}`},
	{"wrong-type-number-id", 2, `{"account_id":5,"amount":"1"}`},
	{"null-amount", 2, `{"account_id":"a","amount":null}`},
	{"nested-object", 3, `{"from_account_id":{"id":"a"},"to_account_id":"b","amount":{"value":{"x":[1,2,{}]}}}`},
	{"nested-deep", 1, `{"account_id":"a","amount":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`},
	{"huge-number", 1, `{"account_id":"a","amount":99999999999999999999999999999999999999999999999999}`},
	{"huge-exponent", 1, `{"account_id":"a","amount":1e999999}`},
	{"huge-number-id", 1, `{"account_id":1e999,"amount":"1"}`},
	{"exponent-string", 1, `{"account_id":"a","amount":"1e3"}`},
	{"exponent-number", 2, `{"account_id":"a","amount":1e3}`},
	{"negative-zero", 2, `{"account_id":"a","amount":-0}`},
	{"negative-initial", 0, `{"account_id":"a","owner_name":"A","currency":"USD","initial_balance":"-1"}`},
	{"trailing-data", 1, `{"account_id":"a","amount":"1"}x`},
	{"trailing-object", 1, `{"account_id":"a","amount":"1"}{"account_id":"b"}`},
	{"truncated", 3, `{"from_account_id":"a","to_account_id":"b","amount":"1`},
	{"control-char-raw", 0, "{\"account_id\":\"a\",\"owner_name\":\"A\x00B\",\"currency\":\"USD\"}"},
	{"control-char-escaped", 0, `{"account_id":"a","owner_name":"A\u0000B","currency":"USD"}`},
	{"invalid-utf8", 0, "{\"account_id\":\"a\",\"owner_name\":\"\xff\xfe\",\"currency\":\"USD\"}"},
	{"invalid-utf8-amount", 1, "{\"account_id\":\"a\",\"amount\":\"1\xff\"}"},
	{"bom", 1, "\xef\xbb\xbf{\"account_id\":\"a\",\"amount\":\"1\"}"},
	{"same-account", 3, `{"from_account_id":"a","to_account_id":"a","amount":"1"}`},
	{"unknown-currency", 0, `{"account_id":"a","owner_name":"A","currency":"ZZZ"}`},
	{"case-insensitive-key", 1, `{"ACCOUNT_ID":"a","Amount":"1"}`},
	{"long-id", 1, `{"account_id":"` + strings.Repeat("x", 65) + `","amount":"1"}`},
	// The account lifecycle.
	{"freeze-valid", 4, `{"account_id":"a","reason":"court order 17/2025"}`},
	{"freeze-no-reason", 4, `{"account_id":"a"}`},
	{"freeze-blank-reason", 4, `{"account_id":"a","reason":"  "}`},
	{"freeze-control-reason", 4, `{"account_id":"a","reason":"a\u0007b"}`},
	{"freeze-long-reason", 4, `{"account_id":"a","reason":"` + strings.Repeat("é", 501) + `"}`},
	{"freeze-number-reason", 4, `{"account_id":"a","reason":1}`},
	{"freeze-external", 4, `{"account_id":"@world:USD","reason":"x"}`},
	{"freeze-amount", 4, `{"account_id":"a","reason":"x","amount":"1"}`},
	{"unfreeze-valid", 5, `{"account_id":"a"}`},
	{"unfreeze-reason", 5, `{"account_id":"a","reason":"cleared 🙂"}`},
	{"unfreeze-null-reason", 5, `{"account_id":"a","reason":null}`},
	{"close-valid", 6, `{"account_id":"b","reason":"customer left"}`},
	{"close-nonzero", 6, `{"account_id":"a","reason":"customer left"}`},
	{"close-missing-id", 6, `{"reason":"x"}`},
	// Two-phase transfers.
	{"hold-valid", 3, `{"from_account_id":"a","to_account_id":"b","amount":"1","pending":true,"timeout_seconds":60}`},
	{"hold-default-timeout", 3, `{"from_account_id":"a","to_account_id":"b","amount":"1","pending":true}`},
	{"hold-timeout-zero", 3, `{"from_account_id":"a","to_account_id":"b","amount":"1","pending":true,"timeout_seconds":0}`},
	{"hold-timeout-fraction", 3, `{"from_account_id":"a","to_account_id":"b","amount":"1","pending":true,"timeout_seconds":1.5}`},
	{"hold-timeout-huge", 3, `{"from_account_id":"a","to_account_id":"b","amount":"1","pending":true,"timeout_seconds":1e30}`},
	{"hold-timeout-not-pending", 3, `{"from_account_id":"a","to_account_id":"b","amount":"1","pending":false,"timeout_seconds":5}`},
	{"hold-pending-string", 3, `{"from_account_id":"a","to_account_id":"b","amount":"1","pending":"true"}`},
	{"capture-valid", 7, `{"transfer_id":"00000000-0000-0000-0000-000000000000","amount":"0.50"}`},
	{"capture-full", 7, `{"transfer_id":"t-1"}`},
	{"capture-null-amount", 7, `{"transfer_id":"t-1","amount":null}`},
	{"capture-missing-id", 7, `{"amount":"1"}`},
	{"capture-reason", 7, `{"transfer_id":"t-1","reason":"x"}`},
	{"void-valid", 8, `{"transfer_id":"t-1","reason":"customer cancelled"}`},
	{"void-control-reason", 8, `{"transfer_id":"t-1","reason":"a\u0001b"}`},
	{"void-long-id", 8, `{"transfer_id":"` + strings.Repeat("t", 65) + `"}`},
	{"void-amount", 8, `{"transfer_id":"t-1","amount":"1"}`},
}

// decodeFuzzState is a small ledger for decoded commands to run against.
var decodeFuzzState = sync.OnceValue(func() *chronicle.MemState {
	s := chronicle.NewMemState()
	var cmds []chronicle.Command
	for _, a := range []struct{ id, cur, initial, limit string }{
		{"a", "USD", "100", "10"}, {"b", "USD", "", ""}, {"e", "EUR", "5", ""}, {"j", "JPY", "1000", ""}, {"x", "BHD", "1.5", ""},
	} {
		cmds = append(cmds, chronicle.Command{Type: chronicle.CmdCreateAccount, ID: chronicle.NewID(), AccountID: a.id,
			OwnerName: "Owner " + a.id, Currency: a.cur, InitialBalance: chronicle.Decimal(a.initial), OverdraftLimit: chronicle.Decimal(a.limit)})
	}
	res, err := s.Execute(chronicle.Batch{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Commands: cmds})
	if err != nil {
		panic(err)
	}
	for _, r := range res {
		if r.Err != nil {
			panic(r.Err)
		}
	}
	return s
})

// FuzzDecodeCommand: decodeCommand never panics; it fails only with a *chronicle.Error
// that maps to a 4xx; what it accepts passes Validate, survives a JSON round trip, and
// the state machine handles it without a fatal or internal error.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range decodeFuzzSeeds {
		f.Add(s.cmdType, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, cmdType byte, body []byte) {
		typ := fuzzCommandTypes[int(cmdType)%len(fuzzCommandTypes)]
		c, err := decodeCommand(typ, body, commandDefaults{})
		if err != nil {
			var e *chronicle.Error
			if !errors.As(err, &e) {
				t.Fatalf("decodeCommand(%s, %q): error %v is %T, not *chronicle.Error", typ, body, err, err)
			}
			if e.Kind == chronicle.KindInternal || httpStatus(e.Kind) < 400 || httpStatus(e.Kind) >= 500 {
				t.Fatalf("decodeCommand(%s, %q): error %+v maps to status %d", typ, body, e, httpStatus(e.Kind))
			}
			if e.Code == "" || e.Code == chronicle.CodeInternal || e.Message == "" {
				t.Fatalf("decodeCommand(%s, %q): error %+v lacks a code or message", typ, body, e)
			}
			// The HTTP layer reports errors through AsError; it must see the same error.
			if got := chronicle.AsError(err); got.Code != e.Code || got.Kind != e.Kind {
				t.Fatalf("AsError(%v) = %+v", err, got)
			}
			return
		}
		if c.Type != typ {
			t.Fatalf("decodeCommand(%s, %q): type %q", typ, body, c.Type)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("decodeCommand(%s, %q) = %+v, which fails Validate: %v", typ, body, c, err)
		}
		if c.ID != "" || c.IdempotencyKey != "" || c.RequestID != "" || c.CreatedBy != "" {
			t.Fatalf("decodeCommand(%s, %q) set metadata: %+v", typ, body, c)
		}

		// The decoded fields, written back as a request body, decode to the same command.
		fields := map[string]any{}
		for name, v := range map[string]string{
			"account_id": c.AccountID, "owner_name": c.OwnerName, "currency": c.Currency,
			"initial_balance": string(c.InitialBalance), "overdraft_limit": string(c.OverdraftLimit),
			"amount": string(c.Amount), "description": c.Description,
			"from_account_id": c.FromAccountID, "to_account_id": c.ToAccountID,
			"transfer_id": c.TransferID, "reason": c.Reason,
		} {
			if v != "" {
				fields[name] = v
			}
		}
		if c.Pending {
			fields["pending"] = true
		}
		if c.TimeoutSeconds != 0 {
			fields["timeout_seconds"] = c.TimeoutSeconds
		}
		again, err := json.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := decodeCommand(typ, again, commandDefaults{})
		if err != nil || !reflect.DeepEqual(c2, c) {
			t.Fatalf("decodeCommand(%s, %q) = %+v; re-encoded as %s it decodes to %+v, %v", typ, body, c, again, c2, err)
		}

		// The state machine takes it: any refusal is a client error, never a fatal one.
		c.ID = chronicle.NewID()
		st := decodeFuzzState()
		out, err := chronicle.Apply(st, st.Head, chronicle.Batch{Time: time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), Commands: []chronicle.Command{c}})
		if err != nil {
			t.Fatalf("Apply(%+v): %v", c, err)
		}
		if r := out.Results[0]; r.Err != nil {
			if r.Err.Kind == chronicle.KindInternal || httpStatus(r.Err.Kind) >= 500 || r.Err.Code == "" {
				t.Fatalf("Apply(%+v): refusal %+v maps to status %d", c, r.Err, httpStatus(r.Err.Kind))
			}
			if len(out.Events) != 0 {
				t.Fatalf("Apply(%+v): refused but wrote %d events", c, len(out.Events))
			}
		} else if len(out.Events) == 0 {
			t.Fatalf("Apply(%+v): succeeded without events", c)
		}
	})
}
