package chronicle

import "testing"

// The checked-in table itself, not only what LookupCurrency makes of it: a hand edit or a
// bad regeneration shows up here.
func TestCurrencyTable(t *testing.T) {
	if len(currencyTable) < 150 {
		t.Fatalf("currency table has %d entries, want the whole ISO table", len(currencyTable))
	}
	for i, c := range currencyTable {
		if len(c.Code) != 3 {
			t.Errorf("entry %d: code %q is not 3 letters", i, c.Code)
		}
		for j := 0; j < len(c.Code); j++ {
			if c.Code[j] < 'A' || c.Code[j] > 'Z' {
				t.Errorf("entry %d: code %q is not upper-case ASCII letters", i, c.Code)
				break
			}
		}
		// Binary search needs strictly ascending codes: sorted and unique.
		if i > 0 && currencyTable[i-1].Code >= c.Code {
			t.Errorf("entry %d: %q follows %q", i, c.Code, currencyTable[i-1].Code)
		}
		if c.Exponent < 0 || c.Exponent > 4 {
			t.Errorf("%s: exponent %d outside 0..4", c.Code, c.Exponent)
		}
	}
}

func TestCurrencyTableKnownValues(t *testing.T) {
	want := map[string]int{
		"USD": 2, "EUR": 2, "JPY": 0, "BHD": 3, "KWD": 3, "CLF": 4, "XAF": 0,
		// ISO corrections to CLDR's digits.
		"IQD": 3, "IDR": 2,
	}
	have := make(map[string]int, len(currencyTable))
	for _, c := range currencyTable {
		have[c.Code] = c.Exponent
	}
	for code, exp := range want {
		if got, ok := have[code]; !ok || got != exp {
			t.Errorf("%s: in table %v, exponent %d; want exponent %d", code, ok, got, exp)
		}
	}
	// No currency, testing, gold, offshore yuan, withdrawn Deutsche Mark.
	for _, code := range []string{"XXX", "XTS", "XAU", "CNH", "DEM"} {
		if got, ok := have[code]; ok {
			t.Errorf("%s is in the table (exponent %d)", code, got)
		}
	}
}
