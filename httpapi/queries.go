package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/chronicle-ledger/chronicle"
)

// accountJSON is an account as the seed's query API returned it, balances as strings.
type accountJSON struct {
	AccountID      string    `json:"account_id"`
	OwnerName      string    `json:"owner_name"`
	Balance        string    `json:"balance"`
	Currency       string    `json:"currency"`
	OverdraftLimit string    `json:"overdraft_limit,omitempty"`
	Status         string    `json:"status"`
	CreatedAt      time.Time `json:"created_at"`
	LastUpdated    time.Time `json:"last_updated"`
	Version        uint64    `json:"version"`
}

func toAccountJSON(a chronicle.Account) accountJSON {
	cur, _ := chronicle.LookupCurrency(a.Currency) // stored accounts hold known currencies
	out := accountJSON{AccountID: a.ID, OwnerName: a.OwnerName, Balance: chronicle.FormatMinor(a.Balance, cur),
		Currency: a.Currency, Status: string(a.Status), CreatedAt: a.CreatedAt, LastUpdated: a.LastUpdated, Version: a.Version}
	if a.OverdraftLimit > 0 {
		out.OverdraftLimit = chronicle.FormatMinor(a.OverdraftLimit, cur)
	}
	return out
}

// transactionJSON is one statement line, named as the seed's transactions table.
type transactionJSON struct {
	TransactionID string    `json:"transaction_id"`
	AccountID     string    `json:"account_id"`
	Type          string    `json:"type"`
	EventType     string    `json:"event_type"`
	Amount        string    `json:"amount"`
	BalanceAfter  string    `json:"balance_after"`
	Currency      string    `json:"currency"`
	Description   string    `json:"description,omitempty"`
	TransferID    string    `json:"transfer_id,omitempty"`
	Counterparty  string    `json:"counterparty,omitempty"`
	Position      uint64    `json:"position"`
	Version       uint64    `json:"version"`
	Timestamp     time.Time `json:"timestamp"`
}

func toTransaction(e chronicle.Event) (transactionJSON, error) {
	d, err := e.Data()
	if err != nil {
		return transactionJSON{}, err
	}
	t := transactionJSON{TransactionID: e.EventID, AccountID: e.AggregateID, EventType: e.EventType,
		Amount: d.Amount, BalanceAfter: d.BalanceAfter, Currency: d.Currency, Description: d.Description,
		TransferID: d.TransferID, Counterparty: d.Counterparty, Position: e.Position, Version: e.EventVersion, Timestamp: e.CreatedAt}
	switch {
	case e.EventType == chronicle.EventAccountCreated:
		t.Type, t.Amount = "opening_balance", d.InitialBalance
	case e.EventType == chronicle.EventMoneyDeposited && d.TransferID != "":
		t.Type = "transfer_in"
	case e.EventType == chronicle.EventMoneyWithdrawn && d.TransferID != "":
		t.Type = "transfer_out"
	case e.EventType == chronicle.EventMoneyDeposited:
		t.Type = "deposit"
	case e.EventType == chronicle.EventMoneyWithdrawn:
		t.Type = "withdrawal"
	default:
		t.Type = e.EventType
	}
	return t, nil
}

// waitForPosition honours ?min_position=N: read-your-writes, bounded by MaxWait.
func (a *API) waitForPosition(w http.ResponseWriter, r *http.Request) bool {
	raw := r.URL.Query().Get("min_position")
	if raw != "" {
		pos, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			writeError(w, chronicle.FieldErrorf(chronicle.KindMalformed, chronicle.CodeInvalidQuery, "min_position", "min_position must be a non-negative integer"))
			return false
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.MaxWait)
		defer cancel()
		if err := a.cfg.Node.WaitApplied(ctx, pos); err != nil {
			writeError(w, chronicle.Errorf(chronicle.KindTimeout, chronicle.CodeTimeout, "position %d was not reached within %s", pos, a.cfg.MaxWait))
			return false
		}
	}
	if h, err := a.cfg.Store.Head(r.Context()); err == nil {
		w.Header().Set("X-Chronicle-Position", strconv.FormatUint(h.Position, 10))
	}
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
	if !a.waitForPosition(w, r) {
		return
	}
	accts, err := a.cfg.Store.Accounts(r.Context(), after, int(limit))
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]accountJSON, len(accts))
	for i, acc := range accts {
		out[i] = toAccountJSON(acc)
	}
	body := map[string]any{"accounts": out, "total": len(out)}
	if len(out) == int(limit) {
		body["next_after"] = out[len(out)-1].AccountID
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *API) getAccount(w http.ResponseWriter, r *http.Request) {
	id, err := accountIDParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.waitForPosition(w, r) {
		return
	}
	acc, err := a.cfg.Store.Account(r.Context(), id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toAccountJSON(acc))
}

func (a *API) transactions(w http.ResponseWriter, r *http.Request) {
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
	if !a.waitForPosition(w, r) {
		return
	}
	events, err := a.cfg.Store.Transactions(r.Context(), id, before, int(limit))
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]transactionJSON, 0, len(events))
	for _, e := range events {
		t, err := toTransaction(e)
		if err != nil {
			writeError(w, err)
			return
		}
		out = append(out, t)
	}
	body := map[string]any{"account_id": id, "transactions": out, "total": len(out)}
	if len(out) == int(limit) && out[len(out)-1].Version > 1 {
		body["next_before"] = out[len(out)-1].Version
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
	if !a.waitForPosition(w, r) {
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
	writeJSON(w, http.StatusOK, map[string]any{
		"account_id": id, "balance": chronicle.FormatMinor(p.Balance, cur), "currency": acc.Currency,
		"at": t.UTC().Format(time.RFC3339Nano), "as_of": p.Time, "position": p.Position,
	})
}

func (a *API) events(w http.ResponseWriter, r *http.Request) {
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
	if !a.waitForPosition(w, r) {
		return
	}
	events, err := a.cfg.Store.Events(r.Context(), eq)
	if err != nil {
		writeError(w, err)
		return
	}
	body := map[string]any{"events": events, "total": len(events)}
	if len(events) == int(limit) {
		body["next_after"] = events[len(events)-1].Position
	}
	writeJSON(w, http.StatusOK, body)
}
