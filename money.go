package chronicle

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// Amounts are exact everywhere: a Decimal is text, a balance is an int64 count of minor
// units, and conversion between the two is digit arithmetic. No float is ever involved.

// Currency is an ISO 4217 currency and the number of decimals of its minor unit.
// The accepted currencies are frozen in currency_table.go (see internal/currencygen), so a
// dependency bump cannot change what the state machine accepts.
type Currency struct {
	Code     string
	Exponent int
}

// LookupCurrency resolves an ISO 4217 code (case-insensitive input, upper-case result).
// Unknown or malformed -> *Error KindRejected CodeUnknownCurrency (Field "currency").
func LookupCurrency(code string) (Currency, error) {
	if len(code) == 3 {
		var up [3]byte
		ok := true
		for i := 0; i < 3; i++ {
			c := code[i]
			switch {
			case 'A' <= c && c <= 'Z':
				up[i] = c
			case 'a' <= c && c <= 'z':
				up[i] = c - 'a' + 'A'
			default:
				ok = false
			}
		}
		if ok {
			key := string(up[:])
			if i, found := slices.BinarySearchFunc(currencyTable[:], key, func(c Currency, k string) int {
				return strings.Compare(c.Code, k)
			}); found {
				return currencyTable[i], nil
			}
		}
	}
	return Currency{}, FieldErrorf(KindRejected, CodeUnknownCurrency, "currency", "unknown currency %s", quoteInput(code))
}

// Currencies lists every ISO 4217 currency the table knows, sorted by code.
// The caller owns the returned slice.
func Currencies() []Currency {
	return slices.Clone(currencyTable[:])
}

// Decimal is a decimal amount as written by a client, kept as canonical text until a
// currency gives it a scale. The text is kept exactly as written ("007.50" stays
// "007.50"); only its syntax is checked on the way in (see ParseDecimal).
type Decimal string

// maxDecimalLen bounds the text of a Decimal, sign and point included.
const maxDecimalLen = 40

// UnmarshalJSON accepts a JSON number (300, 12.5) or a JSON string ("12.50") holding a
// plain decimal (see ParseDecimal). A value of another JSON type (null, bool, object,
// array) is KindMalformed CodeInvalidField; a string or number that is not a plain
// decimal (exponent form, hex, '+', empty, spaces, too long) is KindRejected
// CodeInvalidAmount. Bytes that are not JSON at all, which encoding/json never passes,
// are KindMalformed CodeInvalidJSON. Numbers are taken from the raw bytes, never
// through a float. On error *d is unchanged.
func (d *Decimal) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, " \t\r\n")
	if len(b) == 0 {
		return FieldErrorf(KindMalformed, CodeInvalidJSON, "amount", "amount has no value")
	}
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return FieldErrorf(KindMalformed, CodeInvalidJSON, "amount", "amount is not a valid JSON string")
		}
		v, err := ParseDecimal(s)
		if err != nil {
			return err
		}
		*d = v
		return nil
	case '{', '[', 't', 'f', 'n':
		return FieldErrorf(KindMalformed, CodeInvalidField, "amount", "amount must be a decimal string or number")
	}
	// Anything else valid is a JSON number; json.Valid does not allocate or convert it.
	if !json.Valid(b) {
		return FieldErrorf(KindMalformed, CodeInvalidJSON, "amount", "amount is not valid JSON")
	}
	v, err := ParseDecimal(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalJSON writes d as a JSON string, so it survives any JSON reader without passing
// through a float.
func (d Decimal) MarshalJSON() ([]byte, error) {
	return json.Marshal(string(d))
}

// ParseDecimal validates s as a plain decimal: optional '-', digits, optional '.'
// followed by at least one digit; leading zeros allowed ("007.5"), ".5" and "5." are
// rejected, as are '+', exponents, spaces and text longer than 40 characters.
// Errors are *Error KindRejected CodeInvalidAmount with Field "amount".
func ParseDecimal(s string) (Decimal, error) {
	if _, _, _, err := splitDecimal(s); err != nil {
		return "", err
	}
	return Decimal(s), nil
}

// splitDecimal validates s and splits it into sign, integer digits and fraction digits.
func splitDecimal(s string) (neg bool, whole, frac string, err error) {
	if s == "" {
		return false, "", "", FieldErrorf(KindRejected, CodeInvalidAmount, "amount", "amount is empty")
	}
	if len(s) > maxDecimalLen {
		return false, "", "", FieldErrorf(KindRejected, CodeInvalidAmount, "amount", "amount is longer than %d characters", maxDecimalLen)
	}
	rest := s
	if rest[0] == '-' {
		neg, rest = true, rest[1:]
	}
	whole, frac, hasPoint := strings.Cut(rest, ".")
	if whole == "" || !allDigits(whole) || (hasPoint && (frac == "" || !allDigits(frac))) {
		return false, "", "", FieldErrorf(KindRejected, CodeInvalidAmount, "amount",
			"amount %s is not a plain decimal number such as \"12.50\"", quoteInput(s))
	}
	return neg, whole, frac, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// MinorUnits converts d to minor units of cur. More decimals than cur.Exponent is
// CodeInvalidAmount ("too many decimal places for USD (2)") unless the extra digits are
// all zeros ("1.500" USD is 150). A value outside int64 is CodeInvalidAmount ("amount out
// of range"); the conversion never wraps. Errors are *Error KindRejected, Field "amount".
func (d Decimal) MinorUnits(cur Currency) (int64, error) {
	neg, whole, frac, err := splitDecimal(string(d))
	if err != nil {
		return 0, err
	}
	exp := max(cur.Exponent, 0)
	if len(frac) > exp {
		if strings.TrimRight(frac[exp:], "0") != "" {
			return 0, FieldErrorf(KindRejected, CodeInvalidAmount, "amount", "too many decimal places for %s (%d)", cur.Code, exp)
		}
		frac = frac[:exp]
	}
	// The magnitude may reach 1<<63 when negative (math.MinInt64).
	limit := uint64(1<<63 - 1)
	if neg {
		limit = 1 << 63
	}
	var m uint64
	push := func(digit uint64) bool {
		if m > (limit-digit)/10 {
			return false
		}
		m = m*10 + digit
		return true
	}
	for _, part := range [2]string{whole, frac} {
		for i := 0; i < len(part); i++ {
			if !push(uint64(part[i] - '0')) {
				return 0, outOfRange()
			}
		}
	}
	// Scale up by the decimals the text left out. Zero stays zero however large the
	// exponent; anything else overflows after at most 19 more digits.
	for pad := exp - len(frac); pad > 0 && m != 0; pad-- {
		if !push(0) {
			return 0, outOfRange()
		}
	}
	if neg {
		return int64(-m), nil // -m wraps to the two's complement, exact for 1<<63 too
	}
	return int64(m), nil
}

func outOfRange() *Error {
	return FieldErrorf(KindRejected, CodeInvalidAmount, "amount", "amount out of range")
}

// FormatMinor renders minor units with exactly cur.Exponent decimals: 70000 USD is
// "700.00", -5 USD is "-0.05", 5 JPY is "5", 1234 BHD is "1.234". Every int64, including
// math.MinInt64, formats exactly. A negative exponent is treated as 0.
func FormatMinor(minor int64, cur Currency) string {
	exp := max(cur.Exponent, 0)
	mag := uint64(minor)
	if minor < 0 {
		mag = -mag // exact for math.MinInt64: its magnitude 1<<63 fits in a uint64
	}
	digits := strconv.FormatUint(mag, 10)
	var sb strings.Builder
	sb.Grow(len(digits) + exp + 3)
	if minor < 0 {
		sb.WriteByte('-')
	}
	if exp == 0 {
		sb.WriteString(digits)
		return sb.String()
	}
	if len(digits) <= exp {
		sb.WriteString("0.")
		for i := len(digits); i < exp; i++ {
			sb.WriteByte('0')
		}
		sb.WriteString(digits)
		return sb.String()
	}
	sb.WriteString(digits[:len(digits)-exp])
	sb.WriteByte('.')
	sb.WriteString(digits[len(digits)-exp:])
	return sb.String()
}

// ParseMoney is ParseDecimal followed by MinorUnits.
func ParseMoney(s string, cur Currency) (int64, error) {
	d, err := ParseDecimal(s)
	if err != nil {
		return 0, err
	}
	return d.MinorUnits(cur)
}

// quoteInput quotes client text for an error message, cut short if it is long.
func quoteInput(s string) string {
	const maxShown = 48
	if len(s) > maxShown {
		return strconv.Quote(s[:maxShown]) + "..."
	}
	return strconv.Quote(s)
}
