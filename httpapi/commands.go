package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
	"github.com/chronicle-ledger/chronicle/internal/metrics"
)

// Request bodies: the api types, with the amounts kept raw (they may be JSON strings or
// numbers, and initial_balance null) until decoded with their field's name. A field one
// command does not take is an unknown field there.
type createAccountRequest struct {
	api.CreateAccount
	InitialBalance json.RawMessage `json:"initial_balance"`
	OverdraftLimit json.RawMessage `json:"overdraft_limit"`
}

type moneyRequest struct {
	api.Money
	Amount json.RawMessage `json:"amount"`
}

type transferRequest struct {
	api.Transfer
	Amount json.RawMessage `json:"amount"`
}

// commandDefaults are node settings resolved into a command when it is accepted, never
// read by the state machine, so that differently configured nodes cannot disagree.
type commandDefaults struct {
	// Currency is taken by create-account when the request names none (the original
	// system assumed USD).
	Currency string
	// MaxAmount bounds every amount of a command, in major units of its currency;
	// MaxAmountText is how the limit is named in a refusal. Nil: no limit.
	MaxAmount     *big.Rat
	MaxAmountText chronicle.Decimal
	// maxIntDigits is how many digits MaxAmount's integer part has (intDigits), for
	// checkLimit's shortcut; 0 takes none.
	maxIntDigits int
}

// intDigits is how many digits v's integer part has (0 for nil or below 1).
func intDigits(v *big.Rat) int {
	if v == nil || v.Sign() <= 0 {
		return 0
	}
	i := new(big.Int).Quo(v.Num(), v.Denom())
	if i.Sign() == 0 {
		return 0
	}
	return len(i.String())
}

// belowIntDigits reports whether d is certainly below any limit whose integer part has n
// digits: a negative amount, or a plain decimal ("007.50") whose integer part, leading
// zeros dropped, has fewer than n digits (so it is below 10^(n-1), which the limit is not).
// False means: compare exactly.
func belowIntDigits(d string, n int) bool {
	if n <= 0 || d == "" {
		return false
	}
	if d[0] == '-' {
		return true // negative, or not a decimal at all: never above a positive limit
	}
	i := 0
	for i < len(d) && d[i] == '0' {
		i++
	}
	j := i
	for j < len(d) && '0' <= d[j] && d[j] <= '9' {
		j++
	}
	if j-i >= n {
		return false
	}
	if j == len(d) {
		return j > 0
	}
	if d[j] != '.' || j == 0 || j+1 == len(d) {
		return false
	}
	for _, c := range []byte(d[j+1:]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// checkLimit refuses an amount above the node's limit (in major units: the decimal as
// written, whatever the currency's exponent).
func (def commandDefaults) checkLimit(field string, d chronicle.Decimal) error {
	if def.MaxAmount == nil || d == "" || belowIntDigits(string(d), def.maxIntDigits) {
		return nil
	}
	v, ok := new(big.Rat).SetString(string(d))
	if !ok {
		return nil // not a decimal: Validate names the error
	}
	if v.Cmp(def.MaxAmount) > 0 {
		return chronicle.FieldErrorf(chronicle.KindRejected, chronicle.CodeInvalidAmount, field,
			"%s must not exceed %s (this node's limit per command, in major units of any currency)", field, def.MaxAmountText)
	}
	return nil
}

// commandFields are a command body's fields as decoded, the amounts raw.
type commandFields struct {
	AccountID, OwnerName, Currency, Description, FromAccountID, ToAccountID string
	InitialBalance, OverdraftLimit, Amount                                  json.RawMessage
	// Reason: the lifecycle commands (lifecycle.go).
	Reason string
	// Two-phase transfers (pending.go); only the strict decoder sets them.
	pendingFields
}

// decodeCommand decodes one command body of type t strictly: in one pass when the body
// has the plain shape clients send (fastCommand), else with encoding/json, whose answers
// to anything unusual are the API's (decodeCommandStrict).
func decodeCommand(t chronicle.CommandType, body []byte, def commandDefaults) (chronicle.Command, error) {
	if f, ok := fastCommand(t, bytes.TrimSpace(body)); ok {
		return buildCommand(t, &f, def)
	}
	return decodeCommandStrict(t, body, def)
}

// decodeCommandStrict decodes one command body of type t with encoding/json, refusing
// unknown fields.
func decodeCommandStrict(t chronicle.CommandType, body []byte, def commandDefaults) (chronicle.Command, error) {
	var f commandFields
	switch t {
	case chronicle.CmdCreateAccount:
		var req createAccountRequest
		if err := decodeStrict(body, &req); err != nil {
			return chronicle.Command{Type: t}, err
		}
		f = commandFields{AccountID: req.AccountID, OwnerName: req.OwnerName, Currency: req.Currency, Description: req.Description,
			InitialBalance: req.InitialBalance, OverdraftLimit: req.OverdraftLimit}
	case chronicle.CmdDeposit, chronicle.CmdWithdraw:
		var req moneyRequest
		if err := decodeStrict(body, &req); err != nil {
			return chronicle.Command{Type: t}, err
		}
		f = commandFields{AccountID: req.AccountID, Currency: req.Currency, Description: req.Description, Amount: req.Amount}
	case chronicle.CmdTransfer:
		var req transferRequest
		if err := decodeStrict(body, &req); err != nil {
			return chronicle.Command{Type: t}, err
		}
		f = commandFields{FromAccountID: req.FromAccountID, ToAccountID: req.ToAccountID, Currency: req.Currency,
			Description: req.Description, Amount: req.Amount,
			pendingFields: pendingFields{Pending: req.Pending, TimeoutSeconds: req.TimeoutSeconds}}
	case chronicle.CmdFreezeAccount, chronicle.CmdUnfreezeAccount, chronicle.CmdCloseAccount:
		var err error
		if f, err = decodeLifecycleStrict(body); err != nil {
			return chronicle.Command{Type: t}, err
		}
	case chronicle.CmdCaptureTransfer, chronicle.CmdVoidTransfer:
		var err error
		if f, err = decodePendingStrict(t, body); err != nil {
			return chronicle.Command{Type: t}, err
		}
	default:
		return chronicle.Command{Type: t}, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, "type", "unknown command type %q", string(t))
	}
	return buildCommand(t, &f, def)
}

// buildCommand makes the command of type t (a known one) from its decoded fields: the
// amounts decoded naming their field, the node's defaults resolved, Validate and the
// node's amount limit applied.
func buildCommand(t chronicle.CommandType, f *commandFields, def commandDefaults) (chronicle.Command, error) {
	c := chronicle.Command{Type: t}
	var err error
	switch t {
	case chronicle.CmdCreateAccount:
		c.AccountID, c.OwnerName, c.Currency, c.Description = f.AccountID, f.OwnerName, f.Currency, f.Description
		if c.Currency == "" {
			c.Currency = def.Currency
		}
		// The original's clients send "initial_balance": null for an account opened empty.
		if c.InitialBalance, err = decimalField("initial_balance", nullIsAbsent(f.InitialBalance)); err != nil {
			return c, err
		}
		if c.OverdraftLimit, err = decimalField("overdraft_limit", nullIsAbsent(f.OverdraftLimit)); err != nil {
			return c, err
		}
	case chronicle.CmdDeposit, chronicle.CmdWithdraw:
		c.AccountID, c.Currency, c.Description = f.AccountID, f.Currency, f.Description
		if c.Amount, err = decimalField("amount", f.Amount); err != nil {
			return c, err
		}
	case chronicle.CmdTransfer:
		c.FromAccountID, c.ToAccountID, c.Currency, c.Description = f.FromAccountID, f.ToAccountID, f.Currency, f.Description
		if c.Amount, err = decimalField("amount", f.Amount); err != nil {
			return c, err
		}
		if err := f.buildPending(&c); err != nil {
			return c, err
		}
	case chronicle.CmdFreezeAccount, chronicle.CmdUnfreezeAccount, chronicle.CmdCloseAccount:
		c.AccountID, c.Reason = f.AccountID, f.Reason
	case chronicle.CmdCaptureTransfer, chronicle.CmdVoidTransfer:
		if err := f.buildPending(&c); err != nil {
			return c, err
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	if err := def.checkLimit("amount", c.Amount); err != nil {
		return c, err
	}
	if err := def.checkLimit("initial_balance", c.InitialBalance); err != nil {
		return c, err
	}
	if err := def.checkLimit("overdraft_limit", c.OverdraftLimit); err != nil {
		return c, err
	}
	return c, nil
}

// nullIsAbsent treats a JSON null as a field left out, for optional amounts.
func nullIsAbsent(raw json.RawMessage) json.RawMessage {
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil
	}
	return raw
}

// decimalField decodes an optional amount, naming the field in any error.
func decimalField(field string, raw json.RawMessage) (chronicle.Decimal, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var d chronicle.Decimal
	var err error
	if s, ok := plainJSONString(raw); ok {
		// What UnmarshalJSON does with a string, without unquoting it through
		// encoding/json: it has nothing to unquote.
		d, err = chronicle.ParseDecimal(s)
	} else {
		err = d.UnmarshalJSON(raw)
	}
	if err != nil {
		e := *chronicle.AsError(err)
		if e.Kind == chronicle.KindInternal {
			e = chronicle.Error{Kind: chronicle.KindRejected, Code: chronicle.CodeInvalidAmount, Message: field + " is not a valid amount"}
		}
		e.Field = field
		return "", &e
	}
	return d, nil
}

// plainJSONString is the value of a JSON string of printable ASCII without escapes.
func plainJSONString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return "", false
		}
	}
	return string(raw[1 : len(raw)-1]), true
}

// decodeStrict decodes exactly one JSON object into v, rejecting unknown fields and
// trailing data, and maps every failure to a client error.
func decodeStrict(body []byte, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return chronicle.Errorf(chronicle.KindMalformed, chronicle.CodeInvalidJSON, "request body is empty; send a JSON object")
	}
	if body[0] != '{' {
		return chronicle.Errorf(chronicle.KindMalformed, chronicle.CodeInvalidJSON, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return chronicle.Errorf(chronicle.KindMalformed, chronicle.CodeInvalidJSON, "unexpected data after the JSON object")
	}
	return nil
}

func decodeError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var ce *chronicle.Error
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &syn):
		return chronicle.Errorf(chronicle.KindMalformed, chronicle.CodeInvalidJSON, "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		field := jsonPath(typ.Field)
		if field == "" {
			field = "body"
		}
		return chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidField, field, "%s must be a JSON %s, got %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeUnknownField, name, "unknown field %q", name)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return chronicle.Errorf(chronicle.KindMalformed, chronicle.CodeInvalidJSON, "request body is truncated JSON")
	default:
		return chronicle.Errorf(chronicle.KindMalformed, chronicle.CodeInvalidJSON, "invalid JSON: %v", err)
	}
}

// jsonPath drops from a decoding error's field path the names of embedded api types
// (Go names, capitalized; JSON names here never are): "Money.currency" is "currency".
func jsonPath(field string) string {
	for {
		first, rest, ok := strings.Cut(field, ".")
		if !ok || first == "" || first[0] < 'A' || first[0] > 'Z' {
			return field
		}
		field = rest
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	default:
		return "number"
	}
}

// readBody reads a size-limited body.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, chronicle.Errorf(chronicle.KindTooLarge, chronicle.CodeBodyTooLarge, "request body exceeds %d bytes", mb.Limit)
		}
		return nil, chronicle.Errorf(chronicle.KindMalformed, chronicle.CodeInvalidJSON, "could not read request body: %v", err)
	}
	// The body is in: lift its read deadline (see deadlines), which would otherwise
	// cancel the request's context while the command executes.
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	return body, nil
}

func toResponse(res chronicle.Result) api.CommandResult {
	out := api.CommandResult{Success: true, TransferID: res.TransferID, Position: res.Position,
		CommittedAt: res.CommitTime, Replayed: res.Replayed, Events: []api.EventRef{}}
	for _, e := range res.Events {
		out.Events = append(out.Events, api.EventRef{EventID: e.EventID, Type: e.EventType, AggregateID: e.AggregateID, Position: e.Position})
	}
	if len(res.Events) > 0 {
		out.EventID = res.Events[0].EventID
		if res.TransferID == "" {
			out.AccountID = res.Events[0].AggregateID
		}
	}
	return out
}

// stamp gives a decoded command its id and request metadata.
func stamp(r *http.Request, c *chronicle.Command) {
	c.ID = chronicle.NewID()
	c.RequestID = middleware.GetReqID(r.Context())
	if p, ok := PrincipalFrom(r.Context()); ok {
		c.CreatedBy = p.Name
	}
}

func (a *API) command(t chronicle.CommandType) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := a.readBody(w, r)
		m := a.startCommand(string(t))
		if err != nil {
			m.done(err)
			writeError(w, err)
			return
		}
		c, err := decodeCommand(t, body, a.defaults())
		if err == nil {
			c.IdempotencyKey = r.Header.Get("Idempotency-Key")
			err = c.Validate()
		}
		if err != nil {
			m.done(err)
			writeError(w, err)
			return
		}
		if a.cfg.Cluster != nil && !a.cfg.Cluster.IsLeader() {
			a.toLeader(w, r, body)
			return
		}
		stamp(r, &c)
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.RequestTimeout)
		defer cancel()
		results, err := a.cfg.Store.Execute(ctx, []chronicle.Command{c})
		if err != nil {
			if a.notLeaderRetry(w, r, body, err) {
				return
			}
			m.done(err)
			writeError(w, err)
			return
		}
		res := results[0]
		if res.Err != nil {
			m.done(res.Err)
			writeError(w, res.Err)
			return
		}
		m.done(nil)
		w.Header().Set("X-Chronicle-Position", strconv.FormatUint(res.Position, 10))
		status := http.StatusCreated
		if res.Replayed {
			status = http.StatusOK
		}
		out := toResponse(res)
		writeCommandResult(w, status, &out)
	}
}

// batchRequest is api.Batch with each item kept raw, to be decoded strictly as its type's
// command.
type batchRequest struct {
	Commands []json.RawMessage `json:"commands"`
}

type batchItemHeader struct {
	Type           chronicle.CommandType `json:"type"`
	IdempotencyKey string                `json:"idempotency_key"`
}

// batch executes many commands in one Raft entry; each succeeds or fails on its own.
func (a *API) batch(w http.ResponseWriter, r *http.Request) {
	body, err := a.readBody(w, r)
	m := a.startCommand(metrics.TypeBatch)
	if err != nil {
		m.done(err)
		writeError(w, err)
		return
	}
	cmds, forward, err := decodeBatch(body, a.defaults(), a.cfg.Cluster == nil || a.cfg.Cluster.IsLeader())
	if forward {
		a.toLeader(w, r, body)
		return
	}
	if err != nil {
		m.done(err) // refused as a whole: its items are not known to be commands
		writeError(w, err)
		return
	}
	for i := range cmds {
		stamp(r, &cmds[i])
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.RequestTimeout)
	defer cancel()
	results, err := a.cfg.Store.Execute(ctx, cmds)
	if err != nil {
		if a.notLeaderRetry(w, r, body, err) {
			return
		}
		m.batchDone(cmds, nil, err)
		writeError(w, err)
		return
	}
	m.batchDone(cmds, results, nil)
	out := make([]api.BatchResult, len(results))
	var last uint64
	for i, res := range results {
		if res.Err != nil {
			out[i] = api.BatchResult{Error: res.Err.Message, Code: res.Err.Code, Field: res.Err.Field, CommandResult: api.CommandResult{Events: []api.EventRef{}}}
			continue
		}
		out[i] = api.BatchResult{CommandResult: toResponse(res)}
		last = max(last, res.Position)
	}
	w.Header().Set("X-Chronicle-Position", strconv.FormatUint(last, 10))
	writeBatchResponse(w, http.StatusOK, &api.BatchResponse{Results: out, Position: last})
}

// decodeBatch decodes a batch body into its commands. A batch of plain items is read in
// one pass (fastBatch); anything else is decoded strictly, item by item, with the same
// answers in the same order: the body's own errors, the batch's size, forward (a follower
// forwards the body once it is known to be a batch of the right size), then the first item
// at fault.
func decodeBatch(body []byte, def commandDefaults, leading bool) (cmds []chronicle.Command, forward bool, err error) {
	itemError := func(i int, err error) ([]chronicle.Command, bool, error) {
		e := *chronicle.AsError(err)
		e.Message = "commands[" + strconv.Itoa(i) + "]: " + e.Message
		return nil, false, &e
	}
	if items, ok := fastBatch(body); ok {
		if !leading {
			return nil, true, nil
		}
		cmds := make([]chronicle.Command, len(items))
		for i := range items {
			if cmds[i], err = buildBatchItem(&items[i], def); err != nil {
				return itemError(i, err)
			}
		}
		return cmds, false, nil
	}
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
	cmds = make([]chronicle.Command, len(req.Commands))
	for i, raw := range req.Commands {
		if cmds[i], err = decodeBatchItem(raw, def); err != nil {
			return itemError(i, err)
		}
	}
	return cmds, false, nil
}

// buildBatchItem makes a scanned batch item's command.
func buildBatchItem(it *fastBatchItem, def commandDefaults) (chronicle.Command, error) {
	c, err := buildCommand(it.typ, &it.fields, def)
	if err != nil {
		return c, err
	}
	c.IdempotencyKey = it.key
	return c, c.Validate()
}

// decodeBatchItem decodes one item of a batch: in one pass when it is a plain item, else
// strictly (decodeBatchItemStrict).
func decodeBatchItem(raw json.RawMessage, def commandDefaults) (chronicle.Command, error) {
	var it rawItem
	if end, ok := scanObject(raw, 0, &it, true); ok && end == len(raw) {
		if item, ok := it.batchItem(raw); ok {
			return buildBatchItem(&item, def)
		}
	}
	return decodeBatchItemStrict(raw, def)
}

// decodeBatchItemStrict decodes a batch item with encoding/json: its type and key, then
// the rest as that command's body, so that a field of another command (or a misspelled
// one) is refused as unknown.
func decodeBatchItemStrict(raw json.RawMessage, def commandDefaults) (chronicle.Command, error) {
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
	c, err := decodeCommand(h.Type, rest, def)
	if err != nil {
		return c, err
	}
	c.IdempotencyKey = h.IdempotencyKey
	return c, c.Validate()
}

// notLeaderRetry forwards a command that found this node no longer leading before it was
// proposed (not_leader with nothing sent to Raft is safe to send on).
func (a *API) notLeaderRetry(w http.ResponseWriter, r *http.Request, body []byte, err error) bool {
	e := chronicle.AsError(err)
	if a.cfg.Cluster == nil || e.Code != chronicle.CodeNotLeader || !e.Safe || !forwardable(r) {
		return false
	}
	a.toLeader(w, r, body)
	return true
}
