package chronicle

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// AppendJSON appends e's JSON form to dst and returns the extended slice: the seed's
// shape, byte for byte what encoding/json made of eventJSON before this hand-written
// encoder replaced it (event_json_test.go keeps that encoder as the reference): fields in
// declaration order, omitempty as tagged, metadata keys sorted, strings escaped as
// encoding/json escapes them with HTML escaping on, created_at as time.Time.MarshalJSON
// renders it.
//
// It never fails. A created_at that RFC 3339 cannot hold (a year outside 0..9999, a zone
// offset of 24 hours or more; a committed event's commit time is neither) is written as
// time.RFC3339Nano formats it, still a valid JSON string; MarshalJSON refuses such an
// event as encoding/json did.
func (e Event) AppendJSON(dst []byte) []byte {
	d := &e.Data
	exp := currencyExponent(d.Currency)

	dst = append(dst, `{"position":`...)
	dst = strconv.AppendUint(dst, e.Position, 10)
	dst = append(dst, `,"event_id":`...)
	dst = appendJSONString(dst, e.EventID)
	dst = append(dst, `,"aggregate_id":`...)
	dst = appendJSONString(dst, e.AggregateID)
	dst = append(dst, `,"aggregate_type":`...)
	dst = appendJSONString(dst, e.AggregateType)
	dst = append(dst, `,"event_type":`...)
	dst = appendJSONString(dst, e.EventType)
	dst = append(dst, `,"event_version":`...)
	dst = strconv.AppendUint(dst, e.EventVersion, 10)

	dst = append(dst, `,"event_data":{"account_id":`...)
	dst = appendJSONString(dst, d.AccountID)
	if d.OwnerName != "" {
		dst = append(dst, `,"owner_name":`...)
		dst = appendJSONString(dst, d.OwnerName)
	}
	dst = append(dst, `,"currency":`...)
	dst = appendJSONString(dst, d.Currency)
	// Formatted amounts are digits, '-' and '.', never empty, so never omitted and never
	// escaped.
	if e.EventType == EventAccountCreated {
		dst = append(dst, `,"initial_balance":"`...)
		dst = appendMinor(dst, d.InitialBalance, exp)
		if d.OverdraftLimit != 0 {
			dst = append(dst, `","overdraft_limit":"`...)
			dst = appendMinor(dst, d.OverdraftLimit, exp)
		}
		dst = append(dst, '"')
	} else if !IsLifecycleEvent(e.EventType) { // a status change moves no money: no amount
		dst = append(dst, `,"amount":"`...)
		dst = appendMinor(dst, d.Amount, exp)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"balance_after":"`...)
	dst = appendMinor(dst, d.BalanceAfter, exp)
	dst = append(dst, '"')
	dst = appendOptionalJSON(dst, `,"description":`, d.Description)
	dst = appendOptionalJSON(dst, `,"transfer_id":`, d.TransferID)
	dst = appendOptionalJSON(dst, `,"from_account_id":`, d.FromAccountID)
	dst = appendOptionalJSON(dst, `,"to_account_id":`, d.ToAccountID)
	dst = appendOptionalJSON(dst, `,"counterparty":`, d.Counterparty)
	dst = appendOptionalJSON(dst, `,"reason":`, d.Reason)
	if !d.ExpiresAt.IsZero() {
		dst = append(dst, `,"expires_at":"`...)
		dst = d.ExpiresAt.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if d.HeldAfter != 0 {
		dst = append(dst, `,"held_after":"`...)
		dst = appendMinor(dst, d.HeldAfter, exp)
		dst = append(dst, '"')
	}
	if d.TransferID != "" {
		switch e.EventType {
		case EventMoneyWithdrawn:
			dst = appendOptionalJSON(dst, `,"recipient":`, d.ToAccountID)
		case EventMoneyDeposited:
			dst = appendOptionalJSON(dst, `,"sender":`, d.FromAccountID)
		}
	}

	dst = append(dst, `},"created_at":"`...)
	dst = e.CreatedAt.AppendFormat(dst, time.RFC3339Nano) // only digits, '-', ':', '.', 'T', 'Z', '+'
	dst = append(dst, '"')
	dst = appendOptionalJSON(dst, `,"created_by":`, e.CreatedBy)
	if len(e.Metadata) > 0 {
		dst = append(dst, `,"metadata":`...)
		dst = appendJSONStringMap(dst, e.Metadata)
	}
	dst = append(dst, `,"prev_hash":`...)
	dst = appendJSONString(dst, e.PrevHash)
	dst = append(dst, `,"hash":`...)
	dst = appendJSONString(dst, e.Hash)
	return append(dst, '}')
}

// MarshalJSON renders the seed's shape (AppendJSON): AccountCreated carries
// initial_balance (and overdraft_limit when there is one), the lifecycle events
// (AccountFrozen, AccountUnfrozen, AccountClosed) no amount, the other events amount. It
// fails, as time.Time.MarshalJSON does, on a created_at outside RFC 3339.
func (e Event) MarshalJSON() ([]byte, error) {
	if err := checkRFC3339(e.CreatedAt); err != nil {
		return nil, err
	}
	return e.AppendJSON(make([]byte, 0, 1024)), nil
}

// checkRFC3339 is time.Time.MarshalJSON's check: the year is four digits wide and the zone
// offset is less than 24 hours.
func checkRFC3339(t time.Time) error {
	if y := t.Year(); y < 0 || y > 9999 {
		return errors.New("Time.MarshalJSON: year outside of range [0,9999]")
	}
	if _, off := t.Zone(); off <= -24*60*60 || off >= 24*60*60 {
		return errors.New("Time.MarshalJSON: timezone hour outside of range [0,23]")
	}
	return nil
}

// currencyExponent is LookupCurrency(code)'s exponent without its allocations, and 0
// for an unknown currency (which cannot be in a committed event: MarshalJSON renders it
// with no decimals rather than fail a whole page of events).
func currencyExponent(code string) int {
	if len(code) == 3 && 'A' <= code[0] && code[0] <= 'Z' && 'A' <= code[1] && code[1] <= 'Z' && 'A' <= code[2] && code[2] <= 'Z' {
		if i, found := slices.BinarySearchFunc(currencyTable[:], code, func(c Currency, k string) int {
			return strings.Compare(c.Code, k)
		}); found {
			return currencyTable[i].Exponent
		}
		return 0
	}
	cur, _ := LookupCurrency(code) // lower case, or not a code at all
	return cur.Exponent
}

// appendMinor appends FormatMinor(minor, Currency{Exponent: exp}).
func appendMinor(dst []byte, minor int64, exp int) []byte {
	exp = max(exp, 0)
	mag := uint64(minor)
	if minor < 0 {
		mag = -mag // exact for math.MinInt64
		dst = append(dst, '-')
	}
	var buf [20]byte
	digits := strconv.AppendUint(buf[:0], mag, 10)
	switch {
	case exp == 0:
		return append(dst, digits...)
	case len(digits) <= exp:
		dst = append(dst, '0', '.')
		for i := len(digits); i < exp; i++ {
			dst = append(dst, '0')
		}
		return append(dst, digits...)
	default:
		dst = append(dst, digits[:len(digits)-exp]...)
		dst = append(dst, '.')
		return append(dst, digits[len(digits)-exp:]...)
	}
}

// appendOptionalJSON appends key and s unless s is empty (omitempty).
func appendOptionalJSON(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, key...)
	return appendJSONString(dst, s)
}

// appendJSONStringMap appends m as encoding/json does: keys sorted, both sides escaped.
func appendJSONStringMap(dst []byte, m map[string]string) []byte {
	var stack [8]string
	keys := stack[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, m[k])
	}
	return append(dst, '}')
}

const lowerHex = "0123456789abcdef"

// jsonSafe marks the ASCII bytes encoding/json writes as they are with HTML escaping on:
// everything from 0x20 up but '"', '\\', '<', '>' and '&' (0x7f included).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = true
	}
	for _, b := range `"\<>&` {
		t[b] = false
	}
	return t
}()

// appendJSONString appends s as a JSON string exactly as encoding/json does with HTML
// escaping on: '"' and '\\' backslashed; \b \f \n \r \t short; other control bytes,
// '<', '>' and '&' as \u00XX (lower-case hex); U+2028 and U+2029 as \u2028 and \u2029;
// each byte of invalid UTF-8 as \ufffd; everything else as it is.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerHex[b>>4], lowerHex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', lowerHex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
