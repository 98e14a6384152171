package chronicle

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// wantError checks that err is an *Error (directly, not wrapped: callers type-assert it)
// with the given kind, code and field.
func wantError(t testing.TB, err error, kind Kind, code, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %v is %T, want *Error", err, err)
	}
	if e.Kind != kind || e.Code != code || e.Field != field {
		t.Fatalf("error %v: kind %d code %q field %q, want kind %d code %q field %q",
			err, e.Kind, e.Code, e.Field, kind, code, field)
	}
	if e.Message == "" {
		t.Fatalf("error %v has no message", err)
	}
}

func mustCurrency(t testing.TB, code string) Currency {
	t.Helper()
	c, err := LookupCurrency(code)
	if err != nil {
		t.Fatalf("LookupCurrency(%q): %v", code, err)
	}
	return c
}

var (
	usd = Currency{Code: "USD", Exponent: 2}
	jpy = Currency{Code: "JPY", Exponent: 0}
	bhd = Currency{Code: "BHD", Exponent: 3}
	clf = Currency{Code: "CLF", Exponent: 4}
)

func TestLookupCurrencyExponents(t *testing.T) {
	want := map[string]int{
		"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "CNY": 2, "INR": 2,
		"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "XAF": 0, "XOF": 0, "XPF": 0,
		"BHD": 3, "KWD": 3, "JOD": 3, "TND": 3, "OMR": 3, "LYD": 3,
		"CLF": 4,
		"XCD": 2,
		// Standard, not cash, rounding: CLDR rounds cash to whole units for these.
		"HUF": 2, "TWD": 2, "CZK": 2, "SEK": 2, "NOK": 2, "CRC": 2,
		// CLDR says 0 (or 0 for IQD); ISO 4217 says otherwise, and ISO wins.
		"IDR": 2, "COP": 2, "PKR": 2, "IRR": 2, "LBP": 2, "IQD": 3,
	}
	for code, exp := range want {
		c := mustCurrency(t, code)
		if c.Code != code || c.Exponent != exp {
			t.Errorf("LookupCurrency(%q) = %+v, want exponent %d", code, c, exp)
		}
	}
}

func TestLookupCurrencyCase(t *testing.T) {
	for _, in := range []string{"usd", "USD", "UsD", "uSd"} {
		c, err := LookupCurrency(in)
		if err != nil || c != usd {
			t.Errorf("LookupCurrency(%q) = %+v, %v; want %+v", in, c, err, usd)
		}
	}
}

func TestLookupCurrencyRejects(t *testing.T) {
	for _, in := range []string{
		"", "US", "USDD", "U$D", " USD", "USD ", "usd\x00", "ÜSD", "12 ", strings.Repeat("X", 1000),
		// Not currencies: no currency, testing, metals, SDR, bond units.
		"XXX", "xts", "XAU", "XAG", "XPT", "XPD", "XDR", "XBA", "XSU", "XUA",
		// Not ISO 4217.
		"CNH",
		// Withdrawn before CLDR 32, and codes that are not currencies at all.
		"DEM", "FRF", "ZZZ", "AAA",
	} {
		c, err := LookupCurrency(in)
		if c != (Currency{}) {
			t.Errorf("LookupCurrency(%q) returned %+v with its error", in, c)
		}
		wantError(t, err, KindRejected, CodeUnknownCurrency, "currency")
		if len(err.Error()) > 200 {
			t.Errorf("LookupCurrency(%q): error message is %d bytes long", in[:10], len(err.Error()))
		}
	}
}

func TestCurrencies(t *testing.T) {
	list := Currencies()
	if len(list) < 150 {
		t.Fatalf("Currencies() has %d entries, want the whole ISO table", len(list))
	}
	for i, c := range list {
		if len(c.Code) != 3 || strings.ToUpper(c.Code) != c.Code || strings.Trim(c.Code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
			t.Errorf("bad code %q", c.Code)
		}
		if i > 0 && list[i-1].Code >= c.Code {
			t.Errorf("not sorted or duplicated: %q then %q", list[i-1].Code, c.Code)
		}
		if c.Exponent < 0 || c.Exponent > 4 {
			t.Errorf("%s: exponent %d", c.Code, c.Exponent)
		}
		if got := mustCurrency(t, strings.ToLower(c.Code)); got != c {
			t.Errorf("LookupCurrency(%q) = %+v, listed as %+v", c.Code, got, c)
		}
	}
	// The caller owns the slice: changing it changes nothing else.
	list[0].Exponent = 99
	if Currencies()[0].Exponent == 99 {
		t.Error("Currencies() returned the shared table")
	}
}

func TestParseDecimal(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "0.0", "5", "12.5", "12.50", "-12.50", "007.5", "000", "0.000001",
		"9223372036854775808", "-99999999999999999999999999999999999999", // valid text; range is MinorUnits' job
		strings.Repeat("1", 40),
	} {
		d, err := ParseDecimal(s)
		if err != nil || string(d) != s {
			t.Errorf("ParseDecimal(%q) = %q, %v", s, d, err)
		}
	}
	for _, s := range []string{
		"", "-", ".", "-.", ".5", "5.", "-.5", "-5.", "+5", "1e3", "1E3", "1.5e2", "0x10", "0X1F",
		" 5", "5 ", "1 000", "1,5", "1.2.3", "--5", "-+5", "5-", "NaN", "Inf", "-Inf", "١٢",
		"1_000", "\t5", "5\n", "12.5\x00", strings.Repeat("1", 41), "-" + strings.Repeat("1", 40),
	} {
		d, err := ParseDecimal(s)
		if d != "" {
			t.Errorf("ParseDecimal(%q) returned %q with its error", s, d)
		}
		wantError(t, err, KindRejected, CodeInvalidAmount, "amount")
	}
}

func TestParseMoney(t *testing.T) {
	usdMax := "92233720368547758.07"
	tests := []struct {
		in   string
		cur  Currency
		want int64
	}{
		{"0", usd, 0},
		{"-0", usd, 0},
		{"-0.00", usd, 0},
		{"700", usd, 70000},
		{"700.00", usd, 70000},
		{"12.5", usd, 1250},
		{"12.50", usd, 1250},
		{"-0.05", usd, -5},
		{"007.5", usd, 750},
		{"1.500", usd, 150}, // trailing zeros beyond the exponent are fine
		{"1.50000000000000000000000000000000000", usd, 150},
		{"0.010", usd, 1},
		{"5", jpy, 5},
		{"5.000", jpy, 5},
		{"-5", jpy, -5},
		{"1.234", bhd, 1234},
		{"1.2", bhd, 1200},
		{"1", clf, 10000},
		{"9223372036854775807", jpy, math.MaxInt64},
		{"-9223372036854775808", jpy, math.MinInt64},
		{"09223372036854775807.000", jpy, math.MaxInt64},
		{usdMax, usd, math.MaxInt64},
		{"-92233720368547758.08", usd, math.MinInt64},
		{"9223372036854775.807", bhd, math.MaxInt64},
		{"-922337203685477.5808", clf, math.MinInt64},
		{"0000000000000000000000000000000000000001", jpy, 1},
	}
	for _, tc := range tests {
		got, err := ParseMoney(tc.in, tc.cur)
		if err != nil || got != tc.want {
			t.Errorf("ParseMoney(%q, %s) = %d, %v; want %d", tc.in, tc.cur.Code, got, err, tc.want)
		}
		got, err = Decimal(tc.in).MinorUnits(tc.cur)
		if err != nil || got != tc.want {
			t.Errorf("Decimal(%q).MinorUnits(%s) = %d, %v; want %d", tc.in, tc.cur.Code, got, err, tc.want)
		}
	}
}

func TestParseMoneyRejects(t *testing.T) {
	tests := []struct {
		in      string
		cur     Currency
		message string
	}{
		{"1.234", usd, "too many decimal places for USD (2)"},
		{"1.001", usd, "too many decimal places for USD (2)"},
		{"0.0000000001", usd, "too many decimal places for USD (2)"},
		{"-0.005", usd, "too many decimal places for USD (2)"},
		{"5.5", jpy, "too many decimal places for JPY (0)"},
		{"1.2345", bhd, "too many decimal places for BHD (3)"},
		{"9223372036854775808", jpy, "amount out of range"},
		{"-9223372036854775809", jpy, "amount out of range"},
		{"92233720368547758.08", usd, "amount out of range"},
		{"-92233720368547758.09", usd, "amount out of range"},
		{"92233720368547758080", usd, "amount out of range"},
		{"9223372036854775808", usd, "amount out of range"},
		{"99999999999999999999999999999999999999", usd, "amount out of range"},
		{"18446744073709551616", jpy, "amount out of range"}, // 1<<64: must not wrap to 0
		{"18446744073709551617", jpy, "amount out of range"}, // would wrap to 1
		{"922337203685477.5808", clf, "amount out of range"},
		{"1.5", Currency{Code: "ZZZ", Exponent: 0}, "too many decimal places for ZZZ (0)"},
		{"1", Currency{Code: "ZZZ", Exponent: 19}, "amount out of range"},
	}
	for _, tc := range tests {
		got, err := ParseMoney(tc.in, tc.cur)
		if got != 0 {
			t.Errorf("ParseMoney(%q, %s) returned %d with its error", tc.in, tc.cur.Code, got)
		}
		wantError(t, err, KindRejected, CodeInvalidAmount, "amount")
		if msg := err.(*Error).Message; msg != tc.message {
			t.Errorf("ParseMoney(%q, %s): message %q, want %q", tc.in, tc.cur.Code, msg, tc.message)
		}
	}
	// Syntax errors surface from both entry points, and MinorUnits re-checks the text of
	// a Decimal made by conversion rather than by ParseDecimal.
	for _, s := range []string{"", "1e3", "+1", ".5", "abc"} {
		_, err := ParseMoney(s, usd)
		wantError(t, err, KindRejected, CodeInvalidAmount, "amount")
		_, err = Decimal(s).MinorUnits(usd)
		wantError(t, err, KindRejected, CodeInvalidAmount, "amount")
	}
}

// Zero is zero at any exponent; the scaling loop must not overflow or run long.
func TestMinorUnitsLargeExponent(t *testing.T) {
	for _, s := range []string{"0", "-0", "0.000", "000.0"} {
		got, err := Decimal(s).MinorUnits(Currency{Code: "ZZZ", Exponent: math.MaxInt})
		if err != nil || got != 0 {
			t.Errorf("%q at exponent MaxInt = %d, %v", s, got, err)
		}
	}
	got, err := Decimal("0.000000000000000001").MinorUnits(Currency{Code: "ZZZ", Exponent: 18})
	if err != nil || got != 1 {
		t.Errorf("1e-18 at exponent 18 = %d, %v", got, err)
	}
	_, err = Decimal("1").MinorUnits(Currency{Code: "ZZZ", Exponent: math.MaxInt})
	wantError(t, err, KindRejected, CodeInvalidAmount, "amount")
}

func TestFormatMinor(t *testing.T) {
	tests := []struct {
		minor int64
		cur   Currency
		want  string
	}{
		{70000, usd, "700.00"},
		{-5, usd, "-0.05"},
		{5, usd, "0.05"},
		{-50, usd, "-0.50"},
		{100, usd, "1.00"},
		{0, usd, "0.00"},
		{0, jpy, "0"},
		{5, jpy, "5"},
		{-5, jpy, "-5"},
		{1234, bhd, "1.234"},
		{-1, bhd, "-0.001"},
		{1, clf, "0.0001"},
		{math.MaxInt64, jpy, "9223372036854775807"},
		{math.MinInt64, jpy, "-9223372036854775808"},
		{math.MaxInt64, usd, "92233720368547758.07"},
		{math.MinInt64, usd, "-92233720368547758.08"},
		{math.MinInt64, bhd, "-9223372036854775.808"},
		{math.MinInt64, clf, "-922337203685477.5808"},
		{math.MinInt64 + 1, usd, "-92233720368547758.07"},
		{1, Currency{Code: "ZZZ", Exponent: 19}, "0.0000000000000000001"},
		{math.MinInt64, Currency{Code: "ZZZ", Exponent: 19}, "-0.9223372036854775808"},
		{12, Currency{Code: "ZZZ", Exponent: -3}, "12"},
	}
	for _, tc := range tests {
		if got := FormatMinor(tc.minor, tc.cur); got != tc.want {
			t.Errorf("FormatMinor(%d, %s/%d) = %q, want %q", tc.minor, tc.cur.Code, tc.cur.Exponent, got, tc.want)
		}
	}
}

// ParseMoney(FormatMinor(x)) == x for every int64 and the exponents real currencies use
// (and the largest one whose values all fit in 40 characters of text).
func TestFormatParseRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		x := rapid.OneOf(
			rapid.Int64(),
			rapid.SampledFrom([]int64{0, 1, -1, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1}),
		).Draw(t, "x")
		exp := rapid.SampledFrom([]int{0, 2, 3, 4, 18, 19}).Draw(t, "exp")
		cur := Currency{Code: "TST", Exponent: exp}
		s := FormatMinor(x, cur)
		if !strings.Contains(s, ".") != (exp == 0) {
			t.Fatalf("FormatMinor(%d, exp %d) = %q: decimal point wrong", x, exp, s)
		}
		if exp > 0 && len(s)-strings.IndexByte(s, '.')-1 != exp {
			t.Fatalf("FormatMinor(%d, exp %d) = %q: not exactly %d decimals", x, exp, s, exp)
		}
		got, err := ParseMoney(s, cur)
		if err != nil || got != x {
			t.Fatalf("ParseMoney(FormatMinor(%d, exp %d) = %q) = %d, %v", x, exp, s, got, err)
		}
	})
}

// MinorUnits agrees with exact big-integer arithmetic on arbitrary plain decimals: the
// value when it fits, "out of range" when it does not, never a wrapped number.
func TestMinorUnitsMatchesBigInt(t *testing.T) {
	minInt, maxInt := big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)
	rapid.Check(t, func(t *rapid.T) {
		digit := rapid.RuneFrom([]rune("0123456789"))
		neg := rapid.Bool().Draw(t, "neg")
		whole := rapid.StringOfN(digit, 1, 20, -1).Draw(t, "whole")
		frac := rapid.OneOf(rapid.Just(""), rapid.StringOfN(digit, 1, 18, -1)).Draw(t, "frac")
		exp := rapid.IntRange(0, 4).Draw(t, "exp")
		s := whole
		if frac != "" {
			s += "." + frac
		}
		if neg {
			s = "-" + s
		}
		got, err := ParseMoney(s, Currency{Code: "TST", Exponent: exp})

		// want = (whole.frac) * 10^exp, exactly.
		scaled := frac + strings.Repeat("0", exp)
		want, _ := new(big.Int).SetString(whole+scaled[:exp], 10)
		if neg {
			want.Neg(want)
		}
		switch {
		case strings.TrimRight(scaled[exp:], "0") != "":
			if err == nil || err.(*Error).Message != "too many decimal places for TST ("+string(rune('0'+exp))+")" {
				t.Fatalf("ParseMoney(%q, exp %d) = %d, %v; want too many decimal places", s, exp, got, err)
			}
		case want.Cmp(minInt) < 0 || want.Cmp(maxInt) > 0:
			if err == nil || err.(*Error).Message != "amount out of range" {
				t.Fatalf("ParseMoney(%q, exp %d) = %d, %v; want out of range", s, exp, got, err)
			}
		default:
			if err != nil || got != want.Int64() {
				t.Fatalf("ParseMoney(%q, exp %d) = %d, %v; want %s", s, exp, got, err, want)
			}
		}
	})
}

func TestDecimalUnmarshalJSON(t *testing.T) {
	type body struct {
		Amount Decimal `json:"amount"`
	}
	accept := []struct{ in, want string }{
		{`300`, "300"},
		{`12.5`, "12.5"},
		{`-0.05`, "-0.05"},
		{`0`, "0"},
		{`-0`, "-0"},
		{`"12.50"`, "12.50"},
		{`"007.5"`, "007.5"},
		{`"-1"`, "-1"},
		{`"\u0031\u0032"`, "12"}, // escapes are decoded before the decimal is checked
		{`92233720368547758.07`, "92233720368547758.07"},
		{`123456789012345678901234567890`, "123456789012345678901234567890"}, // exact; a float would round it
		{` 5 `, "5"},
	}
	for _, tc := range accept {
		var b body
		if err := json.Unmarshal([]byte(`{"amount":`+tc.in+`}`), &b); err != nil || string(b.Amount) != tc.want {
			t.Errorf("decode %s = %q, %v; want %q", tc.in, b.Amount, err, tc.want)
		}
		var d Decimal
		if err := d.UnmarshalJSON([]byte(tc.in)); err != nil || string(d) != tc.want {
			t.Errorf("UnmarshalJSON(%s) = %q, %v; want %q", tc.in, d, err, tc.want)
		}
	}

	// A JSON value of the wrong type: malformed.
	for _, in := range []string{`null`, `true`, `false`, `{}`, `{"v":1}`, `[]`, `[1]`} {
		var b body
		err := json.Unmarshal([]byte(`{"amount":`+in+`}`), &b)
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindMalformed || e.Code != CodeInvalidField || e.Field != "amount" {
			t.Errorf("decode %s: %v, want malformed %s", in, err, CodeInvalidField)
		}
		d := Decimal("keep")
		wantError(t, d.UnmarshalJSON([]byte(in)), KindMalformed, CodeInvalidField, "amount")
		if d != "keep" {
			t.Errorf("UnmarshalJSON(%s) changed the value to %q", in, d)
		}
	}

	// A string or number that is not a plain decimal: rejected.
	for _, in := range []string{
		`1e3`, `1E3`, `1.5e2`, `-1e-2`, `0.5E+1`, `1234567890123456789012345678901234567890.5`,
		`"1e3"`, `"0x10"`, `"+5"`, `""`, `" 5"`, `"5 "`, `"1 000"`, `".5"`, `"5."`, `"abc"`,
		`"NaN"`, `"Infinity"`, `"` + strings.Repeat("1", 41) + `"`, `"\u00a012"`,
	} {
		var b body
		err := json.Unmarshal([]byte(`{"amount":`+in+`}`), &b)
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindRejected || e.Code != CodeInvalidAmount || e.Field != "amount" {
			t.Errorf("decode %s: %v, want rejected %s", in, err, CodeInvalidAmount)
		}
		d := Decimal("keep")
		wantError(t, d.UnmarshalJSON([]byte(in)), KindRejected, CodeInvalidAmount, "amount")
		if d != "keep" {
			t.Errorf("UnmarshalJSON(%s) changed the value to %q", in, d)
		}
	}

	// Not JSON at all. encoding/json never passes such bytes (it reports a syntax error
	// first), but a direct call must still fail cleanly.
	for _, in := range []string{``, `   `, `+5`, `0x10`, `.5`, `5.`, `007`, `"12`, `"12"x`, `12 34`, `NaN`, `'5'`, "\x00"} {
		var d Decimal
		wantError(t, d.UnmarshalJSON([]byte(in)), KindMalformed, CodeInvalidJSON, "amount")
		var b body
		if err := json.Unmarshal([]byte(`{"amount":`+in+`}`), &b); err == nil {
			t.Errorf("decode %s succeeded", in)
		}
	}
}

func TestDecimalMarshalJSON(t *testing.T) {
	type body struct {
		Amount Decimal `json:"amount"`
	}
	out, err := json.Marshal(body{Amount: "12.50"})
	if err != nil || string(out) != `{"amount":"12.50"}` {
		t.Fatalf("Marshal = %s, %v", out, err)
	}
	var back body
	if err := json.Unmarshal(out, &back); err != nil || back.Amount != "12.50" {
		t.Fatalf("Unmarshal(%s) = %q, %v", out, back.Amount, err)
	}
	// Whatever text a Decimal holds, the output is a valid JSON string.
	for _, d := range []Decimal{"", "a\"b", "\x00<>&", "\xff"} {
		out, err := d.MarshalJSON()
		if err != nil || !json.Valid(out) {
			t.Errorf("MarshalJSON(%q) = %s, %v", string(d), out, err)
		}
	}
}

func TestCurrencyTableStable(t *testing.T) {
	a, b := Currencies(), Currencies()
	if !slices.Equal(a, b) {
		t.Fatal("Currencies() changed between calls")
	}
}
