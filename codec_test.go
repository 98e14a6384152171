package chronicle_test

import (
	"bytes"
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/chronicle-ledger/chronicle"
)

func genText(t *rapid.T, label string) string {
	return rapid.OneOf(rapid.Just(""), rapid.StringN(0, 12, 40), rapid.SampledFrom([]string{"a", "ab", "\x00", "é", "@world:USD"})).Draw(t, label)
}

func genTime(t *rapid.T, label string) time.Time {
	if rapid.IntRange(0, 9).Draw(t, label+"_zero") == 0 {
		return time.Time{}
	}
	// math.MinInt64 nanoseconds stands for the zero time in the encoding.
	return time.Unix(0, rapid.Int64Range(math.MinInt64+1, math.MaxInt64).Draw(t, label)).UTC()
}

func genEvent(t *rapid.T) chronicle.Event {
	e := chronicle.Event{
		Position: rapid.Uint64().Draw(t, "position"), EventID: genText(t, "event_id"), AggregateID: genText(t, "aggregate_id"),
		AggregateType: genText(t, "aggregate_type"), EventType: genText(t, "event_type"), EventVersion: rapid.Uint64().Draw(t, "version"),
		CreatedAt: genTime(t, "created_at"), CreatedBy: genText(t, "created_by"), PrevHash: genText(t, "prev_hash"),
		Data: chronicle.EventData{AccountID: genText(t, "account_id"), OwnerName: genText(t, "owner_name"), Currency: genText(t, "currency"),
			Amount: rapid.Int64().Draw(t, "amount"), InitialBalance: rapid.Int64().Draw(t, "initial"), OverdraftLimit: rapid.Int64().Draw(t, "overdraft"),
			BalanceAfter: rapid.Int64().Draw(t, "balance_after"), Description: genText(t, "description"), TransferID: genText(t, "transfer_id"),
			FromAccountID: genText(t, "from"), ToAccountID: genText(t, "to"), Counterparty: genText(t, "counterparty")},
	}
	if rapid.Bool().Draw(t, "v2") { // the fields only canonical version 2 holds
		e.Data.Reason = genText(t, "reason")
		if rapid.Bool().Draw(t, "expires") {
			e.Data.ExpiresAt = genTime(t, "expires_at")
		}
		e.Data.HeldAfter = rapid.Int64().Draw(t, "held_after")
	}
	if md := rapid.MapOfN(rapid.StringN(0, 8, 20), rapid.StringN(0, 8, 20), 0, 4).Draw(t, "metadata"); len(md) > 0 {
		e.Metadata = md
	}
	e.Hash = e.ComputeHash()
	return e
}

func genCommandAny(t *rapid.T) chronicle.Command {
	return chronicle.Command{
		Type: chronicle.CommandType(rapid.SampledFrom([]string{"create-account", "deposit", "withdraw", "transfer", "", "freeze-account",
			"unfreeze-account", "close-account", "capture-transfer", "void-transfer", "expire-transfers", "hold"}).Draw(t, "type")),
		AccountID: genText(t, "account_id"), OwnerName: genText(t, "owner_name"), Currency: genText(t, "currency"),
		InitialBalance: chronicle.Decimal(genText(t, "initial")), OverdraftLimit: chronicle.Decimal(genText(t, "overdraft")),
		Amount: chronicle.Decimal(genText(t, "amount")), Description: genText(t, "description"), FromAccountID: genText(t, "from"),
		ToAccountID: genText(t, "to"), ID: genText(t, "id"), IdempotencyKey: genText(t, "key"), RequestID: genText(t, "request_id"),
		CreatedBy: genText(t, "created_by"),
		// Version-2 fields, often absent so version-1 batches are drawn too.
		Reason:         rapid.SampledFrom([]string{"", "", "fraud review"}).Draw(t, "reason"),
		TransferID:     rapid.SampledFrom([]string{"", "", "t-1"}).Draw(t, "transfer_id"),
		Pending:        rapid.Bool().Draw(t, "pending") && rapid.Bool().Draw(t, "pending2"),
		TimeoutSeconds: rapid.SampledFrom([]int64{0, 0, 60, -1}).Draw(t, "timeout"),
	}
}

// roundTrip encodes v, decodes into fresh, and checks the prefixes of the encoding are
// all refused (a torn record is never read as a shorter valid one).
func roundTrip[T any, PT interface {
	*T
	encoding.BinaryUnmarshaler
}](t *rapid.T, enc []byte, want T) {
	var got T
	if err := PT(&got).UnmarshalBinary(enc); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got  %+v\n want %+v", got, want)
	}
	for n := 0; n < len(enc); n++ {
		var short T
		if err := PT(&short).UnmarshalBinary(enc[:n]); err == nil {
			t.Fatalf("a %d-byte prefix of a %d-byte record decoded", n, len(enc))
		}
	}
	var long T
	if err := PT(&long).UnmarshalBinary(append(bytes.Clone(enc), 0)); err == nil {
		t.Fatal("a record with a trailing byte decoded")
	}
}

func TestBinaryRoundTrips(t *testing.T) {
	t.Run("event", rapid.MakeCheck(func(t *rapid.T) {
		e := genEvent(t)
		enc, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, enc, e)
	}))
	t.Run("batch", rapid.MakeCheck(func(t *rapid.T) {
		b := chronicle.Batch{Time: genTime(t, "time"), IdempotencyWindow: time.Duration(rapid.Int64().Draw(t, "window")),
			Commands: rapid.SliceOfN(rapid.Custom(genCommandAny), 0, 5).Draw(t, "commands")}
		if len(b.Commands) == 0 {
			b.Commands = []chronicle.Command{}
		}
		enc, err := b.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, enc, b)
	}))
	t.Run("account", rapid.MakeCheck(func(t *rapid.T) {
		a := chronicle.Account{ID: genText(t, "id"), OwnerName: genText(t, "owner"), Currency: genText(t, "currency"),
			Balance: rapid.Int64().Draw(t, "balance"), OverdraftLimit: rapid.Int64().Draw(t, "overdraft"),
			Status: chronicle.AccountStatus(genText(t, "status")), CreatedAt: genTime(t, "created"), LastUpdated: genTime(t, "updated"),
			Version: rapid.Uint64().Draw(t, "version")}
		enc, _ := a.MarshalBinary()
		roundTrip(t, enc, a)
	}))
	t.Run("head", rapid.MakeCheck(func(t *rapid.T) {
		h := chronicle.Head{Position: rapid.Uint64().Draw(t, "position"), Hash: genText(t, "hash"), CommitTime: genTime(t, "time")}
		enc, _ := h.MarshalBinary()
		roundTrip(t, enc, h)
	}))
	t.Run("idempotency record", rapid.MakeCheck(func(t *rapid.T) {
		r := chronicle.IdempotencyRecord{Key: genText(t, "key"), Fingerprint: genText(t, "fp"), CommitTime: genTime(t, "time"),
			Position: rapid.Uint64().Draw(t, "position"), Count: rapid.Uint32().Draw(t, "count")}
		enc, _ := r.MarshalBinary()
		roundTrip(t, enc, r)
	}))
}

// TestCanonicalEncodingIsInjective: events that differ in any field hash differently,
// including when text moves from one field to the next (length prefixes) or the same
// metadata arrives in another map order.
func TestCanonicalEncodingIsInjective(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genEvent(t), genEvent(t)
		ea, eb := a.AppendCanonical(nil), b.AppendCanonical(nil)
		a.Hash, b.Hash = "", ""
		same := reflect.DeepEqual(a, b) || a.CreatedAt.Equal(b.CreatedAt) && func() bool {
			b2 := b
			b2.CreatedAt = a.CreatedAt
			return reflect.DeepEqual(a, b2)
		}()
		if same != bytes.Equal(ea, eb) {
			t.Fatalf("equal events %t, equal encodings %t:\n%+v\n%+v", same, bytes.Equal(ea, eb), a, b)
		}
	})
}

func TestBinaryVersionsRefused(t *testing.T) {
	s := chainLog(t)
	e := s.Log[0]
	enc, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	enc[0] = 9
	var back chronicle.Event
	if err := back.UnmarshalBinary(enc); err == nil || !strings.Contains(err.Error(), "format version 9, this build reads version 1") {
		t.Fatalf("event of format 9: %v", err)
	}
	if _, _, err := chronicle.DecodeEntry([]byte{7, 1, 0}); err == nil || !strings.Contains(err.Error(), "version 7, this build reads version 1") {
		t.Fatalf("entry of version 7: %v", err)
	}
	if _, _, err := chronicle.DecodeEntry([]byte(`{"time":"2026-01-01T00:00:00Z","commands":[]}`)); err == nil {
		t.Fatal("a JSON entry of the previous release decoded")
	}
	if _, _, err := chronicle.DecodeEntry([]byte{1}); err == nil {
		t.Fatal("a one-byte entry decoded")
	}
	bad := chronicle.EncodeEntry(chronicle.EntryCommandBatch, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 99})
	_, payload, _ := chronicle.DecodeEntry(bad)
	var b chronicle.Batch
	if err := b.UnmarshalBinary(payload); err == nil {
		t.Fatal("a batch with an unknown command code decoded")
	}
}

// TestFingerprintIgnoresRetryFields: a retry changes ids and metadata, never what the
// command asks for; any change to what it asks for changes the fingerprint.
func TestFingerprintIgnoresRetryFields(t *testing.T) {
	c := withKey(newTransfer("a", "b", "12.50"), "k")
	r := retry(c)
	r.RequestID, r.CreatedBy = "other", "someone"
	if c.Fingerprint() != r.Fingerprint() {
		t.Fatal("a retry has another fingerprint")
	}
	for _, change := range []func(*chronicle.Command){
		func(c *chronicle.Command) { c.Amount = "12.5" },
		func(c *chronicle.Command) { c.ToAccountID = "c" },
		func(c *chronicle.Command) { c.Description = "x" },
		func(c *chronicle.Command) { c.Currency = "USD" },
		func(c *chronicle.Command) { c.Type = chronicle.CmdDeposit },
		func(c *chronicle.Command) { c.FromAccountID, c.ToAccountID = "ab", "" },
	} {
		d := c
		change(&d)
		if d.Fingerprint() == c.Fingerprint() {
			t.Fatalf("changed command %+v has the same fingerprint", d)
		}
	}
}

// FuzzDecodeBinary feeds arbitrary bytes to every decoder of log and state records:
// none may panic or allocate without bound, and whatever decodes re-encodes to a
// record that decodes to the same value.
func FuzzDecodeBinary(f *testing.F) {
	s := chronicle.NewMemState()
	c := newCreate("a", "USD", "10", "")
	c.IdempotencyKey = "k"
	mustOK(f, s, t0, c, newCreate("b", "JPY", "", ""), newDeposit("b", "5"))
	for _, e := range s.Log {
		enc, _ := e.MarshalBinary()
		f.Add(enc)
	}
	b, _ := chronicle.Batch{Time: t0, Commands: []chronicle.Command{c, newDeposit("a", "1")}}.MarshalBinary()
	f.Add(b)
	f.Add(chronicle.EncodeEntry(chronicle.EntryCommandBatch, b))
	a, _ := s.Accounts["a"].MarshalBinary()
	f.Add(a)
	h, _ := s.Head.MarshalBinary()
	f.Add(h)
	k, _ := s.Keys["k"].MarshalBinary()
	f.Add(k)
	op := chronicle.TokenOp{Kind: chronicle.TokenCreate, Name: "ops", Role: chronicle.RoleWriter, Hash: chronicle.HashToken("s"), At: t0, By: "admin", IfNone: true}
	ob, _ := op.MarshalBinary()
	f.Add(chronicle.EncodeEntry(chronicle.EntryToken, ob))
	tb, _ := chronicle.Token{Name: "ops", Role: chronicle.RoleWriter, CreatedAt: t0, RevokedAt: t0.Add(time.Hour), RevokedBy: "admin"}.MarshalBinary()
	f.Add(tb)
	f.Fuzz(func(t *testing.T, data []byte) {
		var e chronicle.Event
		if e.UnmarshalBinary(data) == nil {
			enc, err := e.MarshalBinary()
			if err != nil || !bytes.Equal(enc, data) {
				t.Fatalf("event decoded but re-encodes differently (%v)", err)
			}
		}
		if kind, payload, err := chronicle.DecodeEntry(data); err == nil && kind == chronicle.EntryCommandBatch {
			data = payload
		}
		var b chronicle.Batch
		if b.UnmarshalBinary(data) == nil {
			enc, err := b.MarshalBinary()
			var again chronicle.Batch
			if err != nil || again.UnmarshalBinary(enc) != nil || !reflect.DeepEqual(again, b) {
				t.Fatalf("batch decoded but does not survive a re-encoding (%v)", err)
			}
		}
		var a chronicle.Account
		if a.UnmarshalBinary(data) == nil {
			if enc, _ := a.MarshalBinary(); !bytes.Equal(enc, data) {
				t.Fatal("account decoded but re-encodes differently")
			}
		}
		var h chronicle.Head
		if h.UnmarshalBinary(data) == nil {
			if enc, _ := h.MarshalBinary(); !bytes.Equal(enc, data) {
				t.Fatal("head decoded but re-encodes differently")
			}
		}
		var r chronicle.IdempotencyRecord
		if r.UnmarshalBinary(data) == nil {
			if enc, _ := r.MarshalBinary(); !bytes.Equal(enc, data) {
				t.Fatal("idempotency record decoded but re-encodes differently")
			}
		}
		var tok chronicle.Token
		if tok.UnmarshalBinary(data) == nil {
			if enc, _ := tok.MarshalBinary(); !bytes.Equal(enc, data) {
				t.Fatal("token decoded but re-encodes differently")
			}
		}
		if kind, payload, err := chronicle.DecodeEntry(data); err == nil && kind == chronicle.EntryToken {
			var op chronicle.TokenOp
			if op.UnmarshalBinary(payload) == nil {
				if enc, _ := op.MarshalBinary(); !bytes.Equal(enc, payload) {
					t.Fatal("token operation decoded but re-encodes differently")
				}
			}
		}
	})
}

// benchTransfer is one committed transfer (two events) with the usual metadata.
func benchTransfer(b *testing.B) ([]chronicle.Event, chronicle.Batch) {
	s := chronicle.NewMemState()
	mustOK(b, s, t0, newCreate("alice", "USD", "1000", ""), newCreate("bob", "USD", "", ""))
	c := withKey(newTransfer("alice", "bob", "12.50"), "3f2a9c1e-7d4b-4e8a-9c1d-2b3e4f5a6b7c")
	res := mustOK(b, s, t0, c)
	return res[0].Events, chronicle.Batch{Time: t0, IdempotencyWindow: time.Hour, Commands: []chronicle.Command{c}}
}

func BenchmarkEventHash(b *testing.B) {
	evs, _ := benchTransfer(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = evs[0].ComputeHash()
	}
}

func BenchmarkEventStoredForm(b *testing.B) {
	evs, _ := benchTransfer(b)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			_, _ = evs[0].AppendBinary(buf[:0])
		}
	})
	enc, _ := evs[0].MarshalBinary()
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e chronicle.Event
			_ = e.UnmarshalBinary(enc)
		}
	})
	b.Run("json-encode", func(b *testing.B) { // the API's and NATS's form, for comparison
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(evs[0])
		}
	})
}

func BenchmarkBatchEntry(b *testing.B) {
	_, batch := benchTransfer(b)
	enc, _ := batch.MarshalBinary()
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = batch.MarshalBinary()
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var d chronicle.Batch
			_ = d.UnmarshalBinary(enc)
		}
	})
}

// TestBatchVersions: a batch of version-1 commands keeps its version-1 bytes and its
// commands their fingerprints (logs and idempotency records written before version 2
// read and match as they did); a batch with a lifecycle or two-phase command is written
// as version 2 and reads back whole.
func TestBatchVersions(t *testing.T) {
	old := chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: "a", ToAccountID: "b", Amount: "1.00", ID: "c1"}
	b1, err := chronicle.Batch{Time: time.Unix(1, 0), Commands: []chronicle.Command{old}}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b1[0] != 1 {
		t.Fatalf("version-1 batch written as version %d", b1[0])
	}
	// The fingerprint of this command as the build before version 2 computed it.
	if got, want := old.Fingerprint(), "14312e7723571d3b5ff94372148749d9778737dcc823d81674d05ba1d603ab9c"; got != want {
		t.Fatalf("fingerprint %s, before version 2 it was %s", got, want)
	}
	held := chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: "a", ToAccountID: "b", Amount: "1.00", ID: "c2",
		Pending: true, TimeoutSeconds: 600}
	voided := chronicle.Command{Type: chronicle.CmdVoidTransfer, TransferID: "t-1", Reason: "customer cancelled", ID: "c3"}
	in := chronicle.Batch{Time: time.Unix(2, 0).UTC(), Commands: []chronicle.Command{old, held, voided}}
	b2, err := in.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b2[0] != 2 {
		t.Fatalf("batch with two-phase commands written as version %d", b2[0])
	}
	var out chronicle.Batch
	if err := out.UnmarshalBinary(b2); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out.Commands, in.Commands) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out.Commands, in.Commands)
	}
	if held.Fingerprint() == (chronicle.Command{Type: chronicle.CmdTransfer, FromAccountID: "a", ToAccountID: "b", Amount: "1.00"}).Fingerprint() {
		t.Fatal("pending does not change the fingerprint: a reused key could turn a hold into a posted transfer")
	}
}
