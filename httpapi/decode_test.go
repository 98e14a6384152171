package httpapi

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

// decodeWantErr checks that err is a *chronicle.Error of the given code, field and status.
func decodeWantErr(t *testing.T, err error, status int, code, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	var e *chronicle.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is %T, want *chronicle.Error", err, err)
	}
	if e.Code != code || e.Field != field || httpStatus(e.Kind) != status {
		t.Fatalf("error %q: code %q field %q status %d, want code %q field %q status %d",
			e.Message, e.Code, e.Field, httpStatus(e.Kind), code, field, status)
	}
	if e.Message == "" {
		t.Fatalf("error %s has no message", e.Code)
	}
}

func TestDecodeCommand(t *testing.T) {
	const (
		create   = chronicle.CmdCreateAccount
		deposit  = chronicle.CmdDeposit
		withdraw = chronicle.CmdWithdraw
		transfer = chronicle.CmdTransfer
	)
	bad := http.StatusBadRequest
	unprocessable := http.StatusUnprocessableEntity
	cases := []struct {
		name   string
		typ    chronicle.CommandType
		body   string
		want   *chronicle.Command // on success
		status int
		code   string
		field  string
	}{
		// Success.
		{name: "create", typ: create,
			body: `{"account_id":"acc-1","owner_name":"Zoë Ω","currency":"USD","initial_balance":"100.50","overdraft_limit":25,"description":"first"}`,
			want: &chronicle.Command{Type: create, AccountID: "acc-1", OwnerName: "Zoë Ω", Currency: "USD",
				InitialBalance: "100.50", OverdraftLimit: "25", Description: "first"}},
		{name: "create minimal", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"jpy"}`,
			want: &chronicle.Command{Type: create, AccountID: "a", OwnerName: "A", Currency: "jpy"}},
		{name: "deposit number amount", typ: deposit, body: `{"account_id":"a","amount":12.5}`,
			want: &chronicle.Command{Type: deposit, AccountID: "a", Amount: "12.5"}},
		{name: "deposit string amount with currency", typ: deposit, body: ` {"account_id":"a","amount":"0.01","currency":"EUR"} ` + "\n",
			want: &chronicle.Command{Type: deposit, AccountID: "a", Amount: "0.01", Currency: "EUR"}},
		// Precision is the state machine's to check: it needs the account's currency.
		{name: "deposit amount with three decimals", typ: deposit, body: `{"account_id":"a","amount":"12.345"}`,
			want: &chronicle.Command{Type: deposit, AccountID: "a", Amount: "12.345"}},
		{name: "withdraw", typ: withdraw, body: `{"account_id":"a","amount":"007.50","description":"cash"}`,
			want: &chronicle.Command{Type: withdraw, AccountID: "a", Amount: "007.50", Description: "cash"}},
		{name: "transfer", typ: transfer, body: `{"from_account_id":"a","to_account_id":"b","amount":"1"}`,
			want: &chronicle.Command{Type: transfer, FromAccountID: "a", ToAccountID: "b", Amount: "1"}},
		// The original system's clients: a null initial balance (or overdraft) is none.
		{name: "create null initial balance", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"USD","initial_balance":null,"overdraft_limit":null}`,
			want: &chronicle.Command{Type: create, AccountID: "a", OwnerName: "A", Currency: "USD"}},
		{name: "null string field is absent", typ: transfer, body: `{"from_account_id":"a","to_account_id":"b","amount":"1","description":null}`,
			want: &chronicle.Command{Type: transfer, FromAccountID: "a", ToAccountID: "b", Amount: "1"}},

		// Not JSON, or not one object.
		{name: "empty body", typ: deposit, body: ``, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "blank body", typ: deposit, body: " \n\t", status: bad, code: chronicle.CodeInvalidJSON},
		{name: "syntax error", typ: deposit, body: `{"account_id":"a",}`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "truncated", typ: deposit, body: `{"account_id":"a","amount":`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "single quotes", typ: deposit, body: `{'account_id':'a'}`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "array body", typ: deposit, body: `[]`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "array of objects", typ: deposit, body: `[{"account_id":"a","amount":"1"}]`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "null body", typ: deposit, body: `null`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "string body", typ: deposit, body: `"hello"`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "number body", typ: deposit, body: `12`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "trailing object", typ: deposit, body: `{"account_id":"a","amount":"1"}{}`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "trailing garbage", typ: deposit, body: `{"account_id":"a","amount":"1"} x`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "trailing brace", typ: deposit, body: `{"account_id":"a","amount":"1"}}`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "trailing number", typ: deposit, body: `{"account_id":"a","amount":"1"} 1`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "nesting too deep", typ: deposit, body: `{"account_id":"a","amount":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
			status: bad, code: chronicle.CodeInvalidJSON},
		{name: "byte order mark", typ: deposit, body: "\xef\xbb\xbf" + `{"account_id":"a","amount":"1"}`, status: bad, code: chronicle.CodeInvalidJSON},
		{name: "trailing NUL", typ: deposit, body: `{"account_id":"a","amount":"1"}` + "\x00", status: bad, code: chronicle.CodeInvalidJSON},
		{name: "raw control character in a string", typ: create, body: "{\"account_id\":\"a\",\"owner_name\":\"A\x01\",\"currency\":\"USD\"}",
			status: bad, code: chronicle.CodeInvalidJSON},

		// Unknown fields.
		{name: "unknown field", typ: deposit, body: `{"account_id":"a","amount":"1","memo":"x"}`,
			status: bad, code: chronicle.CodeUnknownField, field: "memo"},
		{name: "field of another command", typ: deposit, body: `{"account_id":"a","amount":"1","to_account_id":"b"}`,
			status: bad, code: chronicle.CodeUnknownField, field: "to_account_id"},
		{name: "type is not a body field", typ: transfer, body: `{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1"}`,
			status: bad, code: chronicle.CodeUnknownField, field: "type"},
		{name: "amount on create", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"USD","amount":"1"}`,
			status: bad, code: chronicle.CodeUnknownField, field: "amount"},

		// Wrong JSON types.
		{name: "amount true", typ: deposit, body: `{"account_id":"a","amount":true}`,
			status: bad, code: chronicle.CodeInvalidField, field: "amount"},
		{name: "amount null", typ: deposit, body: `{"account_id":"a","amount":null}`,
			status: bad, code: chronicle.CodeInvalidField, field: "amount"},
		{name: "amount object", typ: withdraw, body: `{"account_id":"a","amount":{"value":"1"}}`,
			status: bad, code: chronicle.CodeInvalidField, field: "amount"},
		{name: "amount array", typ: transfer, body: `{"from_account_id":"a","to_account_id":"b","amount":["1"]}`,
			status: bad, code: chronicle.CodeInvalidField, field: "amount"},
		{name: "initial balance bool", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"USD","initial_balance":false}`,
			status: bad, code: chronicle.CodeInvalidField, field: "initial_balance"},
		{name: "overdraft object", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"USD","overdraft_limit":{}}`,
			status: bad, code: chronicle.CodeInvalidField, field: "overdraft_limit"},
		{name: "account id number", typ: deposit, body: `{"account_id":5,"amount":"1"}`,
			status: bad, code: chronicle.CodeInvalidField, field: "account_id"},
		{name: "owner name object", typ: create, body: `{"account_id":"a","owner_name":{"first":"A"},"currency":"USD"}`,
			status: bad, code: chronicle.CodeInvalidField, field: "owner_name"},
		{name: "currency array", typ: deposit, body: `{"account_id":"a","amount":"1","currency":["USD"]}`,
			status: bad, code: chronicle.CodeInvalidField, field: "currency"},
		{name: "from account bool", typ: transfer, body: `{"from_account_id":true,"to_account_id":"b","amount":"1"}`,
			status: bad, code: chronicle.CodeInvalidField, field: "from_account_id"},

		// Missing fields.
		{name: "empty object", typ: deposit, body: `{}`, status: bad, code: chronicle.CodeMissingField, field: "account_id"},
		{name: "deposit without amount", typ: deposit, body: `{"account_id":"a"}`, status: bad, code: chronicle.CodeMissingField, field: "amount"},
		{name: "withdraw without account", typ: withdraw, body: `{"amount":"1"}`, status: bad, code: chronicle.CodeMissingField, field: "account_id"},
		{name: "transfer without to", typ: transfer, body: `{"from_account_id":"a","amount":"1"}`,
			status: bad, code: chronicle.CodeMissingField, field: "to_account_id"},
		{name: "transfer without from", typ: transfer, body: `{"to_account_id":"a","amount":"1"}`,
			status: bad, code: chronicle.CodeMissingField, field: "from_account_id"},
		{name: "create without owner", typ: create, body: `{"account_id":"a","currency":"USD"}`,
			status: bad, code: chronicle.CodeMissingField, field: "owner_name"},
		{name: "create without currency", typ: create, body: `{"account_id":"a","owner_name":"A"}`,
			status: bad, code: chronicle.CodeMissingField, field: "currency"},
		{name: "account id null", typ: deposit, body: `{"account_id":null,"amount":"1"}`,
			status: bad, code: chronicle.CodeMissingField, field: "account_id"},

		// Well-formed JSON, invalid values.
		{name: "amount abc", typ: deposit, body: `{"account_id":"a","amount":"abc"}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "amount exponent number", typ: deposit, body: `{"account_id":"a","amount":1e3}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "amount exponent string", typ: deposit, body: `{"account_id":"a","amount":"1e3"}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "amount empty string", typ: deposit, body: `{"account_id":"a","amount":""}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "amount zero", typ: deposit, body: `{"account_id":"a","amount":0}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "amount negative", typ: withdraw, body: `{"account_id":"a","amount":"-5"}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "amount too long", typ: deposit, body: `{"account_id":"a","amount":` + strings.Repeat("9", 41) + `}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "amount"},
		{name: "initial balance abc", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"USD","initial_balance":"abc"}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "initial_balance"},
		{name: "overdraft exponent", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"USD","overdraft_limit":"1E2"}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "overdraft_limit"},
		// create-account knows its currency, so precision and sign are checked at once.
		{name: "initial balance too precise", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"USD","initial_balance":"1.234"}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "initial_balance"},
		{name: "initial balance negative", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"USD","initial_balance":-1}`,
			status: unprocessable, code: chronicle.CodeInvalidAmount, field: "initial_balance"},
		{name: "unknown currency", typ: create, body: `{"account_id":"a","owner_name":"A","currency":"XYZ"}`,
			status: unprocessable, code: chronicle.CodeUnknownCurrency, field: "currency"},
		{name: "deposit unknown currency", typ: deposit, body: `{"account_id":"a","amount":"1","currency":"usdollar"}`,
			status: unprocessable, code: chronicle.CodeUnknownCurrency, field: "currency"},
		{name: "same account", typ: transfer, body: `{"from_account_id":"a","to_account_id":"a","amount":"1"}`,
			status: unprocessable, code: chronicle.CodeSameAccount, field: "to_account_id"},
		{name: "invalid account id", typ: deposit, body: `{"account_id":"a b","amount":"1"}`,
			status: bad, code: chronicle.CodeInvalidAccountID, field: "account_id"},
		{name: "account id too long", typ: deposit, body: `{"account_id":"` + strings.Repeat("a", 65) + `","amount":"1"}`,
			status: bad, code: chronicle.CodeInvalidAccountID, field: "account_id"},
		{name: "escaped control character in owner", typ: create, body: `{"account_id":"a","owner_name":"A\u0007B","currency":"USD"}`,
			status: bad, code: chronicle.CodeInvalidField, field: "owner_name"},
		{name: "blank owner", typ: create, body: `{"account_id":"a","owner_name":"   ","currency":"USD"}`,
			status: bad, code: chronicle.CodeInvalidField, field: "owner_name"},
		{name: "description too long", typ: deposit, body: `{"account_id":"a","amount":"1","description":"` + strings.Repeat("é", 501) + `"}`,
			status: bad, code: chronicle.CodeInvalidField, field: "description"},

		// Not a command type.
		{name: "unknown type", typ: "freeze", body: `{"account_id":"a"}`, status: bad, code: chronicle.CodeInvalidField, field: "type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeCommand(tc.typ, []byte(tc.body), commandDefaults{})
			if tc.want != nil {
				if err != nil {
					t.Fatalf("decodeCommand: %v", err)
				}
				if !reflect.DeepEqual(c, *tc.want) {
					t.Fatalf("decoded %+v\nwant    %+v", c, *tc.want)
				}
				if err := c.Validate(); err != nil {
					t.Fatalf("decoded command fails Validate: %v", err)
				}
				return
			}
			decodeWantErr(t, err, tc.status, tc.code, tc.field)
		})
	}
}

func TestDecodeStrict(t *testing.T) {
	type target struct {
		Name  string `json:"name"`
		Count int    `json:"count"`
		Flag  bool   `json:"flag"`
	}
	cases := []struct {
		body  string
		want  target
		code  string
		field string
	}{
		{body: `{"name":"x","count":3,"flag":true}`, want: target{"x", 3, true}},
		{body: " \r\n{}\n ", want: target{}},
		{body: ``, code: chronicle.CodeInvalidJSON},
		{body: `[]`, code: chronicle.CodeInvalidJSON},
		{body: `nul`, code: chronicle.CodeInvalidJSON},
		{body: `{"name":"x"`, code: chronicle.CodeInvalidJSON},
		{body: `{"name":"x"} {"name":"y"}`, code: chronicle.CodeInvalidJSON},
		{body: `{"name":"x"},`, code: chronicle.CodeInvalidJSON},
		{body: `{"name":"x","other":1}`, code: chronicle.CodeUnknownField, field: "other"},
		{body: `{"Name":"x"}`, want: target{Name: "x"}}, // encoding/json matches names without case
		{body: `{"name":1}`, code: chronicle.CodeInvalidField, field: "name"},
		{body: `{"count":"3"}`, code: chronicle.CodeInvalidField, field: "count"},
		{body: `{"count":1.5}`, code: chronicle.CodeInvalidField, field: "count"},
		{body: `{"count":99999999999999999999}`, code: chronicle.CodeInvalidField, field: "count"},
		{body: `{"flag":"yes"}`, code: chronicle.CodeInvalidField, field: "flag"},
		{body: `{"name":{"a":1}}`, code: chronicle.CodeInvalidField, field: "name"},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			var got target
			err := decodeStrict([]byte(tc.body), &got)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("decodeStrict: %v", err)
				}
				if got != tc.want {
					t.Fatalf("decoded %+v, want %+v", got, tc.want)
				}
				return
			}
			decodeWantErr(t, err, http.StatusBadRequest, tc.code, tc.field)
		})
	}
}

func TestDecimalField(t *testing.T) {
	cases := []struct {
		raw    string
		want   chronicle.Decimal
		status int
		code   string
	}{
		{raw: ``, want: ""},
		{raw: `"12.50"`, want: "12.50"},
		{raw: `12.50`, want: "12.50"},
		{raw: `-3`, want: "-3"}, // the sign is for the caller to judge
		{raw: `"1e3"`, status: http.StatusUnprocessableEntity, code: chronicle.CodeInvalidAmount},
		{raw: `1E3`, status: http.StatusUnprocessableEntity, code: chronicle.CodeInvalidAmount},
		{raw: `" 1"`, status: http.StatusUnprocessableEntity, code: chronicle.CodeInvalidAmount},
		{raw: `"+1"`, status: http.StatusUnprocessableEntity, code: chronicle.CodeInvalidAmount},
		{raw: `".5"`, status: http.StatusUnprocessableEntity, code: chronicle.CodeInvalidAmount},
		{raw: `true`, status: http.StatusBadRequest, code: chronicle.CodeInvalidField},
		{raw: `null`, status: http.StatusBadRequest, code: chronicle.CodeInvalidField},
		{raw: `[1]`, status: http.StatusBadRequest, code: chronicle.CodeInvalidField},
	}
	for _, tc := range cases {
		t.Run(tc.raw, func(t *testing.T) {
			got, err := decimalField("overdraft_limit", []byte(tc.raw))
			if tc.code == "" {
				if err != nil || got != tc.want {
					t.Fatalf("decimalField = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			// Whatever field the amount parser names, the error names the caller's field.
			decodeWantErr(t, err, tc.status, tc.code, "overdraft_limit")
		})
	}
}

func TestKindHTTPStatus(t *testing.T) {
	for kind, status := range map[chronicle.Kind]int{
		chronicle.KindInternal:            http.StatusInternalServerError,
		chronicle.KindMalformed:           http.StatusBadRequest,
		chronicle.KindNotFound:            http.StatusNotFound,
		chronicle.KindConflict:            http.StatusConflict,
		chronicle.KindRejected:            http.StatusUnprocessableEntity,
		chronicle.KindTooLarge:            http.StatusRequestEntityTooLarge,
		chronicle.KindUnavailable:         http.StatusServiceUnavailable,
		chronicle.KindTimeout:             http.StatusGatewayTimeout,
		chronicle.KindInsufficientStorage: http.StatusInsufficientStorage,
	} {
		if got := httpStatus(kind); got != status {
			t.Errorf("Kind %d: status %d, want %d", kind, got, status)
		}
	}
}

// A create-account without a currency takes the node's default, resolved into the command
// when it is accepted (so the state machine never reads a setting); one that names a
// currency keeps it; without a default the currency stays required.
func TestDecodeDefaultCurrency(t *testing.T) {
	body := []byte(`{"account_id":"a","owner_name":"A","initial_balance":"5"}`)
	c, err := decodeCommand(chronicle.CmdCreateAccount, body, commandDefaults{Currency: "EUR"})
	if err != nil || c.Currency != "EUR" {
		t.Fatalf("no currency with default EUR: %+v, %v", c, err)
	}
	c, err = decodeCommand(chronicle.CmdCreateAccount, []byte(`{"account_id":"a","owner_name":"A","currency":"JPY"}`), commandDefaults{Currency: "EUR"})
	if err != nil || c.Currency != "JPY" {
		t.Fatalf("named JPY with default EUR: %+v, %v", c, err)
	}
	_, err = decodeCommand(chronicle.CmdCreateAccount, body, commandDefaults{})
	decodeWantErr(t, err, http.StatusBadRequest, chronicle.CodeMissingField, "currency")
	// Deposits never take a default: their currency, when named, is a check.
	c, err = decodeCommand(chronicle.CmdDeposit, []byte(`{"account_id":"a","amount":"1"}`), commandDefaults{Currency: "EUR"})
	if err != nil || c.Currency != "" {
		t.Fatalf("deposit with default EUR: %+v, %v", c, err)
	}
}
