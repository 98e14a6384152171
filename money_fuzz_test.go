package chronicle

import (
	"encoding/json"
	"strings"
	"testing"
)

// fuzzExponents are the exponents the ISO table uses, plus 18, the largest exponent at
// which every int64 formats within the 40-character limit.
var fuzzExponents = []int{0, 2, 3, 4, 18}

// FuzzParseAmount: ParseMoney never panics; whatever it accepts formats back to text that
// parses to the same minor units, has exactly Exponent decimals, and agrees with ParseDecimal.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{
		"0", "-0", "12.50", "12.5", "-0.05", "007.5", "1.500", "700", "1e3", "+1", ".5", "5.",
		"0x10", " 1", "", "-", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"92233720368547758.07", "92233720368547758.08", "-92233720368547758.08",
		"18446744073709551616", strings.Repeat("9", 40), strings.Repeat("9", 41), "1.2.3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, decErr := ParseDecimal(s)
		for _, exp := range fuzzExponents {
			cur := Currency{Code: "TST", Exponent: exp}
			v, err := ParseMoney(s, cur)
			if err != nil {
				if e, ok := err.(*Error); !ok || e.Kind != KindRejected || e.Code != CodeInvalidAmount || e.Field != "amount" {
					t.Fatalf("ParseMoney(%q, exp %d): unexpected error %#v", s, exp, err)
				}
				if v != 0 {
					t.Fatalf("ParseMoney(%q, exp %d) returned %d with an error", s, exp, v)
				}
				continue
			}
			if decErr != nil {
				t.Fatalf("ParseMoney(%q) accepted what ParseDecimal rejects: %v", s, decErr)
			}
			out := FormatMinor(v, cur)
			if exp > 0 && len(out)-strings.IndexByte(out, '.')-1 != exp {
				t.Fatalf("FormatMinor(%d, exp %d) = %q: not exactly %d decimals", v, exp, out, exp)
			}
			back, err := ParseMoney(out, cur)
			if err != nil || back != v {
				t.Fatalf("ParseMoney(%q, exp %d) = %d, FormatMinor = %q, which parses to %d, %v", s, exp, v, out, back, err)
			}
		}
	})
}

// FuzzDecimalJSON: UnmarshalJSON never panics, fails only with an *Error, and a value it
// accepts re-marshals to a JSON string that decodes to the same Decimal, both directly
// and through encoding/json.
func FuzzDecimalJSON(f *testing.F) {
	for _, s := range []string{
		`300`, `12.5`, `-0.05`, `"12.50"`, `"007.5"`, `"\u0031\u0032"`, `1e3`, `"1e3"`, `null`,
		`true`, `{}`, `[]`, `""`, `" 5"`, `"+5"`, `+5`, `0x10`, `"12`, ` 7 `,
		`123456789012345678901234567890`, `"` + strings.Repeat("1", 41) + `"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Decimal
		err := d.UnmarshalJSON(b)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("UnmarshalJSON(%q): error %T %v is not *Error", b, err, err)
			}
			if d != "" {
				t.Fatalf("UnmarshalJSON(%q) set %q and failed", b, d)
			}
			return
		}
		if _, err := ParseDecimal(string(d)); err != nil {
			t.Fatalf("UnmarshalJSON(%q) accepted %q, which ParseDecimal rejects: %v", b, d, err)
		}
		out, err := d.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON(%q): %v", d, err)
		}
		var again Decimal
		if err := again.UnmarshalJSON(out); err != nil || again != d {
			t.Fatalf("UnmarshalJSON(%q) = %q, marshals to %s, which decodes to %q, %v", b, d, out, again, err)
		}
		var viaPkg struct{ A Decimal }
		if err := json.Unmarshal([]byte(`{"A":`+string(out)+`}`), &viaPkg); err != nil || viaPkg.A != d {
			t.Fatalf("json.Unmarshal of %s = %q, %v; want %q", out, viaPkg.A, err, d)
		}
	})
}
