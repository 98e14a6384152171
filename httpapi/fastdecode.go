package httpapi

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/chronicle-ledger/chronicle"
)

// The one-pass command decoder.
//
// Commands are decoded by a small scanner that reads a request body (or a batch item)
// once and keeps each field's value as a span of the body. It takes only the shape every
// client sends: one JSON object whose keys are exactly the field names the command takes
// (lower case, no escapes, each at most once), with strings, numbers, true, false or null
// as values. Anything else (a syntax error, trailing data, an unknown, misspelled,
// case-folded or repeated key, a nested value, a number or boolean for a text field)
// makes the scanner give up, and the body goes to the strict encoding/json decoder
// (decodeCommandStrict, decodeBatchItemStrict), whose answer for such input is the API's
// contract: the same error code, field and status as always. What the scanner accepts it
// hands to buildCommand, the same code that builds the command from the strict decoder's
// fields, so an accepted body yields exactly the command (or the error) the strict
// decoder yields. decode_diff_test.go holds the two to that.

// field names a command field (or a batch item's type and idempotency key).
type field uint8

const (
	fAccountID field = iota
	fOwnerName
	fCurrency
	fInitialBalance
	fOverdraftLimit
	fAmount
	fDescription
	fFromAccountID
	fToAccountID
	fType
	fIdempotencyKey
	numFields
)

// fieldByName maps a key, exactly as the API names it, to its field.
func fieldByName(k []byte) (field, bool) {
	switch string(k) { // no allocation: the compiler compares in place
	case "account_id":
		return fAccountID, true
	case "owner_name":
		return fOwnerName, true
	case "currency":
		return fCurrency, true
	case "initial_balance":
		return fInitialBalance, true
	case "overdraft_limit":
		return fOverdraftLimit, true
	case "amount":
		return fAmount, true
	case "description":
		return fDescription, true
	case "from_account_id":
		return fFromAccountID, true
	case "to_account_id":
		return fToAccountID, true
	case "type":
		return fType, true
	case "idempotency_key":
		return fIdempotencyKey, true
	}
	return 0, false
}

// isAmount: the amount fields, kept raw for decimalField (a string or a number).
func (f field) isAmount() bool {
	return f == fInitialBalance || f == fOverdraftLimit || f == fAmount
}

// commandFieldSet is the set of body fields each command type takes (as the request
// structs createAccountRequest, moneyRequest and transferRequest declare them).
func commandFieldSet(t chronicle.CommandType) (uint16, bool) {
	const (
		create   = 1<<fAccountID | 1<<fOwnerName | 1<<fCurrency | 1<<fInitialBalance | 1<<fOverdraftLimit | 1<<fDescription
		money    = 1<<fAccountID | 1<<fAmount | 1<<fCurrency | 1<<fDescription
		transfer = 1<<fFromAccountID | 1<<fToAccountID | 1<<fAmount | 1<<fCurrency | 1<<fDescription
	)
	switch t {
	case chronicle.CmdCreateAccount:
		return create, true
	case chronicle.CmdDeposit, chronicle.CmdWithdraw:
		return money, true
	case chronicle.CmdTransfer:
		return transfer, true
	}
	return 0, false
}

// Value kinds the scanner records.
const (
	vAbsent  byte = iota
	vString       // a string without escapes, valid UTF-8: its bytes are its value
	vEscaped      // a string with escapes or invalid UTF-8: encoding/json unquotes it
	vNumber
	vLiteral // true or false
	vNull
)

// rawItem is one scanned object: each field's value as a span of the scanned buffer.
type rawItem struct {
	start, end [numFields]int32 // the value's bytes, quotes included for strings
	kind       [numFields]byte
}

// scanObject scans one JSON object starting at buf[i] (no leading whitespace), keeping its
// fields in it. It returns the index after the closing brace, or ok false for anything
// outside the shape described above (the caller then decodes strictly). batch allows the
// batch-only keys type and idempotency_key.
func scanObject(buf []byte, i int, it *rawItem, batch bool) (int, bool) {
	if i >= len(buf) || buf[i] != '{' {
		return 0, false
	}
	i = skipWS(buf, i+1)
	if i < len(buf) && buf[i] == '}' {
		return i + 1, true
	}
	for {
		// Key: a plain string naming a field.
		if i >= len(buf) || buf[i] != '"' {
			return 0, false
		}
		ks := i + 1
		ke := ks
		for ke < len(buf) && buf[ke] != '"' && buf[ke] != '\\' {
			ke++
		}
		if ke >= len(buf) || buf[ke] != '"' {
			return 0, false
		}
		f, ok := fieldByName(buf[ks:ke])
		if !ok || (!batch && (f == fType || f == fIdempotencyKey)) || it.kind[f] != vAbsent {
			return 0, false
		}
		i = skipWS(buf, ke+1)
		if i >= len(buf) || buf[i] != ':' {
			return 0, false
		}
		i = skipWS(buf, i+1)
		if i >= len(buf) {
			return 0, false
		}
		// Value.
		vs := i
		var kind byte
		switch c := buf[i]; {
		case c == '"':
			i, kind = scanString(buf, i)
		case c == '-' || ('0' <= c && c <= '9'):
			i, kind = scanNumber(buf, i)
		case c == 't':
			i, kind = scanLiteral(buf, i, "true", vLiteral)
		case c == 'f':
			i, kind = scanLiteral(buf, i, "false", vLiteral)
		case c == 'n':
			i, kind = scanLiteral(buf, i, "null", vNull)
		}
		if kind == vAbsent || (kind == vEscaped && !json.Valid(buf[vs:i])) {
			return 0, false
		}
		// A string field takes a string or null; an amount anything scalar (decimalField
		// judges it as the strict decoder's caller does).
		if kind == vNumber || kind == vLiteral {
			if !f.isAmount() {
				return 0, false
			}
		}
		it.start[f], it.end[f], it.kind[f] = int32(vs), int32(i), kind
		i = skipWS(buf, i)
		if i >= len(buf) {
			return 0, false
		}
		switch buf[i] {
		case ',':
			i = skipWS(buf, i+1)
		case '}':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// skipWS skips JSON whitespace.
func skipWS(buf []byte, i int) int {
	for i < len(buf) {
		switch buf[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans the string starting at buf[i] (its quote): vString when its bytes are
// its value as encoding/json would decode it, vEscaped when it needs unquoting, vAbsent
// when it is not a well-formed string.
func scanString(buf []byte, i int) (int, byte) {
	kind := vString
	ascii := true
	s := i + 1
	for j := s; j < len(buf); j++ {
		c := buf[j]
		switch {
		case c == '"':
			if kind == vString && !ascii && !utf8.Valid(buf[s:j]) {
				kind = vEscaped
			}
			return j + 1, kind
		case c == '\\':
			kind = vEscaped
			j++ // the escaped character (\" or \\ included); unquoting checks the rest
		case c < 0x20:
			return 0, vAbsent
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return 0, vAbsent
}

// scanNumber scans a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(buf []byte, i int) (int, byte) {
	if buf[i] == '-' {
		i++
	}
	digits := func() bool {
		s := i
		for i < len(buf) && '0' <= buf[i] && buf[i] <= '9' {
			i++
		}
		return i > s
	}
	if i < len(buf) && buf[i] == '0' {
		i++
	} else if !digits() {
		return 0, vAbsent
	}
	if i < len(buf) && buf[i] == '.' {
		i++
		if !digits() {
			return 0, vAbsent
		}
	}
	if i < len(buf) && (buf[i] == 'e' || buf[i] == 'E') {
		i++
		if i < len(buf) && (buf[i] == '+' || buf[i] == '-') {
			i++
		}
		if !digits() {
			return 0, vAbsent
		}
	}
	// A number ends at a delimiter; "1x" or "01" is not one.
	if i < len(buf) {
		switch buf[i] {
		case ' ', '\t', '\n', '\r', ',', '}', ']':
		default:
			return 0, vAbsent
		}
	}
	return i, vNumber
}

func scanLiteral(buf []byte, i int, lit string, kind byte) (int, byte) {
	if len(buf)-i < len(lit) || string(buf[i:i+len(lit)]) != lit {
		return 0, vAbsent
	}
	return i + len(lit), kind
}

// str is a string field's value: "" when absent or null (encoding/json leaves a string
// unchanged for null). ok is false if an escaped string does not unquote.
func (it *rawItem) str(buf []byte, f field) (string, bool) {
	switch it.kind[f] {
	case vString:
		return string(buf[it.start[f]+1 : it.end[f]-1]), true
	case vEscaped:
		var s string
		if err := json.Unmarshal(buf[it.start[f]:it.end[f]], &s); err != nil {
			return "", false
		}
		return s, true
	}
	return "", true
}

// raw is an amount field's value as the strict decoder's json.RawMessage holds it (nil
// when absent).
func (it *rawItem) raw(buf []byte, f field) json.RawMessage {
	if it.kind[f] == vAbsent {
		return nil
	}
	return buf[it.start[f]:it.end[f]]
}

// present is the set of fields the item holds.
func (it *rawItem) present() uint16 {
	var set uint16
	for f, k := range it.kind {
		if k != vAbsent {
			set |= 1 << f
		}
	}
	return set
}

// fields turns a scanned item of command type t into the fields buildCommand takes; ok
// false when the item holds a field t does not take, or a string that does not unquote.
func (it *rawItem) fields(buf []byte, t chronicle.CommandType) (commandFields, bool) {
	var cf commandFields
	set, known := commandFieldSet(t)
	if !known || it.present()&^(set|1<<fType|1<<fIdempotencyKey) != 0 {
		return cf, false
	}
	var ok [6]bool
	cf.AccountID, ok[0] = it.str(buf, fAccountID)
	cf.OwnerName, ok[1] = it.str(buf, fOwnerName)
	cf.Currency, ok[2] = it.str(buf, fCurrency)
	cf.Description, ok[3] = it.str(buf, fDescription)
	cf.FromAccountID, ok[4] = it.str(buf, fFromAccountID)
	cf.ToAccountID, ok[5] = it.str(buf, fToAccountID)
	if ok != [6]bool{true, true, true, true, true, true} {
		return cf, false
	}
	cf.InitialBalance, cf.OverdraftLimit, cf.Amount = it.raw(buf, fInitialBalance), it.raw(buf, fOverdraftLimit), it.raw(buf, fAmount)
	return cf, true
}

// fastCommand scans a single command's body (type t); ok false sends it to the strict
// decoder. The body is trimmed as decodeStrict trims it, and must hold nothing after the
// object.
func fastCommand(t chronicle.CommandType, body []byte) (commandFields, bool) {
	var it rawItem
	end, ok := scanObject(body, 0, &it, false)
	if !ok || end != len(body) {
		return commandFields{}, false
	}
	return it.fields(body, t)
}

// fastBatchItem is a scanned batch item with its type and idempotency key.
type fastBatchItem struct {
	typ    chronicle.CommandType
	key    string
	fields commandFields
}

// batchItem turns a scanned batch item into its type, key and fields; ok false when the
// item is anything the strict decoder must judge (no type, an unknown one, a field its
// type does not take).
func (it *rawItem) batchItem(buf []byte) (fastBatchItem, bool) {
	var out fastBatchItem
	if it.kind[fType] != vString {
		return out, false
	}
	out.typ = chronicle.CommandType(buf[it.start[fType]+1 : it.end[fType]-1])
	key, ok := it.str(buf, fIdempotencyKey)
	if !ok {
		return out, false
	}
	out.key = key
	out.fields, ok = it.fields(buf, out.typ)
	return out, ok
}

// fastBatch scans a whole batch body, {"commands":[item, ...]}, in one pass; ok false sends
// it to the strict decoder (which then still decodes each item with decodeBatchItem).
func fastBatch(body []byte) ([]fastBatchItem, bool) {
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	i = skipWS(body, i+1)
	const key = `"commands"`
	if len(body)-i < len(key) || string(body[i:i+len(key)]) != key {
		return nil, false
	}
	i = skipWS(body, i+len(key))
	if i >= len(body) || body[i] != ':' {
		return nil, false
	}
	i = skipWS(body, i+1)
	if i >= len(body) || body[i] != '[' {
		return nil, false
	}
	i = skipWS(body, i+1)
	// Items are about 80 bytes or more: size the slice once.
	items := make([]fastBatchItem, 0, min(len(body)/64+1, chronicle.MaxBatchCommands))
	if i < len(body) && body[i] == ']' {
		return nil, false // an empty batch: the strict path names the error
	}
	for {
		var it rawItem
		var ok bool
		if i, ok = scanObject(body, i, &it, true); !ok {
			return nil, false
		}
		item, ok := it.batchItem(body)
		if !ok || len(items) == chronicle.MaxBatchCommands {
			return nil, false
		}
		items = append(items, item)
		i = skipWS(body, i)
		if i >= len(body) {
			return nil, false
		}
		if body[i] == ']' {
			break
		}
		if body[i] != ',' {
			return nil, false
		}
		i = skipWS(body, i+1)
	}
	i = skipWS(body, i+1)
	if i >= len(body) || body[i] != '}' {
		return nil, false
	}
	if skipWS(body, i+1) != len(body) {
		return nil, false
	}
	return items, true
}
