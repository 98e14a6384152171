package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// toAccountJSON is an account as the API returns it.
func toAccountJSON(a chronicle.Account) api.Account {
	cur, _ := chronicle.LookupCurrency(a.Currency) // stored accounts hold known currencies
	out := api.Account{AccountID: a.ID, OwnerName: a.OwnerName, Balance: chronicle.FormatMinor(a.Balance, cur),
		Currency: a.Currency, Status: string(a.Status), CreatedAt: a.CreatedAt, LastUpdated: a.LastUpdated, Version: a.Version,
		Held: chronicle.FormatMinor(a.Held, cur), Available: chronicle.FormatMinor(a.Available(), cur)}
	if a.OverdraftLimit > 0 {
		out.OverdraftLimit = chronicle.FormatMinor(a.OverdraftLimit, cur)
	}
	return out
}

// toTransaction is a statement line as the API returns it.
func toTransaction(l chronicle.StatementLine) api.Transaction {
	cur, _ := chronicle.LookupCurrency(l.Currency) // views hold known currencies
	return api.Transaction{TransactionID: l.TransactionID, AccountID: l.AccountID, Type: l.Type, EventType: l.EventType,
		Amount: chronicle.FormatMinor(l.Amount, cur), BalanceAfter: chronicle.FormatMinor(l.BalanceAfter, cur),
		Currency: l.Currency, Description: l.Description, TransferID: l.TransferID, Counterparty: l.Counterparty,
		Position: l.Position, Version: l.Version, Timestamp: l.Timestamp}
}

// waitForPosition honours ?min_position=N — read-your-writes, bounded by MaxWait — on the
// read model (view) or on the write side, and reports the position answered from.
func (a *API) waitForPosition(w http.ResponseWriter, r *http.Request, view bool) bool {
	raw := r.URL.Query().Get("min_position")
	if raw != "" {
		pos, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidQuery, "min_position", "min_position must be a non-negative integer"))
			return false
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.MaxWait)
		defer cancel()
		wait := a.cfg.Node.WaitApplied
		if view {
			wait = a.cfg.Node.WaitView
		}
		if err := wait(ctx, pos); err != nil {
			writeError(w, chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "position %d was not reached within %s", pos, a.cfg.MaxWait))
			return false
		}
	}
	if raw == "" && view {
		// No explicit position: wait for the view to include everything this node had
		// committed when the request arrived, so a client reads its own acknowledged
		// writes. A stalled projector degrades this to a stale answer (the header says
		// how stale, /ready says why) rather than failing every read.
		if h, err := a.cfg.Store.Head(r.Context()); err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), a.cfg.MaxWait)
			err := a.cfg.Node.WaitView(ctx, h.Position)
			cancel()
			if err != nil && r.URL.Query().Get("consistency") == "linearizable" {
				writeError(w, chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "the view has not reached position %d; a linearizable read cannot be served stale", h.Position))
				return false
			}
		}
	}
	var pos uint64
	if view {
		pos, _ = a.cfg.Reads.Position(r.Context())
	} else if h, err := a.cfg.Store.Head(r.Context()); err == nil {
		pos = h.Position
	}
	w.Header().Set("X-Chronicle-Position", strconv.FormatUint(pos, 10))
	return true
}

// intParam parses an optional bounded integer query parameter.
func intParam(r *http.Request, name string, def, lo, hi uint64) (uint64, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidQuery, name, "%s must be an integer from %d to %d", name, lo, hi)
	}
	return v, nil
}

func accountIDParam(r *http.Request) (string, error) {
	id := chi.URLParam(r, "id")
	if err := chronicle.ValidateAccountID("id", id); err != nil {
		return "", err
	}
	return id, nil
}

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request) {
	if !a.consistent(w, r) {
		return
	}
	limit, err := intParam(r, "limit", chronicle.DefaultPageSize, 1, chronicle.MaxPageSize)
	if err != nil {
		writeError(w, err)
		return
	}
	after := r.URL.Query().Get("after")
	if after != "" {
		if err := chronicle.ValidateAccountID("after", after); err != nil {
			writeError(w, err)
			return
		}
	}
	if !a.waitForPosition(w, r, true) {
		return
	}
	accts, err := a.cfg.Reads.Accounts(r.Context(), after, int(limit))
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]api.Account, len(accts))
	for i, acc := range accts {
		out[i] = toAccountJSON(acc)
	}
	body := api.Accounts{Accounts: out, Total: len(out)}
	if len(out) == int(limit) {
		body.NextAfter = out[len(out)-1].AccountID
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request) {
	if !a.consistent(w, r) {
		return
	}
	id, err := accountIDParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.waitForPosition(w, r, true) {
		return
	}
	acc, err := a.cfg.Reads.Account(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toAccountJSON(acc))
}

func (a *API) transactions(w http.ResponseWriter, r *http.Request) {
	if !a.consistent(w, r) {
		return
	}
	id, err := accountIDParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	limit, err := intParam(r, "limit", chronicle.DefaultPageSize, 1, chronicle.MaxPageSize)
	if err != nil {
		writeError(w, err)
		return
	}
	before, err := intParam(r, "before", 0, 0, 1<<62)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.waitForPosition(w, r, true) {
		return
	}
	lines, err := a.cfg.Reads.Transactions(r.Context(), id, before, int(limit))
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]api.Transaction, len(lines))
	for i, l := range lines {
		out[i] = toTransaction(l)
	}
	body := api.Transactions{AccountID: id, Transactions: out, Total: len(out)}
	if len(out) == int(limit) && out[len(out)-1].Version > 1 {
		body.NextBefore = out[len(out)-1].Version
	}
	writeJSON(w, http.StatusOK, body)
}

// parseTimestamp accepts RFC 3339 with or without fractional seconds.
func parseTimestamp(raw string) (time.Time, error) {
	if raw == "" {
		return time.Time{}, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeMissingField, "timestamp", "timestamp is required (RFC 3339, e.g. 2026-01-02T15:04:05Z)")
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidTimestamp, "timestamp", "timestamp %q is not RFC 3339 (e.g. 2026-01-02T15:04:05Z)", truncate(raw, 64))
	}
	return t, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (a *API) balanceAt(w http.ResponseWriter, r *http.Request) {
	if !a.consistent(w, r) {
		return
	}
	id, err := accountIDParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	t, err := parseTimestamp(r.URL.Query().Get("timestamp"))
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.waitForPosition(w, r, false) {
		return
	}
	acc, err := a.cfg.Store.Account(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	p, err := a.cfg.Store.BalanceAt(r.Context(), id, t)
	if err != nil {
		writeError(w, err)
		return
	}
	cur, _ := chronicle.LookupCurrency(acc.Currency)
	writeJSON(w, http.StatusOK, api.Balance{
		AccountID: id, Balance: chronicle.FormatMinor(p.Balance, cur), Currency: acc.Currency,
		At: t.UTC().Format(time.RFC3339Nano), AsOf: p.Time, Position: p.Position,
	})
}

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	if !a.consistent(w, r) {
		return
	}
	q := r.URL.Query()
	limit, err := intParam(r, "limit", 100, 1, chronicle.MaxEventsPage)
	if err != nil {
		writeError(w, err)
		return
	}
	after, err := intParam(r, "after", 0, 0, 1<<62)
	if err != nil {
		writeError(w, err)
		return
	}
	eq := chronicle.EventQuery{After: after, Limit: int(limit), EventType: q.Get("type"), AggregateID: q.Get("aggregate_id")}
	switch order := q.Get("order"); order {
	case "", "desc":
		// Newest first by default, as the seed listed its log; ?after=N then pages back.
		eq.Descending = order == "desc" || q.Get("after") == ""
	case "asc":
	default:
		writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidQuery, "order", "order must be asc or desc"))
		return
	}
	if eq.AggregateID != "" {
		if err := chronicle.ValidateAccountID("aggregate_id", eq.AggregateID); err != nil {
			writeError(w, err)
			return
		}
	}
	if len(eq.EventType) > 64 {
		writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidQuery, "type", "type is too long"))
		return
	}
	if !a.waitForPosition(w, r, false) {
		return
	}
	// The newest events come with the JSON the store keeps (shared with the publisher and
	// the stream hub); the page around them is written by hand, as writeJSON would.
	events, err := chronicle.ReadEncodedEvents(r.Context(), a.cfg.Store, eq)
	if err != nil {
		writeError(w, err)
		return
	}
	var next uint64
	if len(events) == int(limit) {
		next = events[len(events)-1].Event.Position
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(appendEventsPage(nil, events, next)) // the client went away; nothing to do
}

// appendEventsPage appends api.Events{Events: events, Total: len(events), NextAfter:
// next} exactly as writeJSON encodes it (newline included), from each event's JSON.
func appendEventsPage(b []byte, events []chronicle.EncodedEvent, next uint64) []byte {
	n := 64
	for i := range events {
		n += len(events[i].JSON) + 1
	}
	b = slices.Grow(b, n)
	b = append(b, `{"events":[`...)
	for i := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, events[i].JSON...)
	}
	b = append(b, `],"total":`...)
	b = strconv.AppendInt(b, int64(len(events)), 10)
	if next != 0 {
		b = append(b, `,"next_after":`...)
		b = strconv.AppendUint(b, next, 10)
	}
	return append(b, "}\n"...)
}
