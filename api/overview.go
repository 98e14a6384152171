package api

// Overview is the response to GET /overview: the ledger's totals for the dashboard.
type Overview struct {
	// Position is the log position the totals are as of.
	Position uint64 `json:"position"`
	// Accounts counts customer accounts (the external @world accounts excluded).
	Accounts int64 `json:"accounts"`
	// Currencies lists the currencies in which the ledger holds a non-zero amount.
	Currencies []CurrencyHeld `json:"currencies"`
	// Scanned is true when the read model computed the totals by reading every account;
	// such totals are reused for a few seconds (httpapi.OverviewReuse).
	Scanned bool `json:"scanned"`
}

// CurrencyHeld is the money the ledger holds in one currency: what came in through
// deposits and opening balances minus what left through withdrawals, which is minus
// the balance of the external account @world:CUR and the sum of every account's
// balance in it (overdrawn ones counted negative).
type CurrencyHeld struct {
	Currency string `json:"currency"`
	Held     string `json:"total"` // "total", not "held": accounts' held is money reserved by pending transfers
}
