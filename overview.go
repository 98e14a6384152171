package chronicle

import (
	"context"
	"math/big"
	"strings"
)

// Overview totals the ledger for the dashboard's overview page.
//
// Money held in a currency is what customers have paid in minus what they have taken out:
// minus the balance of the currency's external account (@world:CUR), which is the other
// side of every deposit and withdrawal. Because every posting is double-entry, it equals
// the sum of every customer account's balance in the currency, overdrawn (negative)
// balances included; it is not the sum of the positive balances.
type Overview struct {
	// Position is the log position the totals are as of.
	Position uint64
	// Accounts is the number of customer accounts (external accounts excluded).
	Accounts int64
	// Held lists the currencies in which the ledger holds a non-zero amount, by code.
	Held []CurrencyHeld
	// Scanned reports totals computed by reading every account (cost grows with the
	// ledger) rather than kept as they change; the API reuses such totals for a while.
	Scanned bool
}

// CurrencyHeld is the money held in one currency, in its minor units. A big.Int because
// a sum of int64 balances need not fit in one.
type CurrencyHeld struct {
	Currency string
	Held     *big.Int
}

// OverviewReader is a read model that can total the ledger (every read model in this
// repository is one).
type OverviewReader interface {
	Overview(ctx context.Context) (Overview, error)
}

// FormatMinorBig is FormatMinor for any integer.
func FormatMinorBig(minor *big.Int, cur Currency) string {
	if minor.IsInt64() {
		return FormatMinor(minor.Int64(), cur)
	}
	exp := max(cur.Exponent, 0)
	digits := new(big.Int).Abs(minor).String() // more than 18 digits: longer than exp
	var sb strings.Builder
	if minor.Sign() < 0 {
		sb.WriteByte('-')
	}
	sb.WriteString(digits[:len(digits)-exp])
	if exp > 0 {
		sb.WriteByte('.')
		sb.WriteString(digits[len(digits)-exp:])
	}
	return sb.String()
}
