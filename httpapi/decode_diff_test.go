package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/chronicle-ledger/chronicle"
)

// The reference: the decoders as they were before the one-pass decoder (commit fb2d141),
// kept verbatim but for their names. The decoders in use must give the same command, or
// an error of the same kind, code, field and message, for every input.

func refDecodeCommand(t chronicle.CommandType, body []byte, def commandDefaults) (chronicle.Command, error) {
	c := chronicle.Command{Type: t}
	var err error
	switch t {
	case chronicle.CmdCreateAccount:
		var req createAccountRequest
		if err = decodeStrict(body, &req); err != nil {
			return c, err
		}
		c.AccountID, c.OwnerName, c.Currency, c.Description = req.AccountID, req.OwnerName, req.Currency, req.Description
		if c.Currency == "" {
			c.Currency = def.Currency
		}
		// The original's clients send "initial_balance": null for an account opened empty.
		if c.InitialBalance, err = decimalField("initial_balance", nullIsAbsent(req.InitialBalance)); err != nil {
			return c, err
		}
		if c.OverdraftLimit, err = decimalField("overdraft_limit", nullIsAbsent(req.OverdraftLimit)); err != nil {
			return c, err
		}
	case chronicle.CmdDeposit, chronicle.CmdWithdraw:
		var req moneyRequest
		if err = decodeStrict(body, &req); err != nil {
			return c, err
		}
		c.AccountID, c.Currency, c.Description = req.AccountID, req.Currency, req.Description
		if c.Amount, err = decimalField("amount", req.Amount); err != nil {
			return c, err
		}
	case chronicle.CmdTransfer:
		var req transferRequest
		if err = decodeStrict(body, &req); err != nil {
			return c, err
		}
		c.FromAccountID, c.ToAccountID, c.Currency, c.Description = req.FromAccountID, req.ToAccountID, req.Currency, req.Description
		if c.Amount, err = decimalField("amount", req.Amount); err != nil {
			return c, err
		}
		// Two-phase transfers (added with them, written out here rather than shared).
		c.Pending = req.Pending
		if req.TimeoutSeconds != nil {
			if !req.Pending {
				return c, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, "timeout_seconds", "timeout_seconds is only for a pending transfer")
			}
			if *req.TimeoutSeconds < 1 || *req.TimeoutSeconds > 2592000 {
				return c, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, "timeout_seconds", "timeout_seconds must be an integer from 1 to 2592000")
			}
			c.TimeoutSeconds = *req.TimeoutSeconds
		}
	case chronicle.CmdFreezeAccount, chronicle.CmdUnfreezeAccount, chronicle.CmdCloseAccount:
		// Added with the account lifecycle: a plain strict decode of account_id and reason.
		var req struct {
			AccountID string `json:"account_id"`
			Reason    string `json:"reason"`
		}
		if err = decodeStrict(body, &req); err != nil {
			return c, err
		}
		c.AccountID, c.Reason = req.AccountID, req.Reason
	case chronicle.CmdCaptureTransfer:
		var req captureRequest
		if err = decodeStrict(body, &req); err != nil {
			return c, err
		}
		c.TransferID, c.Description = req.TransferID, req.Description
		if c.Amount, err = decimalField("amount", nullIsAbsent(req.Amount)); err != nil {
			return c, err
		}
	case chronicle.CmdVoidTransfer:
		var req voidRequest
		if err = decodeStrict(body, &req); err != nil {
			return c, err
		}
		c.TransferID, c.Reason, c.Description = req.TransferID, req.Reason, req.Description
	default:
		return c, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, "type", "unknown command type %q", string(t))
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	for _, f := range []struct {
		name string
		d    chronicle.Decimal
	}{{"amount", c.Amount}, {"initial_balance", c.InitialBalance}, {"overdraft_limit", c.OverdraftLimit}} {
		if err := def.checkLimit(f.name, f.d); err != nil {
			return c, err
		}
	}
	return c, nil
}

func refDecodeBatchItem(raw json.RawMessage, def commandDefaults) (chronicle.Command, error) {
	var h batchItemHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return chronicle.Command{}, decodeError(err)
	}
	// Strip the batch-only fields so the per-command decoder sees just its own.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return chronicle.Command{}, decodeError(err)
	}
	delete(fields, "type")
	delete(fields, "idempotency_key")
	rest, err := json.Marshal(fields)
	if err != nil {
		return chronicle.Command{}, decodeError(err)
	}
	if h.Type == "" {
		return chronicle.Command{}, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeMissingField, "type", "type is required")
	}
	c, err := refDecodeCommand(h.Type, rest, def)
	if err != nil {
		return c, err
	}
	c.IdempotencyKey = h.IdempotencyKey
	return c, c.Validate()
}

// refDecodeBatch is the batch handler's decoding as it was, up to forwarding: the body,
// the batch's size, forward (a follower), then each item.
func refDecodeBatch(body []byte, def commandDefaults, leading bool) ([]chronicle.Command, bool, error) {
	var req batchRequest
	if err := decodeStrict(body, &req); err != nil {
		return nil, false, err
	}
	if len(req.Commands) == 0 {
		return nil, false, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeMissingField, "commands", "commands must list at least one command")
	}
	if len(req.Commands) > chronicle.MaxBatchCommands {
		return nil, false, chronicle.Errorf(chronicle.KindTooLarge, chronicle.CodeBatchTooLarge, "at most %d commands per batch", chronicle.MaxBatchCommands)
	}
	if !leading {
		return nil, true, nil
	}
	cmds := make([]chronicle.Command, 0, len(req.Commands))
	for i, raw := range req.Commands {
		c, err := refDecodeBatchItem(raw, def)
		if err != nil {
			e := *chronicle.AsError(err)
			e.Message = "commands[" + strconv.Itoa(i) + "]: " + e.Message
			return nil, false, &e
		}
		cmds = append(cmds, c)
	}
	return cmds, false, nil
}

// diffDefaults are the node settings the differential tests decode with: a default
// currency and a limit, so that both take part.
var diffDefaults = func() commandDefaults {
	max, err := ParseMaxAmount("1000000")
	if err != nil {
		panic(err)
	}
	return commandDefaults{Currency: "EUR", MaxAmount: max, MaxAmountText: "1000000", maxIntDigits: intDigits(max)}
}()

// checkLimit's shortcut never changes its answer.
func TestCheckLimitShortcut(t *testing.T) {
	amounts := []string{"0", "1", "-1", "-", "-abc", "00", "007.50", "999999", "999999.999", "1000000", "1000000.00", "1000000.01",
		"0999999.5", "9999999", "10000000", ".5", "5.", "1e3", "1e7", "1.2.3", "12a", "abc", "0.0001", "999", "1000", "1001", "99.99"}
	for _, limit := range []string{"1000000", "1000", "999.99", "1", "0.5", "1e3", "1/3", "12345678901234567890"} {
		max, err := ParseMaxAmount(chronicle.Decimal(limit))
		if err != nil {
			t.Fatal(err)
		}
		exact := commandDefaults{MaxAmount: max, MaxAmountText: chronicle.Decimal(limit)}
		fast := exact
		fast.maxIntDigits = intDigits(max)
		for _, a := range amounts {
			e1, e2 := exact.checkLimit("amount", chronicle.Decimal(a)), fast.checkLimit("amount", chronicle.Decimal(a))
			if (e1 == nil) != (e2 == nil) {
				t.Errorf("limit %s, amount %s: exact %v, with the shortcut %v", limit, a, e1, e2)
			}
		}
	}
}

// sameOutcome fails unless the two decodings agree: equal commands, or errors equal in
// every part the API answers with (kind, code, field, message).
func sameOutcome(t *testing.T, what string, input []byte, got chronicle.Command, gotErr error, want chronicle.Command, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%s(%q): error %v, reference error %v", what, input, gotErr, wantErr)
	}
	if wantErr != nil {
		var g, w *chronicle.Error
		if !errors.As(gotErr, &g) || !errors.As(wantErr, &w) {
			t.Fatalf("%s(%q): errors %T %v and %T %v", what, input, gotErr, gotErr, wantErr, wantErr)
		}
		if g.Kind != w.Kind || g.Code != w.Code || g.Field != w.Field || g.Message != w.Message {
			t.Fatalf("%s(%q):\nerror     %+v\nreference %+v", what, input, *g, *w)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s(%q):\ncommand   %+v\nreference %+v", what, input, got, want)
	}
}

// diffItems are batch items, valid and not, in the shapes the one-pass decoder takes and
// in those it leaves to encoding/json.
var diffItems = []string{
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"0.01","description":"bench"}`,
	`{"type":"transfer","idempotency_key":"k-1","from_account_id":"a","to_account_id":"b","amount":12.5,"currency":"USD"}`,
	`{"from_account_id":"a","to_account_id":"b","amount":"1","type":"transfer"}`,
	`{"type":"create-account","account_id":"acc-1","owner_name":"Zoë Ω","currency":"USD","initial_balance":"100.50","overdraft_limit":25,"description":"first"}`,
	`{"type":"create-account","account_id":"a","owner_name":"A"}`,
	`{"type":"create-account","account_id":"a","owner_name":"A","currency":"USD","initial_balance":null,"overdraft_limit":null}`,
	`{"type":"deposit","account_id":"a","amount":"5","idempotency_key":null}`,
	`{"type":"withdraw","account_id":"a","amount":"007.50","description":"cash \u00e9 \"q\" <b>&"}`,
	`{ "type" : "deposit" , "account_id" : "a" , "amount" : 1 }`,
	"{\n\t\"type\":\"deposit\",\r\n\"account_id\":\"a\",\"amount\":-0}",
	`{"type":"deposit","account_id":"a","amount":"2000000"}`,
	`{"type":"deposit","account_id":"a","amount":1e3}`,
	`{"type":"deposit","account_id":"a","amount":true}`,
	`{"type":"deposit","account_id":"a","amount":null}`,
	`{"type":"deposit","account_id":"a","amount":"<1>"}`,
	`{"type":"deposit","account_id":"a","amount":"1","description":"\ud83d"}`,
	"{\"type\":\"deposit\",\"account_id\":\"a\",\"amount\":\"1\",\"description\":\"\xff\xfe\"}",
	"{\"type\":\"deposit\",\"account_id\":\"a\",\"amount\":\"1\",\"description\":\"\u2028\"}",
	`{"type":"deposit","account_id":"a","amount":"1","description":null}`,
	`{"type":"deposit","account_id":"a","amount":{"v":1}}`,
	`{"type":"deposit","account_id":"a","amount":["1"]}`,
	`{"type":"transfer","from_account_id":"a","to_account_id":"a","amount":"1"}`,
	`{"type":"transfer","from_account_id":"a","amount":"1"}`,
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1","account_id":"c"}`,
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1","memo":"x"}`,
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1","amount":"2"}`,
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1","AMOUNT":"2"}`,
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","Amount":"2","amount":"1"}`,
	`{"Type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1"}`,
	`{"type":"transfer","TYPE":"deposit","from_account_id":"a","to_account_id":"b","amount":"1"}`,
	`{"type":"transfer","type":null,"from_account_id":"a","to_account_id":"b","amount":"1"}`,
	`{"type":"transfer","Idempotency_Key":"k","from_account_id":"a","to_account_id":"b","amount":"1"}`,
	`{"type":"transfer","idempotency_key":5,"from_account_id":"a","to_account_id":"b","amount":"1"}`,
	`{"type":"transfer","from_account_id":5,"to_account_id":"b","amount":"1","zzz":1}`,
	`{"type":"transfer","zzz":1,"from_account_id":5,"to_account_id":"b","amount":"1"}`,
	`{"type":"deposit","account_id":"a","amount":"1","de\u017fcription":"x"}`,
	`{"type":"deposit","acc\u006funt_id":"a","amount":"1"}`,
	`{"type":"trans\u0066er","from_account_id":"a","to_account_id":"b","amount":"1"}`,
	`{"type":"freeze","account_id":"a"}`,
	// The account lifecycle (always decoded strictly).
	`{"type":"freeze-account","account_id":"a","reason":"court order"}`,
	`{"type":"freeze-account","account_id":"a"}`,
	`{"type":"freeze-account","account_id":"a","reason":""}`,
	`{"type":"freeze-account","account_id":"a","reason":"a\nb"}`,
	`{"type":"freeze-account","account_id":"a","reason":5}`,
	`{"type":"freeze-account","account_id":"@world:USD","reason":"x"}`,
	`{"type":"unfreeze-account","account_id":"a"}`,
	`{"type":"unfreeze-account","account_id":"a","reason":null,"idempotency_key":"u-1"}`,
	`{"type":"close-account","account_id":"a","reason":"customer left","amount":"1"}`,
	`{"type":"close-account","account_id":"a","reason":"` + strings.Repeat("r", 501) + `"}`,
	`{"type":"close-account","reason":"x"}`,
	`{"type":"deposit","account_id":"a","amount":"1","reason":"x"}`,
	`{"type":"","account_id":"a"}`,
	`{"type":5}`,
	`{"account_id":"a","amount":"1"}`,
	`{"type":"deposit","account_id":"a","amount":"1","idempotency_key":"` + strings.Repeat("k", 256) + `"}`,
	`{"type":"deposit","account_id":"a","amount":"1","idempotency_key":"k\u0001"}`,
	`{"type":"deposit","account_id":"` + strings.Repeat("a", 65) + `","amount":"1"}`,
	`{}`,
	`null`,
	`5`,
	`"transfer"`,
	`[]`,
	`[{"type":"deposit"}]`,
	`true`,
	// Two-phase transfers (the one-pass scanner leaves them to the strict decoder).
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1","pending":true,"timeout_seconds":60}`,
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1","pending":true,"timeout_seconds":0}`,
	`{"type":"transfer","from_account_id":"a","to_account_id":"b","amount":"1","timeout_seconds":5}`,
	`{"type":"capture-transfer","transfer_id":"t-1","amount":"0.5","idempotency_key":"k"}`,
	`{"type":"capture-transfer","transfer_id":"t-1","reason":"x"}`,
	`{"type":"void-transfer","transfer_id":"t-1","reason":"r"}`,
	`{"type":"void-transfer"}`,
	`{"type":"expire-transfers"}`,
}

func TestDecodeBatchItemMatchesReference(t *testing.T) {
	for _, item := range diffItems {
		c, err := decodeBatchItem(json.RawMessage(item), diffDefaults)
		rc, rerr := refDecodeBatchItem(json.RawMessage(item), diffDefaults)
		sameOutcome(t, "decodeBatchItem", []byte(item), c, err, rc, rerr)
	}
}

func TestDecodeCommandMatchesReference(t *testing.T) {
	for _, item := range diffItems {
		for _, typ := range fuzzCommandTypes {
			body := []byte(item)
			c, err := decodeCommand(typ, body, diffDefaults)
			rc, rerr := refDecodeCommand(typ, body, diffDefaults)
			sameOutcome(t, "decodeCommand("+string(typ)+")", body, c, err, rc, rerr)
		}
	}
	for _, s := range decodeFuzzSeeds {
		typ := fuzzCommandTypes[int(s.cmdType)%len(fuzzCommandTypes)]
		c, err := decodeCommand(typ, []byte(s.body), diffDefaults)
		rc, rerr := refDecodeCommand(typ, []byte(s.body), diffDefaults)
		sameOutcome(t, "decodeCommand("+string(typ)+")", []byte(s.body), c, err, rc, rerr)
	}
}

// diffBatches are whole batch bodies: every item above alone and all together, and the
// body's own shapes and faults.
func diffBatches() []string {
	out := []string{
		``, ` `, `{}`, `[]`, `null`, `{"commands":null}`, `{"commands":[]}`, `{"commands":{}}`, `{"commands":5}`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":"1"}],"commands":[]}`,
		`{"Commands":[{"type":"deposit","account_id":"a","amount":"1"}]}`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":"1"}],"x":1}`,
		`{"x":1,"commands":[{"type":"deposit","account_id":"a","amount":"1"}]}`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":"1"}]}x`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":"1"}]} {}`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":"1"},]}`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":"1"}`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":01}]}`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":"1"},{"type":"freeze"}],"x":{}}`,
		" \n{\"commands\" : [ {\"type\":\"deposit\",\"account_id\":\"a\",\"amount\":\"1\"} , {\"type\":\"withdraw\",\"account_id\":\"a\",\"amount\":1} ] }\n\v",
		"\xef\xbb\xbf{\"commands\":[{\"type\":\"deposit\",\"account_id\":\"a\",\"amount\":\"1\"}]}",
		`{"commands":[{"type":"deposit","account_id":"a","amount":"1"},{"type":"deposit","account_id":"a","amount":"1","account_id":"b"}]}`,
		`{"commands":[{"type":"deposit","account_id":"a","amount":"abc"},{"type":"deposit","account_id":"a","amount":"1","memo":1}]}`,
	}
	for _, item := range diffItems {
		out = append(out, `{"commands":[`+item+`]}`)
	}
	out = append(out, `{"commands":[`+strings.Join(diffItems, ",")+`]}`)
	for _, n := range []int{chronicle.MaxBatchCommands, chronicle.MaxBatchCommands + 1} {
		out = append(out, `{"commands":[`+strings.Repeat(`{"type":"deposit","account_id":"a","amount":"1"},`, n-1)+`{"type":"deposit","account_id":"a","amount":"1"}]}`)
		out = append(out, `{"commands":[`+strings.Repeat(`{"type":"deposit","account_id":"a","amount":"1"},`, n-1)+`{"type":"deposit","account_id":"a","amount":"x"}]}`)
	}
	return out
}

func TestDecodeBatchMatchesReference(t *testing.T) {
	for _, body := range diffBatches() {
		for _, leading := range []bool{true, false} {
			sameBatch(t, []byte(body), leading)
		}
	}
}

func sameBatch(t *testing.T, body []byte, leading bool) {
	t.Helper()
	cmds, fwd, err := decodeBatch(body, diffDefaults, leading)
	rcmds, rfwd, rerr := refDecodeBatch(body, diffDefaults, leading)
	short := body
	if len(short) > 200 {
		short = append(short[:100:100], "..."...)
	}
	if fwd != rfwd {
		t.Fatalf("decodeBatch(%q): forward %v, reference %v", short, fwd, rfwd)
	}
	if len(cmds) != len(rcmds) {
		t.Fatalf("decodeBatch(%q): %d commands, reference %d (errors %v, %v)", short, len(cmds), len(rcmds), err, rerr)
	}
	if err != nil || rerr != nil {
		sameOutcome(t, "decodeBatch", short, chronicle.Command{}, err, chronicle.Command{}, rerr)
	}
	for i := range cmds {
		sameOutcome(t, "decodeBatch item "+strconv.Itoa(i), short, cmds[i], nil, rcmds[i], nil)
	}
}

// The one-pass decoder takes what clients send, rather than leaving it all to the strict
// path (which would pass the tests above too).
func TestFastPathTaken(t *testing.T) {
	for _, body := range []string{
		`{"from_account_id":"a","to_account_id":"b","amount":"0.01","description":"bench"}`,
		` {"from_account_id":"a","to_account_id":"b","amount":12.5,"currency":"USD","description":"caf\u00e9 \"x\""}` + "\n",
	} {
		if _, ok := fastCommand(chronicle.CmdTransfer, bytes.TrimSpace([]byte(body))); !ok {
			t.Errorf("fastCommand(%s) left it to the strict decoder", body)
		}
	}
	body := `{"commands":[` + strings.Join(diffItems[:12], ",") + `]}`
	if items, ok := fastBatch([]byte(body)); !ok || len(items) != 12 {
		t.Errorf("fastBatch: %d items, %v", len(items), ok)
	}
}

// FuzzDecodeBatchItem: for any item, the decoder in use and the reference give the same
// command or the same error; so do they for any batch body (the item alone, twice, and
// the input as a whole body). The seeds are diffItems; testdata/fuzz/FuzzDecodeBatchItem
// keeps what fuzzing found.
func FuzzDecodeBatchItem(f *testing.F) {
	for _, item := range diffItems {
		f.Add([]byte(item))
	}
	f.Fuzz(func(t *testing.T, item []byte) {
		if json.Valid(item) {
			// As a batch item: the batch's decoder has checked it is one JSON value.
			raw := json.RawMessage(bytes.TrimSpace(item))
			c, err := decodeBatchItem(raw, diffDefaults)
			rc, rerr := refDecodeBatchItem(raw, diffDefaults)
			sameOutcome(t, "decodeBatchItem", item, c, err, rc, rerr)
		}
		for _, typ := range fuzzCommandTypes {
			c, err := decodeCommand(typ, item, diffDefaults)
			rc, rerr := refDecodeCommand(typ, item, diffDefaults)
			sameOutcome(t, "decodeCommand("+string(typ)+")", item, c, err, rc, rerr)
		}
		sameBatch(t, item, true)
		sameBatch(t, []byte(`{"commands":[`+string(item)+`]}`), true)
		sameBatch(t, []byte(`{"commands":[`+string(item)+`,`+string(item)+`]}`), true)
	})
}

// The fuzz corpus of FuzzDecodeCommand decodes the same way too.
func TestDecodeCommandCorpusMatchesReference(t *testing.T) {
	files, err := filepath.Glob("testdata/fuzz/FuzzDecodeCommand/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("corpus: %v, %d files", err, len(files))
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		if len(lines) < 3 {
			continue
		}
		body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, typ := range fuzzCommandTypes {
			c, err := decodeCommand(typ, []byte(body), diffDefaults)
			rc, rerr := refDecodeCommand(typ, []byte(body), diffDefaults)
			sameOutcome(t, "decodeCommand("+string(typ)+")", []byte(body), c, err, rc, rerr)
		}
	}
}
