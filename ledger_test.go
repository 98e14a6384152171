package chronicle_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-ledger/chronicle"
)

// Helpers shared by ledger_test.go, ledger_prop_test.go and event_test.go.

// tb is what the helpers need of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// t0 is the base clock reading of the tests.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func newCreate(id, cur, initial, overdraft string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdCreateAccount, ID: chronicle.NewID(), AccountID: id,
		OwnerName: "Owner of " + id, Currency: cur, InitialBalance: chronicle.Decimal(initial),
		OverdraftLimit: chronicle.Decimal(overdraft)}
}

func newDeposit(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdDeposit, ID: chronicle.NewID(), AccountID: id, Amount: chronicle.Decimal(amount)}
}

func newWithdraw(id, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdWithdraw, ID: chronicle.NewID(), AccountID: id, Amount: chronicle.Decimal(amount)}
}

func newTransfer(from, to, amount string) chronicle.Command {
	return chronicle.Command{Type: chronicle.CmdTransfer, ID: chronicle.NewID(), FromAccountID: from, ToAccountID: to,
		Amount: chronicle.Decimal(amount)}
}

func withKey(c chronicle.Command, key string) chronicle.Command {
	c.IdempotencyKey = key
	return c
}

func withCurrency(c chronicle.Command, cur string) chronicle.Command {
	c.Currency = cur
	return c
}

// retry is c as a client's retry reaches the node: the same body, a fresh command id.
func retry(c chronicle.Command) chronicle.Command {
	c.ID = chronicle.NewID()
	return c
}

// execAt runs one batch at clock reading tm and fails the test on a fatal error.
func execAt(t tb, s *chronicle.MemState, tm time.Time, cmds ...chronicle.Command) []chronicle.Result {
	t.Helper()
	return execBatch(t, s, chronicle.Batch{Time: tm, Commands: cmds})
}

func execBatch(t tb, s *chronicle.MemState, b chronicle.Batch) []chronicle.Result {
	t.Helper()
	res, err := s.Execute(b)
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if len(res) != len(b.Commands) {
		t.Fatalf("Execute returned %d results for %d commands", len(res), len(b.Commands))
	}
	return res
}

// mustOK runs commands (one batch at tm) that must all succeed.
func mustOK(t tb, s *chronicle.MemState, tm time.Time, cmds ...chronicle.Command) []chronicle.Result {
	t.Helper()
	res := execAt(t, s, tm, cmds...)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("command %d (%s): %v", i, cmds[i].Type, r.Err)
		}
	}
	return res
}

func wantOK(t tb, r chronicle.Result) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("command refused: %v", r.Err)
	}
}

func wantRefused(t tb, r chronicle.Result, kind chronicle.Kind, code, field string) {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("command succeeded (position %d), want %s", r.Position, code)
	}
	if r.Err.Kind != kind || r.Err.Code != code || r.Err.Field != field {
		t.Fatalf("refused with %v (kind %d, field %q), want kind %d code %q field %q",
			r.Err, r.Err.Kind, r.Err.Field, kind, code, field)
	}
	if r.Err.Message == "" {
		t.Fatalf("error %s has no message", r.Err.Code)
	}
	if len(r.Events) != 0 || r.Position != 0 || r.Replayed || r.TransferID != "" {
		t.Fatalf("refused result carries effects: %+v", r)
	}
}

// dataText is an event's payload as the API shows it: amounts as decimal strings.
type dataText struct {
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
	Counterparty   string `json:"counterparty,omitempty"`
}

// eventData renders e as JSON and returns its payload as the API shows it.
func eventData(t tb, e chronicle.Event) dataText {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Data dataText `json:"event_data"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.Data
}

func balanceOf(t tb, s *chronicle.MemState, id string) int64 {
	t.Helper()
	a, ok := s.Accounts[id]
	if !ok {
		t.Fatalf("account %s does not exist", id)
	}
	return a.Balance
}

// cloneState deep-copies s so that one history can be continued two ways.
func cloneState(s *chronicle.MemState) *chronicle.MemState {
	c := chronicle.NewMemState()
	for k, v := range s.Accounts {
		c.Accounts[k] = v
	}
	for k, v := range s.Keys {
		c.Keys[k] = v
	}
	for k, v := range s.Holds {
		c.Holds[k] = v
	}
	c.Head = s.Head
	c.Log = append([]chronicle.Event(nil), s.Log...)
	return c
}

// snapshot is what a refused command must leave untouched.
type snapshot struct {
	accounts map[string]chronicle.Account
	keys     int
	head     chronicle.Head
	logLen   int
}

func snap(s *chronicle.MemState) snapshot {
	acc := map[string]chronicle.Account{}
	for k, v := range s.Accounts {
		acc[k] = v
	}
	return snapshot{accounts: acc, keys: len(s.Keys), head: s.Head, logLen: len(s.Log)}
}

func wantUnchanged(t tb, before snapshot, s *chronicle.MemState) {
	t.Helper()
	after := snap(s)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("state changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// ---------------------------------------------------------------------------------------
// create-account

func TestCreateAccount(t *testing.T) {
	type want struct {
		balance, overdraft int64
		currency           string
		external           int64 // balance of the currency's external account afterwards
		hasExternal        bool
		data               dataText // AccountID/OwnerName/Currency/amounts checked
	}
	type refusal struct {
		kind        chronicle.Kind
		code, field string
	}
	cases := []struct {
		name  string
		setup []chronicle.Command
		cmd   chronicle.Command
		want  *want
		err   *refusal
	}{
		{name: "no initial balance", cmd: newCreate("alice", "USD", "", ""),
			want: &want{currency: "USD", data: dataText{InitialBalance: "0.00", BalanceAfter: "0.00"}}},
		{name: "zero initial balance", cmd: newCreate("alice", "USD", "0", ""),
			want: &want{currency: "USD", data: dataText{InitialBalance: "0.00", BalanceAfter: "0.00"}}},
		{name: "initial balance", cmd: newCreate("alice", "USD", "100.5", ""),
			want: &want{balance: 10050, currency: "USD", external: -10050, hasExternal: true,
				data: dataText{InitialBalance: "100.50", BalanceAfter: "100.50", Counterparty: "@world:USD"}}},
		{name: "initial balance with zero padding", cmd: newCreate("alice", "USD", "1.230", ""),
			want: &want{balance: 123, currency: "USD", external: -123, hasExternal: true,
				data: dataText{InitialBalance: "1.23", BalanceAfter: "1.23", Counterparty: "@world:USD"}}},
		{name: "overdraft limit", cmd: newCreate("alice", "USD", "", "50"),
			want: &want{overdraft: 5000, currency: "USD",
				data: dataText{InitialBalance: "0.00", BalanceAfter: "0.00", OverdraftLimit: "50.00"}}},
		{name: "initial balance and overdraft", cmd: newCreate("alice", "EUR", "20.00", "7.25"),
			want: &want{balance: 2000, overdraft: 725, currency: "EUR", external: -2000, hasExternal: true,
				data: dataText{InitialBalance: "20.00", BalanceAfter: "20.00", OverdraftLimit: "7.25", Counterparty: "@world:EUR"}}},
		{name: "lower-case currency", cmd: newCreate("alice", "eur", "1", ""),
			want: &want{balance: 100, currency: "EUR", external: -100, hasExternal: true,
				data: dataText{InitialBalance: "1.00", BalanceAfter: "1.00", Counterparty: "@world:EUR"}}},
		{name: "second account adds to the external account",
			setup: []chronicle.Command{newCreate("bob", "USD", "5", "")},
			cmd:   newCreate("alice", "USD", "10", ""),
			want: &want{balance: 1000, currency: "USD", external: -1500, hasExternal: true,
				data: dataText{InitialBalance: "10.00", BalanceAfter: "10.00", Counterparty: "@world:USD"}}},
		{name: "JPY", cmd: newCreate("alice", "JPY", "1000", "500"),
			want: &want{balance: 1000, overdraft: 500, currency: "JPY", external: -1000, hasExternal: true,
				data: dataText{InitialBalance: "1000", BalanceAfter: "1000", OverdraftLimit: "500", Counterparty: "@world:JPY"}}},
		{name: "BHD", cmd: newCreate("alice", "BHD", "1.5", "0.001"),
			want: &want{balance: 1500, overdraft: 1, currency: "BHD", external: -1500, hasExternal: true,
				data: dataText{InitialBalance: "1.500", BalanceAfter: "1.500", OverdraftLimit: "0.001", Counterparty: "@world:BHD"}}},

		{name: "duplicate", setup: []chronicle.Command{newCreate("alice", "USD", "1", "")},
			cmd: newCreate("alice", "USD", "1", ""),
			err: &refusal{chronicle.KindConflict, chronicle.CodeAccountExists, "account_id"}},
		{name: "duplicate in another currency", setup: []chronicle.Command{newCreate("alice", "USD", "", "")},
			cmd: newCreate("alice", "EUR", "", ""),
			err: &refusal{chronicle.KindConflict, chronicle.CodeAccountExists, "account_id"}},
		{name: "unknown currency", cmd: newCreate("alice", "ABC", "", ""),
			err: &refusal{chronicle.KindRejected, chronicle.CodeUnknownCurrency, "currency"}},
		{name: "malformed currency", cmd: newCreate("alice", "US", "", ""),
			err: &refusal{chronicle.KindRejected, chronicle.CodeUnknownCurrency, "currency"}},
		{name: "missing currency", cmd: newCreate("alice", "", "", ""),
			err: &refusal{chronicle.KindMalformed, chronicle.CodeMissingField, "currency"}},
		{name: "negative initial balance", cmd: newCreate("alice", "USD", "-1", ""),
			err: &refusal{chronicle.KindRejected, chronicle.CodeInvalidAmount, "initial_balance"}},
		{name: "too many decimals", cmd: newCreate("alice", "USD", "1.234", ""),
			err: &refusal{chronicle.KindRejected, chronicle.CodeInvalidAmount, "initial_balance"}},
		{name: "decimals on JPY", cmd: newCreate("alice", "JPY", "1.5", ""),
			err: &refusal{chronicle.KindRejected, chronicle.CodeInvalidAmount, "initial_balance"}},
		{name: "too many decimals on BHD", cmd: newCreate("alice", "BHD", "0.0001", ""),
			err: &refusal{chronicle.KindRejected, chronicle.CodeInvalidAmount, "initial_balance"}},
		{name: "initial balance out of range", cmd: newCreate("alice", "USD", "99999999999999999999", ""),
			err: &refusal{chronicle.KindRejected, chronicle.CodeInvalidAmount, "initial_balance"}},
		{name: "initial balance not a number", cmd: newCreate("alice", "USD", "1e3", ""),
			err: &refusal{chronicle.KindRejected, chronicle.CodeInvalidAmount, "initial_balance"}},
		{name: "negative overdraft", cmd: newCreate("alice", "USD", "", "-0.01"),
			err: &refusal{chronicle.KindRejected, chronicle.CodeInvalidAmount, "overdraft_limit"}},
		{name: "overdraft with too many decimals", cmd: newCreate("alice", "USD", "", "0.001"),
			err: &refusal{chronicle.KindRejected, chronicle.CodeInvalidAmount, "overdraft_limit"}},
		{name: "missing owner", cmd: func() chronicle.Command { c := newCreate("alice", "USD", "", ""); c.OwnerName = ""; return c }(),
			err: &refusal{chronicle.KindMalformed, chronicle.CodeMissingField, "owner_name"}},
		{name: "blank owner", cmd: func() chronicle.Command { c := newCreate("alice", "USD", "", ""); c.OwnerName = "  "; return c }(),
			err: &refusal{chronicle.KindMalformed, chronicle.CodeInvalidField, "owner_name"}},
		{name: "missing account id", cmd: newCreate("", "USD", "", ""),
			err: &refusal{chronicle.KindMalformed, chronicle.CodeMissingField, "account_id"}},
		{name: "invalid account id", cmd: newCreate("al ice", "USD", "", ""),
			err: &refusal{chronicle.KindMalformed, chronicle.CodeInvalidAccountID, "account_id"}},
		{name: "external account id", cmd: newCreate("@world:USD", "USD", "", ""),
			err: &refusal{chronicle.KindMalformed, chronicle.CodeInvalidAccountID, "account_id"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := chronicle.NewMemState()
			if len(tc.setup) > 0 {
				mustOK(t, s, t0, tc.setup...)
			}
			before := snap(s)
			tm := t0.Add(time.Minute)
			r := execAt(t, s, tm, tc.cmd)[0]
			if tc.err != nil {
				wantRefused(t, r, tc.err.kind, tc.err.code, tc.err.field)
				wantUnchanged(t, before, s)
				return
			}
			wantOK(t, r)
			w := tc.want
			a := s.Accounts["alice"]
			wantAcc := chronicle.Account{ID: "alice", OwnerName: "Owner of alice", Currency: w.currency, Balance: w.balance,
				OverdraftLimit: w.overdraft, Status: chronicle.StatusActive, CreatedAt: tm, LastUpdated: tm, Version: 1}
			if !reflect.DeepEqual(a, wantAcc) {
				t.Fatalf("account = %+v\nwant      %+v", a, wantAcc)
			}
			ext, ok := s.Accounts[chronicle.ExternalAccountID(w.currency)]
			if ok != w.hasExternal || ext.Balance != w.external {
				t.Fatalf("external account: present %v balance %d, want present %v balance %d", ok, ext.Balance, w.hasExternal, w.external)
			}
			if len(r.Events) != 1 {
				t.Fatalf("%d events, want 1", len(r.Events))
			}
			e := r.Events[0]
			if e.EventType != chronicle.EventAccountCreated || e.AggregateID != "alice" || e.AggregateType != chronicle.AggregateAccount ||
				e.EventVersion != 1 || !e.CreatedAt.Equal(tm) || e.Position != before.head.Position+1 || r.Position != e.Position {
				t.Fatalf("event %+v", e)
			}
			if e.Metadata["command_id"] != tc.cmd.ID {
				t.Fatalf("metadata %v, want command_id %s", e.Metadata, tc.cmd.ID)
			}
			wantData := w.data
			wantData.AccountID, wantData.OwnerName, wantData.Currency = "alice", "Owner of alice", w.currency
			if d := eventData(t, e); d != wantData {
				t.Fatalf("event data = %+v\nwant         %+v", d, wantData)
			}
			if !reflect.DeepEqual(s.Log[len(s.Log)-1], e) || s.Head.Position != e.Position || s.Head.Hash != e.Hash {
				t.Fatalf("log/head do not end with the result's event")
			}
		})
	}
}

// ---------------------------------------------------------------------------------------
// deposit and withdraw

// moneySetup: "usd" holds 100.00, "od" holds 0.00 with a 50.00 overdraft limit, "eur"
// holds 10.00 EUR.
func moneySetup(t *testing.T) *chronicle.MemState {
	s := chronicle.NewMemState()
	mustOK(t, s, t0,
		newCreate("usd", "USD", "100", ""),
		newCreate("od", "USD", "", "50.00"),
		newCreate("eur", "EUR", "10", ""))
	return s
}

func TestDepositWithdraw(t *testing.T) {
	cases := []struct {
		name    string
		setup   []chronicle.Command // run after moneySetup, must succeed
		cmd     chronicle.Command
		account string
		balance int64  // of account afterwards
		data    string // amount/balance_after of the event, "amount balance_after"
		kind    chronicle.Kind
		code    string // refusal
		field   string
	}{
		{name: "deposit", cmd: newDeposit("usd", "12.34"), account: "usd", balance: 11234, data: "12.34 112.34"},
		{name: "deposit integer amount", cmd: newDeposit("od", "7"), account: "od", balance: 700, data: "7.00 7.00"},
		{name: "deposit with matching currency", cmd: withCurrency(newDeposit("usd", "1"), "USD"), account: "usd", balance: 10100, data: "1.00 101.00"},
		{name: "deposit with lower-case currency", cmd: withCurrency(newDeposit("usd", "1"), "usd"), account: "usd", balance: 10100, data: "1.00 101.00"},
		{name: "withdraw", cmd: newWithdraw("usd", "0.01"), account: "usd", balance: 9999, data: "0.01 99.99"},
		{name: "withdraw everything", cmd: newWithdraw("usd", "100.00"), account: "usd", balance: 0, data: "100.00 0.00"},
		{name: "withdraw to the overdraft limit", cmd: newWithdraw("od", "50.00"), account: "od", balance: -5000, data: "50.00 -50.00"},
		{name: "withdraw into the overdraft", cmd: newWithdraw("od", "0.05"), account: "od", balance: -5, data: "0.05 -0.05"},
		{name: "withdraw to the limit in steps", setup: []chronicle.Command{newWithdraw("od", "49.99")},
			cmd: newWithdraw("od", "0.01"), account: "od", balance: -5000, data: "0.01 -50.00"},

		{name: "deposit unknown account", cmd: newDeposit("nobody", "1"),
			kind: chronicle.KindNotFound, code: chronicle.CodeAccountNotFound, field: "account_id"},
		{name: "withdraw unknown account", cmd: newWithdraw("nobody", "1"),
			kind: chronicle.KindNotFound, code: chronicle.CodeAccountNotFound, field: "account_id"},
		{name: "deposit to an external account", cmd: newDeposit("@world:USD", "1"),
			kind: chronicle.KindMalformed, code: chronicle.CodeInvalidAccountID, field: "account_id"},
		{name: "deposit currency mismatch", cmd: withCurrency(newDeposit("usd", "1"), "EUR"),
			kind: chronicle.KindRejected, code: chronicle.CodeCurrencyMismatch, field: "currency"},
		{name: "withdraw currency mismatch", cmd: withCurrency(newWithdraw("eur", "1"), "USD"),
			kind: chronicle.KindRejected, code: chronicle.CodeCurrencyMismatch, field: "currency"},
		{name: "deposit unknown currency", cmd: withCurrency(newDeposit("usd", "1"), "ZZZ"),
			kind: chronicle.KindRejected, code: chronicle.CodeUnknownCurrency, field: "currency"},
		{name: "deposit zero", cmd: newDeposit("usd", "0"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "deposit zero with decimals", cmd: newDeposit("usd", "0.00"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "deposit negative", cmd: newDeposit("usd", "-1"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "withdraw negative", cmd: newWithdraw("usd", "-0.01"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "withdraw zero", cmd: newWithdraw("usd", "0"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "deposit too many decimals", cmd: newDeposit("usd", "1.001"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "deposit below the minor unit", cmd: newDeposit("usd", "0.001"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "deposit out of range", cmd: newDeposit("usd", "99999999999999999999"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "deposit missing amount", cmd: newDeposit("usd", ""),
			kind: chronicle.KindMalformed, code: chronicle.CodeMissingField, field: "amount"},
		{name: "deposit exponent form", cmd: newDeposit("usd", "1e3"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		// The external account is at -100.00 already, so it cannot take this much.
		{name: "deposit overflowing the external account", cmd: newDeposit("od", "92233720368547758.00"),
			kind: chronicle.KindRejected, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "withdraw past the overdraft limit", cmd: newWithdraw("od", "50.01"),
			kind: chronicle.KindRejected, code: chronicle.CodeInsufficientFunds, field: "amount"},
		{name: "withdraw past the limit in steps", setup: []chronicle.Command{newWithdraw("od", "50.00")},
			cmd:  newWithdraw("od", "0.01"),
			kind: chronicle.KindRejected, code: chronicle.CodeInsufficientFunds, field: "amount"},
		{name: "withdraw more than the balance", cmd: newWithdraw("usd", "100.01"),
			kind: chronicle.KindRejected, code: chronicle.CodeInsufficientFunds, field: "amount"},
		{name: "withdraw from an empty account", setup: []chronicle.Command{newWithdraw("usd", "100")},
			cmd:  newWithdraw("usd", "0.01"),
			kind: chronicle.KindRejected, code: chronicle.CodeInsufficientFunds, field: "amount"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := moneySetup(t)
			if len(tc.setup) > 0 {
				mustOK(t, s, t0.Add(time.Second), tc.setup...)
			}
			before := snap(s)
			tm := t0.Add(time.Minute)
			r := execAt(t, s, tm, tc.cmd)[0]
			if tc.code != "" {
				wantRefused(t, r, tc.kind, tc.code, tc.field)
				wantUnchanged(t, before, s)
				return
			}
			wantOK(t, r)
			acc := s.Accounts[tc.account]
			if acc.Balance != tc.balance {
				t.Fatalf("balance %d, want %d", acc.Balance, tc.balance)
			}
			old := before.accounts[tc.account]
			delta := acc.Balance - old.Balance
			ext := chronicle.ExternalAccountID(acc.Currency)
			if got := s.Accounts[ext].Balance - before.accounts[ext].Balance; got != -delta {
				t.Fatalf("external account moved by %d, account by %d", got, delta)
			}
			if acc.Version != old.Version+1 || !acc.LastUpdated.Equal(tm) {
				t.Fatalf("account %+v after %+v", acc, old)
			}
			if len(r.Events) != 1 || len(s.Log) != before.logLen+1 {
				t.Fatalf("%d events, log grew by %d; want 1", len(r.Events), len(s.Log)-before.logLen)
			}
			e := r.Events[0]
			wantType := chronicle.EventMoneyDeposited
			if tc.cmd.Type == chronicle.CmdWithdraw {
				wantType = chronicle.EventMoneyWithdrawn
			}
			if e.EventType != wantType || e.AggregateID != tc.account || e.EventVersion != acc.Version ||
				e.Position != before.head.Position+1 || !e.CreatedAt.Equal(tm) {
				t.Fatalf("event %+v", e)
			}
			d := eventData(t, e)
			if got := d.Amount + " " + d.BalanceAfter; got != tc.data {
				t.Fatalf("amount/balance_after %q, want %q", got, tc.data)
			}
			if d.AccountID != tc.account || d.Currency != acc.Currency || d.Counterparty != ext || d.TransferID != "" {
				t.Fatalf("event data %+v", d)
			}
		})
	}
}

// ---------------------------------------------------------------------------------------
// transfer

func TestTransfer(t *testing.T) {
	setup := func(t *testing.T) *chronicle.MemState {
		s := chronicle.NewMemState()
		mustOK(t, s, t0,
			newCreate("a", "USD", "100", ""),
			newCreate("b", "USD", "5", ""),
			newCreate("c", "USD", "", "20"),
			newCreate("e", "EUR", "100", ""),
			newCreate("big", "USD", "", "92233720368547758.07"))
		return s
	}
	refusals := []struct {
		name  string
		cmd   chronicle.Command
		kind  chronicle.Kind
		code  string
		field string
	}{
		{"same account", newTransfer("a", "a", "1"), chronicle.KindRejected, chronicle.CodeSameAccount, "to_account_id"},
		{"currency mismatch between accounts", newTransfer("a", "e", "1"), chronicle.KindRejected, chronicle.CodeCurrencyMismatch, "to_account_id"},
		{"currency mismatch EUR to USD", newTransfer("e", "a", "1"), chronicle.KindRejected, chronicle.CodeCurrencyMismatch, "to_account_id"},
		{"currency field mismatch", withCurrency(newTransfer("a", "b", "1"), "EUR"), chronicle.KindRejected, chronicle.CodeCurrencyMismatch, "currency"},
		{"unknown from", newTransfer("x", "a", "1"), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "from_account_id"},
		{"unknown to", newTransfer("a", "x", "1"), chronicle.KindNotFound, chronicle.CodeAccountNotFound, "to_account_id"},
		{"missing to", newTransfer("a", "", "1"), chronicle.KindMalformed, chronicle.CodeMissingField, "to_account_id"},
		{"insufficient funds", newTransfer("b", "a", "5.01"), chronicle.KindRejected, chronicle.CodeInsufficientFunds, "from_account_id"},
		{"past the overdraft limit", newTransfer("c", "a", "20.01"), chronicle.KindRejected, chronicle.CodeInsufficientFunds, "from_account_id"},
		{"zero amount", newTransfer("a", "b", "0"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"negative amount", newTransfer("a", "b", "-1"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"too many decimals", newTransfer("a", "b", "0.015"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"out of range", newTransfer("a", "b", "99999999999999999999"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
		{"overflows the receiving balance", newTransfer("big", "a", "92233720368547758.07"), chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			before := snap(s)
			r := execAt(t, s, t0.Add(time.Minute), tc.cmd)[0]
			wantRefused(t, r, tc.kind, tc.code, tc.field)
			wantUnchanged(t, before, s)
		})
	}

	t.Run("success", func(t *testing.T) {
		s := setup(t)
		before := snap(s)
		tm := t0.Add(time.Minute)
		cmd := newTransfer("a", "b", "30.25")
		r := execAt(t, s, tm, cmd)[0]
		wantOK(t, r)
		if balanceOf(t, s, "a") != 6975 || balanceOf(t, s, "b") != 3525 {
			t.Fatalf("balances a=%d b=%d", balanceOf(t, s, "a"), balanceOf(t, s, "b"))
		}
		if s.Accounts["@world:USD"] != before.accounts["@world:USD"] {
			t.Fatalf("a transfer moved the external account")
		}
		if len(r.Events) != 2 || len(s.Log) != before.logLen+2 {
			t.Fatalf("%d events, want 2", len(r.Events))
		}
		w, d := r.Events[0], r.Events[1]
		if w.EventType != chronicle.EventMoneyWithdrawn || w.AggregateID != "a" ||
			d.EventType != chronicle.EventMoneyDeposited || d.AggregateID != "b" {
			t.Fatalf("events %s/%s then %s/%s", w.EventType, w.AggregateID, d.EventType, d.AggregateID)
		}
		p := before.head.Position
		if w.Position != p+1 || d.Position != p+2 || r.Position != p+2 || d.PrevHash != w.Hash || w.PrevHash != before.head.Hash {
			t.Fatalf("positions %d %d (result %d), want %d %d", w.Position, d.Position, r.Position, p+1, p+2)
		}
		if !w.CreatedAt.Equal(tm) || !d.CreatedAt.Equal(tm) || !r.CommitTime.Equal(tm) {
			t.Fatalf("created_at %v %v, commit time %v, want %v", w.CreatedAt, d.CreatedAt, r.CommitTime, tm)
		}
		if w.EventVersion != 2 || d.EventVersion != 2 || s.Accounts["a"].Version != 2 || s.Accounts["b"].Version != 2 {
			t.Fatalf("versions %d %d", w.EventVersion, d.EventVersion)
		}
		if w.EventID == d.EventID || w.EventID == r.TransferID || d.EventID == r.TransferID {
			t.Fatalf("ids not distinct: %s %s %s", w.EventID, d.EventID, r.TransferID)
		}
		wd, dd := eventData(t, w), eventData(t, d)
		wantW := dataText{AccountID: "a", Currency: "USD", Amount: "30.25", BalanceAfter: "69.75",
			TransferID: r.TransferID, FromAccountID: "a", ToAccountID: "b", Counterparty: "b"}
		wantD := dataText{AccountID: "b", Currency: "USD", Amount: "30.25", BalanceAfter: "35.25",
			TransferID: r.TransferID, FromAccountID: "a", ToAccountID: "b", Counterparty: "a"}
		if r.TransferID == "" || wd != wantW || dd != wantD {
			t.Fatalf("event data\n%+v\n%+v\nwant\n%+v\n%+v", wd, dd, wantW, wantD)
		}
	})

	t.Run("into the overdraft and back", func(t *testing.T) {
		s := setup(t)
		r := mustOK(t, s, t0.Add(time.Minute), newTransfer("c", "b", "20.00"), withCurrency(newTransfer("b", "c", "0.01"), "usd"))
		if balanceOf(t, s, "c") != -1999 || balanceOf(t, s, "b") != 2499 {
			t.Fatalf("balances c=%d b=%d", balanceOf(t, s, "c"), balanceOf(t, s, "b"))
		}
		if got := eventData(t, r[0].Events[0]).BalanceAfter; got != "-20.00" {
			t.Fatalf("balance_after %s", got)
		}
		if r[0].TransferID == r[1].TransferID {
			t.Fatalf("two transfers share transfer id %s", r[0].TransferID)
		}
	})

	t.Run("insufficient funds after an earlier transfer in the batch", func(t *testing.T) {
		s := setup(t)
		before := snap(s)
		res := execAt(t, s, t0.Add(time.Minute), newTransfer("b", "a", "5"), newTransfer("b", "a", "0.01"))
		wantOK(t, res[0])
		wantRefused(t, res[1], chronicle.KindRejected, chronicle.CodeInsufficientFunds, "from_account_id")
		if balanceOf(t, s, "b") != 0 || balanceOf(t, s, "a") != 10500 || len(s.Log) != before.logLen+2 {
			t.Fatalf("balances a=%d b=%d, %d new events", balanceOf(t, s, "a"), balanceOf(t, s, "b"), len(s.Log)-before.logLen)
		}
	})
}

// ---------------------------------------------------------------------------------------
// batches

func TestRefusedCommandMidBatchAffectsNothingElse(t *testing.T) {
	setup := []chronicle.Command{newCreate("a", "USD", "10", ""), newCreate("b", "USD", "", ""), newCreate("e", "EUR", "", "")}
	good := []chronicle.Command{newDeposit("a", "1"), newTransfer("a", "b", "11"), newCreate("c", "JPY", "5", ""), newWithdraw("b", "3")}
	bad := []chronicle.Command{
		newWithdraw("a", "1000"),        // insufficient
		newTransfer("a", "a", "1"),      // same account
		newTransfer("a", "e", "1"),      // currency mismatch
		newCreate("a", "USD", "1", ""),  // exists
		newDeposit("zzz", "1"),          // not found
		newDeposit("a", "0.001"),        // precision
		newCreate("d", "QQQ", "", ""),   // currency
		newTransfer("b", "a", "100000"), // insufficient in the middle of a transfer chain
	}
	mixed := []chronicle.Command{bad[0], good[0], bad[1], bad[2], good[1], bad[3], bad[4], good[2], bad[5], bad[6], bad[7], good[3]}

	withBad := chronicle.NewMemState()
	mustOK(t, withBad, t0, setup...)
	without := cloneState(withBad)

	res := execAt(t, withBad, t0.Add(time.Second), mixed...)
	execAt(t, without, t0.Add(time.Second), good...)

	var oks []chronicle.Result
	for i, r := range res {
		isGood := false
		for _, g := range good {
			if g.ID == mixed[i].ID {
				isGood = true
			}
		}
		if isGood != (r.Err == nil) {
			t.Fatalf("command %d (%s): err %v", i, mixed[i].Type, r.Err)
		}
		if r.Err == nil {
			oks = append(oks, r)
		}
	}
	if !reflect.DeepEqual(withBad.Log, without.Log) {
		t.Fatalf("refused commands changed the log")
	}
	if !reflect.DeepEqual(withBad.Accounts, without.Accounts) || withBad.Head != without.Head {
		t.Fatalf("refused commands changed the accounts or head")
	}
	// The successful commands got consecutive positions and strictly increasing times.
	pos := uint64(len(setup))
	var last time.Time
	for _, r := range oks {
		for _, e := range r.Events {
			pos++
			if e.Position != pos {
				t.Fatalf("position %d, want %d", e.Position, pos)
			}
		}
		if !r.CommitTime.After(last) {
			t.Fatalf("commit time %v not after %v", r.CommitTime, last)
		}
		last = r.CommitTime
	}
	if balanceOf(t, withBad, "a") != 0 || balanceOf(t, withBad, "b") != 800 || balanceOf(t, withBad, "c") != 5 {
		t.Fatalf("balances %+v", withBad.Accounts)
	}
}

func TestBatchTooLarge(t *testing.T) {
	s := chronicle.NewMemState()
	cmds := make([]chronicle.Command, chronicle.MaxBatchCommands+1)
	for i := range cmds {
		cmds[i] = newDeposit("a", "1")
	}
	if _, err := s.Execute(chronicle.Batch{Time: t0, Commands: cmds}); err == nil {
		t.Fatal("a batch over MaxBatchCommands was accepted")
	}
	if len(s.Log) != 0 || s.Head != chronicle.GenesisHead() {
		t.Fatal("a refused batch changed the state")
	}
}

// ---------------------------------------------------------------------------------------
// idempotency

func TestIdempotency(t *testing.T) {
	setup := func(t *testing.T) *chronicle.MemState {
		s := chronicle.NewMemState()
		mustOK(t, s, t0, newCreate("a", "USD", "100", ""), newCreate("b", "USD", "", ""))
		return s
	}
	wantReplay := func(t *testing.T, got, orig chronicle.Result) {
		t.Helper()
		wantOK(t, got)
		if !got.Replayed || orig.Replayed {
			t.Fatalf("replayed = %v (original %v)", got.Replayed, orig.Replayed)
		}
		got.Replayed = false
		if !reflect.DeepEqual(got, orig) {
			t.Fatalf("replayed result\n%+v\nwant\n%+v", got, orig)
		}
	}

	t.Run("same batch", func(t *testing.T) {
		s := setup(t)
		c := withKey(newTransfer("a", "b", "10"), "key-1")
		res := execAt(t, s, t0.Add(time.Second), c, retry(c), retry(c))
		wantOK(t, res[0])
		wantReplay(t, res[1], res[0])
		wantReplay(t, res[2], res[0])
		if len(s.Log) != 4 || balanceOf(t, s, "a") != 9000 || balanceOf(t, s, "b") != 1000 {
			t.Fatalf("log %d events, a=%d b=%d", len(s.Log), balanceOf(t, s, "a"), balanceOf(t, s, "b"))
		}
	})

	t.Run("across batches", func(t *testing.T) {
		s := setup(t)
		c := withKey(newDeposit("a", "10"), "key-1")
		orig := mustOK(t, s, t0.Add(time.Second), c)[0]
		before := snap(s)
		again := retry(c)
		again.RequestID, again.CreatedBy = "another-request", "someone" // metadata is not the body
		r := execAt(t, s, t0.Add(time.Minute), again)[0]
		wantReplay(t, r, orig)
		wantUnchanged(t, before, s)
		// A clock that went backwards changes nothing either.
		r = execAt(t, s, t0.Add(-time.Hour), retry(c))[0]
		wantReplay(t, r, orig)
		wantUnchanged(t, before, s)
	})

	t.Run("create-account replay is not account_exists", func(t *testing.T) {
		s := setup(t)
		c := withKey(newCreate("n", "JPY", "10", ""), "create-n")
		orig := mustOK(t, s, t0.Add(time.Second), c)[0]
		wantReplay(t, execAt(t, s, t0.Add(2*time.Second), retry(c))[0], orig)
		wantRefused(t, execAt(t, s, t0.Add(3*time.Second), retry(withKey(c, "")))[0],
			chronicle.KindConflict, chronicle.CodeAccountExists, "account_id")
	})

	t.Run("different body", func(t *testing.T) {
		for name, other := range map[string]chronicle.Command{
			"amount":   withKey(newDeposit("a", "11"), "key-1"),
			"type":     withKey(newWithdraw("a", "10"), "key-1"),
			"account":  withKey(newDeposit("b", "10"), "key-1"),
			"currency": withKey(withCurrency(newDeposit("a", "10"), "USD"), "key-1"),
		} {
			t.Run(name, func(t *testing.T) {
				s := setup(t)
				c := withKey(newDeposit("a", "10"), "key-1")
				res := execAt(t, s, t0.Add(time.Second), c, other)
				wantOK(t, res[0])
				wantRefused(t, res[1], chronicle.KindRejected, chronicle.CodeIdempotencyMismatch, "Idempotency-Key")
				before := snap(s)
				wantRefused(t, execAt(t, s, t0.Add(time.Minute), retry(other))[0],
					chronicle.KindRejected, chronicle.CodeIdempotencyMismatch, "Idempotency-Key")
				wantUnchanged(t, before, s)
			})
		}
	})

	t.Run("window", func(t *testing.T) {
		s := setup(t)
		const window = time.Hour
		c := withKey(newDeposit("a", "10"), "key-1")
		t1 := t0.Add(time.Second)
		orig := execBatch(t, s, chronicle.Batch{Time: t1, IdempotencyWindow: window, Commands: []chronicle.Command{c}})[0]
		wantOK(t, orig)

		// At exactly the window's end the key still holds.
		r := execBatch(t, s, chronicle.Batch{Time: t1.Add(window), IdempotencyWindow: window, Commands: []chronicle.Command{retry(c)}})[0]
		wantReplay(t, r, orig)
		r = execBatch(t, s, chronicle.Batch{Time: t1.Add(window), IdempotencyWindow: window,
			Commands: []chronicle.Command{withKey(newDeposit("a", "99"), "key-1")}})[0]
		wantRefused(t, r, chronicle.KindRejected, chronicle.CodeIdempotencyMismatch, "Idempotency-Key")

		// One nanosecond later it has expired: the same body runs again as a new command.
		t2 := t1.Add(window + time.Nanosecond)
		c2 := retry(c)
		r2 := execBatch(t, s, chronicle.Batch{Time: t2, IdempotencyWindow: window, Commands: []chronicle.Command{c2}})[0]
		wantOK(t, r2)
		if r2.Replayed || r2.Position == orig.Position || !r2.CommitTime.Equal(t2) || balanceOf(t, s, "a") != 12000 {
			t.Fatalf("after the window: %+v, balance %d", r2, balanceOf(t, s, "a"))
		}
		// The key now remembers the new command.
		r = execBatch(t, s, chronicle.Batch{Time: t2.Add(time.Minute), IdempotencyWindow: window, Commands: []chronicle.Command{retry(c)}})[0]
		wantReplay(t, r, r2)

		// After the window a different body is accepted too.
		t3 := t2.Add(2 * window)
		r3 := execBatch(t, s, chronicle.Batch{Time: t3, IdempotencyWindow: window,
			Commands: []chronicle.Command{withKey(newWithdraw("a", "1"), "key-1")}})[0]
		wantOK(t, r3)
		if r3.Replayed || balanceOf(t, s, "a") != 11900 {
			t.Fatalf("different body after the window: %+v, balance %d", r3, balanceOf(t, s, "a"))
		}
	})

	t.Run("window expires within a batch", func(t *testing.T) {
		// The clock stepped back, so this batch's commands get commit times 1ns apart
		// right after the head; the key's record is from exactly window before the head.
		s := setup(t)
		const window = time.Minute
		c := withKey(newDeposit("a", "1"), "k")
		t1 := t0.Add(time.Second)
		orig := execBatch(t, s, chronicle.Batch{Time: t1, IdempotencyWindow: window, Commands: []chronicle.Command{c}})[0]
		wantOK(t, orig)
		mustOK(t, s, t1.Add(window-time.Nanosecond), newDeposit("b", "1"))
		res := execBatch(t, s, chronicle.Batch{Time: t0, IdempotencyWindow: window,
			Commands: []chronicle.Command{retry(c), newDeposit("b", "1"), retry(c), retry(c)}})
		wantReplay(t, res[0], orig) // commit time would be t1+window: not expired
		wantOK(t, res[1])           // commits at t1+window
		wantOK(t, res[2])           // would commit at t1+window+1ns: expired, runs again
		if res[2].Replayed || !res[2].CommitTime.Equal(t1.Add(window+time.Nanosecond)) {
			t.Fatalf("third command: %+v", res[2])
		}
		wantReplay(t, res[3], res[2])
	})

	t.Run("zero window keeps keys forever", func(t *testing.T) {
		s := setup(t)
		c := withKey(newDeposit("a", "10"), "key-1")
		orig := mustOK(t, s, t0.Add(time.Second), c)[0]
		r := execAt(t, s, t0.Add(100000*time.Hour), retry(c))[0]
		wantReplay(t, r, orig)
	})

	t.Run("keys are independent", func(t *testing.T) {
		s := setup(t)
		res := mustOK(t, s, t0.Add(time.Second), withKey(newDeposit("a", "1"), "k1"), withKey(newDeposit("a", "1"), "k2"))
		if res[0].Replayed || res[1].Replayed || balanceOf(t, s, "a") != 10200 {
			t.Fatalf("two keys: %+v, balance %d", res, balanceOf(t, s, "a"))
		}
	})

	t.Run("invalid command is refused before the key is looked at", func(t *testing.T) {
		s := setup(t)
		mustOK(t, s, t0.Add(time.Second), withKey(newDeposit("a", "1"), "k1"))
		r := execAt(t, s, t0.Add(2*time.Second), withKey(newDeposit("a", "-1"), "k1"))[0]
		wantRefused(t, r, chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount")
		r = execAt(t, s, t0.Add(2*time.Second), withKey(newDeposit("a", "1"), strings.Repeat("k", chronicle.MaxIdempotencyKeyLen+1)))[0]
		wantRefused(t, r, chronicle.KindMalformed, chronicle.CodeInvalidIdempotency, "Idempotency-Key")
	})
}

// ---------------------------------------------------------------------------------------
// commit times

func TestCommitTimesStrictlyIncrease(t *testing.T) {
	s := chronicle.NewMemState()
	mustOK(t, s, t0, newCreate("a", "USD", "100", ""), newCreate("b", "USD", "", ""))
	tA := t0.Add(10 * time.Second)
	batches := []struct {
		at   time.Time
		cmds []chronicle.Command
		want []time.Time // commit time of each command
	}{
		{tA, []chronicle.Command{newDeposit("a", "1"), newTransfer("a", "b", "2"), newWithdraw("b", "1")},
			[]time.Time{tA, tA.Add(1), tA.Add(2)}},
		// The clock stepped back: commit times continue right after the last.
		{t0, []chronicle.Command{newTransfer("b", "a", "1"), newDeposit("b", "1")},
			[]time.Time{tA.Add(3), tA.Add(4)}},
		// The same reading as the last commit.
		{tA.Add(4), []chronicle.Command{newDeposit("a", "1")}, []time.Time{tA.Add(5)}},
		// A refused command does not use up a commit time.
		{tA.Add(5), []chronicle.Command{newWithdraw("b", "1000"), newDeposit("a", "1")}, []time.Time{{}, tA.Add(6)}},
		// Forward again: the leader's clock.
		{tA.Add(time.Hour), []chronicle.Command{newDeposit("a", "1"), newTransfer("a", "b", "1")},
			[]time.Time{tA.Add(time.Hour), tA.Add(time.Hour + 1)}},
	}
	for bi, b := range batches {
		res := execAt(t, s, b.at, b.cmds...)
		for i, r := range res {
			if b.want[i].IsZero() {
				if r.Err == nil {
					t.Fatalf("batch %d command %d: want a refusal", bi, i)
				}
				continue
			}
			wantOK(t, r)
			if !r.CommitTime.Equal(b.want[i]) {
				t.Errorf("batch %d command %d: commit time %v, want %v", bi, i, r.CommitTime, b.want[i])
			}
			for _, e := range r.Events {
				if !e.CreatedAt.Equal(r.CommitTime) {
					t.Errorf("batch %d command %d: event %d created_at %v, commit time %v", bi, i, e.Position, e.CreatedAt, r.CommitTime)
				}
			}
		}
	}
	if !s.Head.CommitTime.Equal(tA.Add(time.Hour + 1)) {
		t.Fatalf("head commit time %v", s.Head.CommitTime)
	}
	// Over the whole log: non-decreasing, equal only within one command.
	for i := 1; i < len(s.Log); i++ {
		p, e := s.Log[i-1], s.Log[i]
		same := p.Metadata["command_id"] == e.Metadata["command_id"]
		if same && !e.CreatedAt.Equal(p.CreatedAt) || !same && !e.CreatedAt.After(p.CreatedAt) {
			t.Fatalf("positions %d, %d: created_at %v then %v (same command %v)", p.Position, e.Position, p.CreatedAt, e.CreatedAt, same)
		}
	}
}

func TestCommitTimeIsUTCWithoutMonotonicReading(t *testing.T) {
	s := chronicle.NewMemState()
	loc := time.FixedZone("UTC+5", 5*3600)
	now := time.Now().In(loc) // carries a monotonic reading and a zone
	r := mustOK(t, s, now, newCreate("a", "USD", "1", ""))[0]
	e := r.Events[0]
	if e.CreatedAt != now.UTC().Round(0) || r.CommitTime != e.CreatedAt || s.Head.CommitTime != e.CreatedAt {
		t.Fatalf("created_at %#v, want %#v", e.CreatedAt, now.UTC().Round(0))
	}
	// The same batch on another replica (no monotonic reading) gives the same events.
	s2 := chronicle.NewMemState()
	cmd := r.Events[0].Metadata["command_id"]
	c := newCreate("a", "USD", "1", "")
	c.ID = cmd
	mustOK(t, s2, now.Round(0).In(time.UTC), c)
	if !reflect.DeepEqual(s.Log, s2.Log) {
		t.Fatalf("events differ:\n%+v\n%+v", s.Log, s2.Log)
	}
}

// ---------------------------------------------------------------------------------------
// currencies with other exponents

func TestExponentsInEventsAndBalances(t *testing.T) {
	s := chronicle.NewMemState()
	res := mustOK(t, s, t0,
		newCreate("yen", "JPY", "1000", "300"),
		newCreate("yen2", "jpy", "", ""),
		newCreate("din", "BHD", "1.5", "1"),
		newCreate("din2", "BHD", "0.001", ""),
		newDeposit("yen", "250"),
		newDeposit("yen", "1.000"), // zeros past the exponent are fine
		newWithdraw("yen", "1500"),
		newTransfer("yen", "yen2", "51"),
		newDeposit("din", "0.001"),
		newWithdraw("din", "2.5"),
		newTransfer("din", "din2", "0.001"), // to exactly the overdraft limit
	)
	want := []struct{ amount, balanceAfter string }{
		{"", "1000"}, {"", "0"}, {"", "1.500"}, {"", "0.001"},
		{"250", "1250"}, {"1", "1251"}, {"1500", "-249"}, {"51", "-300"},
		{"0.001", "1.501"}, {"2.500", "-0.999"}, {"0.001", "-1.000"},
	}
	for i, r := range res {
		d := eventData(t, r.Events[0])
		if d.Amount != want[i].amount || d.BalanceAfter != want[i].balanceAfter {
			t.Errorf("command %d: amount %q balance_after %q, want %q %q", i, d.Amount, d.BalanceAfter, want[i].amount, want[i].balanceAfter)
		}
	}
	if d := eventData(t, res[0].Events[0]); d.InitialBalance != "1000" || d.OverdraftLimit != "300" || d.Currency != "JPY" {
		t.Errorf("JPY created: %+v", d)
	}
	if d := eventData(t, res[2].Events[0]); d.InitialBalance != "1.500" || d.OverdraftLimit != "1.000" || d.Currency != "BHD" {
		t.Errorf("BHD created: %+v", d)
	}
	if d := eventData(t, res[7].Events[1]); d.AccountID != "yen2" || d.BalanceAfter != "51" || d.Amount != "51" {
		t.Errorf("JPY transfer deposit: %+v", d)
	}
	if d := eventData(t, res[10].Events[1]); d.AccountID != "din2" || d.BalanceAfter != "0.002" {
		t.Errorf("BHD transfer deposit: %+v", d)
	}
	for id, bal := range map[string]int64{"yen": -300, "yen2": 51, "din": -1000, "din2": 2,
		"@world:JPY": -1000 - 250 - 1 + 1500, "@world:BHD": -1500 - 1 - 1 + 2500} {
		if got := balanceOf(t, s, id); got != bal {
			t.Errorf("%s: balance %d, want %d", id, got, bal)
		}
	}
	for cur, total := range s.Totals() {
		if total != 0 {
			t.Errorf("%s total %d", cur, total)
		}
	}
	// Both are at their overdraft limits now; one minor unit more is refused, and so is
	// any amount finer than the minor unit.
	rs := execAt(t, s, t0.Add(time.Second),
		newWithdraw("yen", "1"), newDeposit("yen", "0.5"), newWithdraw("din", "0.001"), newDeposit("din", "0.0005"),
		newTransfer("din", "din2", "0.001"))
	wantRefused(t, rs[0], chronicle.KindRejected, chronicle.CodeInsufficientFunds, "amount")
	wantRefused(t, rs[1], chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount")
	wantRefused(t, rs[2], chronicle.KindRejected, chronicle.CodeInsufficientFunds, "amount")
	wantRefused(t, rs[3], chronicle.KindRejected, chronicle.CodeInvalidAmount, "amount")
	wantRefused(t, rs[4], chronicle.KindRejected, chronicle.CodeInsufficientFunds, "from_account_id")
}

// ---------------------------------------------------------------------------------------
// determinism

func TestApplyIsDeterministic(t *testing.T) {
	batches := []chronicle.Batch{
		{Time: t0, Commands: []chronicle.Command{
			newCreate("a", "USD", "100", "10"), newCreate("b", "USD", "", ""), newCreate("y", "JPY", "5", ""),
			withKey(newDeposit("a", "1.5"), "k1")}},
		{Time: t0.Add(-time.Minute), IdempotencyWindow: time.Hour, Commands: []chronicle.Command{
			newTransfer("a", "b", "50"), newWithdraw("a", "1000"), withKey(newDeposit("a", "1.5"), "k1"),
			newWithdraw("y", "5"), newTransfer("b", "a", "0.01")}},
		{Time: t0.Add(time.Hour), Commands: []chronicle.Command{newDeposit("b", "3")}},
	}
	s1, s2 := chronicle.NewMemState(), chronicle.NewMemState()
	var res1, res2 [][]chronicle.Result
	for _, b := range batches {
		res1 = append(res1, execBatch(t, s1, b))
	}
	// The second replica gets the batches as they travel: through JSON.
	for _, b := range batches {
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var b2 chronicle.Batch
		if err := json.Unmarshal(raw, &b2); err != nil {
			t.Fatal(err)
		}
		res2 = append(res2, execBatch(t, s2, b2))
	}
	if !reflect.DeepEqual(s1.Log, s2.Log) {
		t.Fatalf("logs differ")
	}
	if s1.Head != s2.Head || !reflect.DeepEqual(s1.Accounts, s2.Accounts) || !reflect.DeepEqual(s1.Keys, s2.Keys) {
		t.Fatalf("states differ")
	}
	if !reflect.DeepEqual(res1, res2) {
		t.Fatalf("results differ")
	}
	// Event ids are distinct and derive from the command id.
	seen := map[string]bool{}
	for _, e := range s1.Log {
		if seen[e.EventID] || len(e.EventID) != 36 || e.EventID[14] != '8' {
			t.Fatalf("event id %q (duplicate %v)", e.EventID, seen[e.EventID])
		}
		seen[e.EventID] = true
	}
	// A different command id gives different event ids.
	s3 := chronicle.NewMemState()
	c := batches[0].Commands[0]
	c.ID = chronicle.NewID()
	r := mustOK(t, s3, t0, c)[0]
	if r.Events[0].EventID == s1.Log[0].EventID {
		t.Fatalf("event id does not depend on the command id")
	}
}
