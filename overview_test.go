package chronicle

import (
	"math"
	"math/big"
	"testing"
)

func TestFormatMinorBig(t *testing.T) {
	usd, _ := LookupCurrency("USD")
	jpy, _ := LookupCurrency("JPY")
	bhd, _ := LookupCurrency("BHD")
	beyond := new(big.Int).Mul(big.NewInt(math.MaxInt64), big.NewInt(10)) // 92233720368547758070
	for _, c := range []struct {
		v    *big.Int
		cur  Currency
		want string
	}{
		{big.NewInt(0), usd, "0.00"},
		{big.NewInt(-5), usd, "-0.05"},
		{big.NewInt(1234), bhd, "1.234"},
		{big.NewInt(math.MinInt64), usd, "-92233720368547758.08"},
		{beyond, usd, "922337203685477580.70"},
		{new(big.Int).Neg(beyond), bhd, "-92233720368547758.070"},
		{beyond, jpy, "92233720368547758070"},
	} {
		if got := FormatMinorBig(c.v, c.cur); got != c.want {
			t.Errorf("FormatMinorBig(%v, %s) = %q, want %q", c.v, c.cur.Code, got, c.want)
		}
	}
}
