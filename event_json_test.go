package chronicle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// referenceMarshalJSON is the reflection-based encoder Event.MarshalJSON was before
// AppendJSON replaced it, kept as the reference AppendJSON must match byte for byte.
func referenceMarshalJSON(e Event) ([]byte, error) {
	d := e.Data
	cur, _ := LookupCurrency(d.Currency)
	cur.Code = d.Currency
	j := eventDataJSON{AccountID: d.AccountID, OwnerName: d.OwnerName, Currency: d.Currency,
		BalanceAfter: FormatMinor(d.BalanceAfter, cur), Description: d.Description, TransferID: d.TransferID,
		FromAccountID: d.FromAccountID, ToAccountID: d.ToAccountID, Counterparty: d.Counterparty,
		Reason: d.Reason, ExpiresAt: d.ExpiresAt}
	if d.HeldAfter != 0 {
		j.HeldAfter = FormatMinor(d.HeldAfter, cur)
	}
	if e.EventType == EventAccountCreated {
		j.InitialBalance = FormatMinor(d.InitialBalance, cur)
		if d.OverdraftLimit != 0 {
			j.OverdraftLimit = FormatMinor(d.OverdraftLimit, cur)
		}
	} else if !IsLifecycleEvent(e.EventType) {
		j.Amount = FormatMinor(d.Amount, cur)
	}
	if d.TransferID != "" {
		switch e.EventType {
		case EventMoneyWithdrawn:
			j.Recipient = d.ToAccountID
		case EventMoneyDeposited:
			j.Sender = d.FromAccountID
		}
	}
	return json.Marshal(eventJSON{Position: e.Position, EventID: e.EventID, AggregateID: e.AggregateID,
		AggregateType: e.AggregateType, EventType: e.EventType, EventVersion: e.EventVersion, EventData: j,
		CreatedAt: e.CreatedAt, CreatedBy: e.CreatedBy, Metadata: e.Metadata, PrevHash: e.PrevHash, Hash: e.Hash})
}

// referenceEvent marshals as Event did before AppendJSON.
type referenceEvent Event

func (e referenceEvent) MarshalJSON() ([]byte, error) { return referenceMarshalJSON(Event(e)) }

// checkJSONMatchesReference fails t unless AppendJSON (after a prefix it must keep),
// MarshalJSON and json.Marshal all give the reference's bytes, or, where the reference
// fails (a created_at outside RFC 3339), MarshalJSON and json.Marshal fail too and
// AppendJSON still writes valid JSON.
func checkJSONMatchesReference(t interface {
	Helper()
	Fatalf(string, ...any)
}, e Event) {
	t.Helper()
	want, wantErr := referenceMarshalJSON(e)
	prefix := []byte("prefix")
	got := e.AppendJSON(prefix)
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("AppendJSON lost the prefix: %q", got)
	}
	got = got[len(prefix):]
	m, mErr := e.MarshalJSON()
	viaJSON, jErr := json.Marshal(e)
	if wantErr != nil {
		if mErr == nil || jErr == nil {
			t.Fatalf("reference fails (%v) but MarshalJSON gives %v and json.Marshal %v", wantErr, mErr, jErr)
		}
		if !json.Valid(got) {
			t.Fatalf("AppendJSON wrote invalid JSON for an event the reference refuses: %s", got)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON differs from the reference at %s\n got: %s\nwant: %s", firstDiff(got, want), got, want)
	}
	if mErr != nil || !bytes.Equal(m, want) {
		t.Fatalf("MarshalJSON = %s, %v; want %s", m, mErr, want)
	}
	if jErr != nil || !bytes.Equal(viaJSON, want) {
		t.Fatalf("json.Marshal = %s, %v; want %s", viaJSON, jErr, want)
	}
}

func firstDiff(a, b []byte) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return fmt.Sprintf("offset %d", i)
}

// jsonTrickyChunks are pieces encoding/json escapes in some particular way.
var jsonTrickyChunks = []string{
	"<", ">", "&", `"`, `\`, "/", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f", " ",
	"\u2028", "\u2029", "\u2027", "\u202a", "\ufffd", "\ufeff", "é", "日本", "😀", "\U0010ffff",
	"\x80", "\xbf", "\xc0", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\xf0\x9f\x98",
	"</script>", "a&b", "\\u2028",
}

// genJSONString draws arbitrary text: any bytes (so invalid UTF-8), any runes, and the
// pieces encoding/json treats specially.
func genJSONString(t *rapid.T, label string) string {
	n := rapid.IntRange(0, 6).Draw(t, label+"_parts")
	var sb strings.Builder
	for i := 0; i < n; i++ {
		switch rapid.IntRange(0, 4).Draw(t, label+"_kind") {
		case 0:
			sb.WriteString(rapid.SampledFrom(jsonTrickyChunks).Draw(t, label+"_tricky"))
		case 1:
			sb.WriteString(rapid.String().Draw(t, label+"_unicode"))
		case 2:
			sb.Write(rapid.SliceOfN(rapid.Byte(), 0, 8).Draw(t, label+"_bytes"))
		case 3:
			sb.WriteRune(rapid.Rune().Draw(t, label+"_rune"))
		default:
			sb.WriteString(rapid.StringMatching(`[A-Za-z0-9_:@.-]{0,12}`).Draw(t, label+"_plain"))
		}
	}
	return sb.String()
}

var jsonCurrencies = []string{"USD", "JPY", "BHD", "CLF", "EUR", "KWD", "usd", "Jpy", "XYZ", "", "US", "USDX", "U$D", "<&>"}

func genAmountMinor(t *rapid.T, label string) int64 {
	switch rapid.IntRange(0, 3).Draw(t, label+"_kind") {
	case 0:
		return rapid.SampledFrom([]int64{0, 1, -1, 5, -5, 99, 100, -100, 1000, 10000, math.MaxInt64, math.MinInt64, math.MinInt64 + 1}).Draw(t, label)
	case 1:
		return rapid.Int64Range(-100000, 100000).Draw(t, label)
	default:
		return rapid.Int64().Draw(t, label)
	}
}

func genTime(t *rapid.T) time.Time {
	var sec int64
	switch rapid.IntRange(0, 5).Draw(t, "time_range") {
	case 0:
		return time.Time{}
	case 1: // anywhere, years far outside 0..9999 included
		sec = rapid.Int64Range(-1<<40, 1<<40).Draw(t, "sec_wide")
	default: // years 0..9999
		sec = rapid.Int64Range(-62167219200, 253402300799).Draw(t, "sec")
	}
	var nsec int64
	switch rapid.IntRange(0, 3).Draw(t, "nsec_kind") {
	case 0:
	case 1:
		nsec = rapid.Int64Range(0, 999).Draw(t, "ms") * int64(time.Millisecond)
	case 2:
		nsec = rapid.Int64Range(0, 999999).Draw(t, "us") * int64(time.Microsecond)
	default:
		nsec = rapid.Int64Range(0, 999999999).Draw(t, "ns")
	}
	tm := time.Unix(sec, nsec)
	switch rapid.IntRange(0, 3).Draw(t, "zone") {
	case 0:
		return tm.UTC()
	case 1:
		off := rapid.SampledFrom([]int{3600, -5 * 3600, 5*3600 + 30*60, 45, -86399, 86399, 86400, -86400, 100 * 3600}).Draw(t, "offset")
		return tm.In(time.FixedZone("Z1", off))
	case 2:
		return tm.In(time.FixedZone("ZR", rapid.IntRange(-30*3600, 30*3600).Draw(t, "offset_any")))
	default:
		return tm.In(time.FixedZone("", 0)) // UTC offset, another location
	}
}

func genEvent(t *rapid.T) Event {
	e := Event{
		Position:      rapid.Uint64().Draw(t, "position"),
		EventID:       genJSONString(t, "event_id"),
		AggregateID:   genJSONString(t, "aggregate_id"),
		AggregateType: rapid.SampledFrom([]string{"Account", "", "<x>"}).Draw(t, "aggregate_type"),
		EventType:     rapid.SampledFrom([]string{EventAccountCreated, EventMoneyDeposited, EventMoneyWithdrawn, EventAccountFrozen, EventAccountUnfrozen, EventAccountClosed, "", "Other&"}).Draw(t, "event_type"),
		EventVersion:  rapid.Uint64().Draw(t, "event_version"),
		CreatedAt:     genTime(t),
		CreatedBy:     genJSONString(t, "created_by"),
		PrevHash:      genJSONString(t, "prev_hash"),
		Hash:          genJSONString(t, "hash"),
	}
	switch rapid.IntRange(0, 2).Draw(t, "metadata_kind") {
	case 0:
	case 1:
		e.Metadata = map[string]string{}
	default:
		n := rapid.IntRange(1, 12).Draw(t, "metadata_len")
		e.Metadata = map[string]string{}
		for i := 0; i < n; i++ {
			e.Metadata[genJSONString(t, "meta_key")] = genJSONString(t, "meta_value")
		}
	}
	cur := rapid.SampledFrom(jsonCurrencies).Draw(t, "currency_kind")
	if cur == "" && rapid.Bool().Draw(t, "currency_any") {
		cur = genJSONString(t, "currency")
	}
	e.Data = EventData{
		AccountID: genJSONString(t, "account_id"), OwnerName: genJSONString(t, "owner_name"), Currency: cur,
		Amount: genAmountMinor(t, "amount"), InitialBalance: genAmountMinor(t, "initial_balance"),
		OverdraftLimit: genAmountMinor(t, "overdraft_limit"), BalanceAfter: genAmountMinor(t, "balance_after"),
		Description: genJSONString(t, "description"), TransferID: genJSONString(t, "transfer_id"),
		FromAccountID: genJSONString(t, "from"), ToAccountID: genJSONString(t, "to"),
		Counterparty: genJSONString(t, "counterparty"),
	}
	if rapid.Bool().Draw(t, "v2") {
		e.Data.Reason = genJSONString(t, "reason")
		if rapid.Bool().Draw(t, "expires") {
			e.Data.ExpiresAt = time.Unix(rapid.Int64Range(0, 1<<33).Draw(t, "expires_s"), rapid.Int64Range(0, 999999999).Draw(t, "expires_ns")).UTC()
		}
		e.Data.HeldAfter = genAmountMinor(t, "held_after")
	}
	return e
}

// TestAppendJSONMatchesReference: for arbitrary events, AppendJSON writes exactly what
// the reflection-based encoder wrote.
func TestAppendJSONMatchesReference(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) { checkJSONMatchesReference(t, genEvent(t)) })
}

// TestAppendJSONStringMatchesEncodingJSON: the string escaper alone, on every byte value
// and every rune class encoding/json distinguishes.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	check := func(s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
	for b := 0; b < 256; b++ {
		check(string([]byte{byte(b)}))
		check("a" + string([]byte{byte(b)}) + "z")
	}
	for r := rune(0); r <= utf8.MaxRune; r += 7 {
		check(string(r))
	}
	for _, s := range jsonTrickyChunks {
		check(s)
		check("x" + s + s + "y")
	}
	rapid.Check(t, func(rt *rapid.T) { check(genJSONString(rt, "s")) })
}

// FuzzEventAppendJSON: AppendJSON and the reference agree on events built from arbitrary
// strings, amounts, times and zones.
func FuzzEventAppendJSON(f *testing.F) {
	f.Add(uint8(0), uint64(1), "evt-1", "acc-1", "Alice <&> \u2028", "USD", int64(1000), int64(-500), int64(1732900000123456789), 0, "idempotency_key", "k\x00\xff", "")
	f.Add(uint8(1), uint64(2), "evt-2", "acc-2", "\xed\xa0\x80", "JPY", int64(math.MinInt64), int64(math.MaxInt64), int64(0), 3600, "", "", "tr-1")
	f.Add(uint8(2), uint64(math.MaxUint64), "", "", "", "bhd", int64(5), int64(0), int64(-62135596800000000000/1e9), -86400, "\u2029", "\"\\", "tr")
	f.Add(uint8(3), uint64(0), "\x1f\x7f", "x", "\t\n\r\b\f", "XYZ", int64(1), int64(1), int64(math.MaxInt64), 45, "a", "b", "")
	f.Fuzz(func(t *testing.T, kind uint8, pos uint64, id, acc, text, cur string, amount, balance, unixNano int64, offset int, metaKey, metaValue, transfer string) {
		types := []string{EventAccountCreated, EventMoneyDeposited, EventMoneyWithdrawn, EventAccountFrozen, EventAccountClosed, text}
		e := Event{
			Position: pos, EventID: id, AggregateID: acc, AggregateType: "Account", EventType: types[int(kind)%len(types)],
			EventVersion: pos / 3, CreatedBy: text, PrevHash: id + acc, Hash: text + id,
			Data: EventData{AccountID: acc, OwnerName: text, Currency: cur, Amount: amount, InitialBalance: amount,
				OverdraftLimit: balance / 2, BalanceAfter: balance, Description: text, TransferID: transfer,
				FromAccountID: id, ToAccountID: acc, Counterparty: metaValue},
		}
		e.CreatedAt = time.Unix(0, unixNano).UTC()
		if kind&4 != 0 {
			e.CreatedAt = time.Unix(unixNano, 0) // seconds: years far outside 0..9999
		}
		if offset != 0 {
			e.CreatedAt = e.CreatedAt.In(time.FixedZone("F", offset%(200*3600)))
		}
		if kind&8 != 0 {
			e.Metadata = map[string]string{metaKey: metaValue, metaValue: metaKey, text: id}
		} else if kind&16 != 0 {
			e.Metadata = map[string]string{}
		}
		checkJSONMatchesReference(t, e)
	})
}

func benchEvent() Event {
	return Event{
		Position: 123456, EventID: "0f8fad5b-d9cb-469f-a165-70867728950e:1", AggregateID: "acc-000123",
		AggregateType: "Account", EventType: EventMoneyWithdrawn, EventVersion: 42,
		CreatedAt: time.Date(2026, 11, 30, 12, 34, 56, 123456789, time.UTC), CreatedBy: "bench",
		Metadata: map[string]string{"idempotency_key": "k-123456", "request_id": "r-abcdef"},
		PrevHash: strings.Repeat("ab", 32), Hash: strings.Repeat("cd", 32),
		Data: EventData{AccountID: "acc-000123", Currency: "USD", Amount: 12345, BalanceAfter: 987654,
			Description: "transfer to acc-000456", TransferID: "0f8fad5b-d9cb-469f-a165-70867728950e",
			FromAccountID: "acc-000123", ToAccountID: "acc-000456", Counterparty: "acc-000456"},
	}
}

// BenchmarkEventMarshalJSON compares the reflection-based reference with AppendJSON
// (into a reused buffer, as a caller that owns one would) and MarshalJSON (a new slice).
func BenchmarkEventMarshalJSON(b *testing.B) {
	e := benchEvent()
	b.Run("reference", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := referenceMarshalJSON(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("MarshalJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.MarshalJSON(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = e.AppendJSON(buf[:0])
		}
	})
	b.Run("json.Marshal/reference", func(b *testing.B) { // what callers going through encoding/json paid
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(referenceEvent(e)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Marshal", func(b *testing.B) { // what callers going through encoding/json pay
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestCanonicalVersions: an event that version 1 can hold keeps its version-1 bytes (so
// every hash already in a log stays valid); one with a version-2 field is written as
// version 2 and reads back whole, in binary and in JSON; a version-2 record without any
// version-2 field (a second encoding of a version-1 event) and an unknown version are
// refused.
func TestCanonicalVersions(t *testing.T) {
	e := Event{Position: 7, EventID: "e7", AggregateID: "acc-1", AggregateType: AggregateAccount, EventType: "AccountFrozen",
		EventVersion: 3, CreatedAt: time.Unix(1_700_000_000, 5).UTC(), PrevHash: GenesisHash,
		Data: EventData{AccountID: "acc-1", Currency: "USD", BalanceAfter: 1250}}
	v1 := e.AppendCanonical(nil)
	if v1[0] != canonicalVersion1 {
		t.Fatalf("event without version-2 fields encoded as version %d", v1[0])
	}
	for name, set := range map[string]func(*EventData){
		"reason":     func(d *EventData) { d.Reason = "court order" },
		"expires_at": func(d *EventData) { d.ExpiresAt = time.Unix(1_700_000_600, 0).UTC() },
		"held_after": func(d *EventData) { d.HeldAfter = 500 },
	} {
		x := e
		set(&x.Data)
		x.Hash = x.ComputeHash()
		b, err := x.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if b[1] != canonicalVersion2 {
			t.Fatalf("%s: encoded as version %d", name, b[1])
		}
		var back Event
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if back.Data != x.Data || back.Hash != x.Hash {
			t.Fatalf("%s: binary round trip gave %+v, want %+v", name, back.Data, x.Data)
		}
		j, err := x.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON Event
		if err := fromJSON.UnmarshalJSON(j); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fromJSON.Data != x.Data || fromJSON.ComputeHash() != x.Hash {
			t.Fatalf("%s: JSON round trip %s gave %+v", name, j, fromJSON.Data)
		}
		if x.Hash == e.ComputeHash() {
			t.Fatalf("%s: the hash does not cover the field", name)
		}
	}

	// Version 2 bytes for an event with no version-2 field.
	tail := len(appendStr(nil, e.PrevHash))
	forged := append([]byte{}, v1[:len(v1)-tail]...)
	forged[0] = canonicalVersion2
	forged = appendStr(forged, "")
	forged = appendTime(forged, time.Time{})
	forged = appendI64(forged, 0)
	forged = append(forged, v1[len(v1)-tail:]...)
	e.Hash = e.ComputeHash()
	stored, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for name, canon := range map[string][]byte{"empty version 2": forged, "version 3": append([]byte{3}, v1[1:]...)} {
		b := append([]byte{stored[0]}, canon...)
		b = append(b, stored[len(stored)-32:]...)
		var back Event
		if err := back.UnmarshalBinary(b); err == nil {
			t.Fatalf("%s: decoded without error", name)
		}
	}
}
