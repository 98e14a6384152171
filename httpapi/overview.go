package httpapi

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/chronicle-ledger/chronicle"
	"github.com/chronicle-ledger/chronicle/api"
)

// OverviewReuse is how long totals a read model computed by scanning every account are
// served again before the next scan: the dashboard polls every few seconds from every
// open tab, and one scan of a million accounts must not run per poll. Totals kept in
// memory (the embedded read model's) are read fresh on every request.
const OverviewReuse = 10 * time.Second

// overviewMemo serves GET /overview: one computation at a time, scanned totals reused
// for OverviewReuse.
type overviewMemo struct {
	mu   sync.Mutex
	at   time.Time
	last chronicle.Overview
	ok   bool
}

func (m *overviewMemo) get(ctx context.Context, rd chronicle.OverviewReader) (chronicle.Overview, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ok && m.last.Scanned && time.Since(m.at) < OverviewReuse {
		return m.last, nil
	}
	o, err := rd.Overview(ctx)
	if err != nil {
		return o, err
	}
	m.last, m.at, m.ok = o, time.Now(), true
	return o, nil
}

// overviewHandler serves GET /overview from the read model: customer accounts and the
// money held per currency, as of the position it names.
func (a *API) overviewHandler() http.HandlerFunc {
	memo := &overviewMemo{}
	return func(w http.ResponseWriter, r *http.Request) {
		rd, ok := a.cfg.Reads.(chronicle.OverviewReader)
		if !ok {
			writeError(w, chronicle.Errorf(chronicle.KindNotFound, chronicle.CodeNotFound, "this node's read model keeps no overview"))
			return
		}
		o, err := memo.get(r.Context(), rd)
		if err != nil {
			writeError(w, err)
			return
		}
		body := api.Overview{Position: o.Position, Accounts: o.Accounts, Currencies: []api.CurrencyHeld{}, Scanned: o.Scanned}
		for _, h := range o.Held {
			cur, err := chronicle.LookupCurrency(h.Currency)
			if err != nil {
				continue // views hold known currencies only
			}
			body.Currencies = append(body.Currencies, api.CurrencyHeld{Currency: cur.Code, Held: chronicle.FormatMinorBig(h.Held, cur)})
		}
		writeJSON(w, http.StatusOK, body)
	}
}
